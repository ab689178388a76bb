// Command wasmwiz is the one WasmWiz binary: `dev` runs everything in one process; `gateway`,
// `executor` and `accounting` run one role each; `worker` is the executor's child process; the
// rest are client commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
