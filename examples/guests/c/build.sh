#!/bin/sh
# Builds greet-c.wasm (into the directory given, default here) with Debian's clang and
# wasi-libc: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32
set -eu
cd "$(dirname "$0")"
clang --target=wasm32-wasi -O2 -s -o "${1:-.}/greet-c.wasm" greet.c
