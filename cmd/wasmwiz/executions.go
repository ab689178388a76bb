package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	wasmwiz "github.com/wasmwiz/wasmwiz/clients/go"
)

const executionsUsage = "usage: wasmwiz executions get <id> | wait <id> [--timeout D]"

// runClientExecutions reads an execution (get) or waits for it to end (wait), by polling
// GET /v1/executions/{id}, and prints it as JSON.
func runClientExecutions(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{executionsUsage}
	}
	sub, rest := args[0], args[1:]
	if sub == "-h" || sub == "--help" || sub == "help" {
		fmt.Fprintln(stdout, executionsUsage)
		return nil
	}
	if sub != "get" && sub != "wait" {
		return usageError{"unknown executions command " + sub + "; " + executionsUsage}
	}
	fs := newFlagSet("executions "+sub, getenv, stderr)
	mk, _ := newClient(fs)
	var timeout *time.Duration
	if sub == "wait" {
		timeout = fs.Duration("timeout", 10*time.Minute, "how long to wait for the execution to end")
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: wasmwiz executions %s <id> [flags]\n", sub)
		fs.PrintDefaults()
	}
	pos, err := fs.parseInterspersed(rest)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"usage: wasmwiz executions " + sub + " <id>"}
	}
	c, err := mk()
	if err != nil {
		return err
	}
	ex, err := c.getExecution(ctx, pos[0])
	if err != nil {
		return err
	}
	if sub == "wait" {
		err := waitFinal(ctx, ex, *timeout, func() error {
			e, err := c.getExecution(ctx, pos[0])
			if err == nil {
				*ex = *e
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(ex)
}

// waitFinal polls get until ex is final or timeout passes, from every 100 ms up to every 2 s.
func waitFinal(ctx context.Context, ex *wasmwiz.Execution, timeout time.Duration, get func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	interval := 100 * time.Millisecond
	for !ex.Status.Final() {
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("execution %s is still %s after %s", ex.ID, ex.Status, timeout)
		case <-t.C:
		}
		interval = min(interval*2, 2*time.Second)
		if err := get(); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("execution %s is still %s after %s", ex.ID, ex.Status, timeout)
			}
			return err
		}
	}
	return nil
}
