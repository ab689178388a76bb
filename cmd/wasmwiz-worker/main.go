// Command wasmwiz-worker is an executor's worker process on its own: the same code as
// `wasmwiz worker` (package executor/worker), in a binary that links nothing else. A node
// starts a worker for every one it loses, and a guest that reaches its deadline is stopped by
// killing its worker, so a worker's start is on the path of every timeout: this binary starts
// with about a third of the CPU time and a quarter of the resident memory of the whole wasmwiz
// binary (fewer packages to initialise, fewer pages to fault in). An executor uses it when it
// lies beside its own executable (executor.Config.WorkerCommand), else `wasmwiz worker`.
package main

import (
	"context"
	"os"

	"github.com/wasmwiz/wasmwiz/executor/worker"
)

func main() { os.Exit(worker.Main(context.Background(), os.Stdin, os.Stdout, os.Stderr)) }
