#!/bin/sh
# Builds greet-go.wasm (into the directory given, default here) with the Go toolchain alone.
set -eu
cd "$(dirname "$0")"
GOOS=wasip1 GOARCH=wasm go build -o "${1:-.}/greet-go.wasm" .
