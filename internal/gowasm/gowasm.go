// Package gowasm compiles a one-file Go program to a WASI preview 1 module with the Go
// toolchain found at run time. The test probe (internal/fixtures) and the bench's Go guest
// (internal/bench) are built this way, so no Go-built .wasm needs to be committed.
package gowasm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Build compiles main.go (a package main) in a temporary module of its own, as
//
//	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -trimpath -o main.wasm .
//
// so that the build depends neither on the working directory nor on this module's tree. The
// toolchain is $GOROOT/bin/go of the running binary, else go on PATH.
func Build(mainGo []byte) ([]byte, error) {
	dir, err := os.MkdirTemp("", "wasmwiz-gowasm-")
	if err != nil {
		return nil, fmt.Errorf("gowasm: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module guest\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, fmt.Errorf("gowasm: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), mainGo, 0o644); err != nil {
		return nil, fmt.Errorf("gowasm: %w", err)
	}
	goBin, err := toolchain()
	if err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "main.wasm")
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0",
		"GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gowasm: go build: %w\n%s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("gowasm: %w", err)
	}
	return b, nil
}

func toolchain() (string, error) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err == nil {
		return goBin, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("gowasm: no go toolchain: " + err.Error())
	}
	return goBin, nil
}
