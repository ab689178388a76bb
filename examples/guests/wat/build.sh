#!/bin/sh
# Builds upper-wat.wasm (into the directory given, default here) with wabt's wat2wasm:
# apt-get install wabt
set -eu
cd "$(dirname "$0")"
wat2wasm upper.wat -o "${1:-.}/upper-wat.wasm"
