package main

import (
	"context"
	"os"
	"testing"

	"github.com/wasmwiz/wasmwiz/executor/worker"
)

// TestMain lets the test binary serve as the executor's worker process (`<exe> worker`, the
// default worker command), as the wasmwiz binary does, for the tests that start a system.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(worker.Main(context.Background(), os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
