package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	wasmwiz "github.com/wasmwiz/wasmwiz/clients/go"
)

const executionsUsage = "usage: wasmwiz executions list [--status S] [--module ID] [--from T] [--to T] [--limit N] [--all] [--json] | get <id> [--json] | wait <id> [--timeout D] [--json]"

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
	if sub == "list" {
		return runExecutionsList(ctx, rest, getenv, stdout, stderr) // executions_list.go
	}
	if sub != "get" && sub != "wait" {
		return usageError{"unknown executions command " + sub + "; " + executionsUsage}
	}
	fs := newFlagSet("executions "+sub, getenv, stderr)
	mk, _ := newClient(fs)
	asJSON := fs.Bool("json", false, "print the whole execution as JSON")
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
		if err := c.waitFinal(ctx, ex, *timeout); err != nil {
			return err
		}
	}
	if *asJSON {
		return writeJSON(stdout, ex)
	}
	printExecution(stdout, ex)
	return nil
}

// printExecution shows an execution to a person: its figures, then its output.
func printExecution(w io.Writer, ex *wasmwiz.Execution) {
	t := newTable(w, "ID", ex.ID)
	t.row("STATUS", string(ex.Status))
	if ex.ExitCode != nil {
		t.row("EXIT CODE", fmt.Sprint(*ex.ExitCode))
	}
	if ex.Error != nil && *ex.Error != "" {
		t.row("ERROR", *ex.Error)
	}
	t.row("MODULE", ex.ModuleID)
	t.row("CREATED", ex.CreatedAt.Format(time.RFC3339))
	if ex.Status.Final() {
		t.row("DURATION", fmt.Sprintf("%.1f ms", ex.DurationMs))
		t.row("MEMORY PEAK", mib(ex.MemoryPeakBytes))
	}
	for _, f := range ex.Files {
		t.row("FILE", fmt.Sprintf("%s (%d bytes)", f.Path, f.Size))
	}
	_ = t.flush()
	for _, o := range []struct {
		name, text string
		base64     bool
		cut        bool
	}{
		{"stdout", ex.Stdout, str(ex.StdoutEncoding) == "base64", ex.StdoutTruncated},
		{"stderr", ex.Stderr, str(ex.StderrEncoding) == "base64", ex.StderrTruncated},
	} {
		if o.text == "" {
			continue
		}
		note := ""
		if o.base64 {
			note = ", base64: not UTF-8; --json and decode it"
		}
		if o.cut {
			note += ", truncated"
		}
		fmt.Fprintf(w, "--- %s%s\n%s", o.name, note, o.text)
		if !strings.HasSuffix(o.text, "\n") {
			fmt.Fprintln(w)
		}
	}
}

// waitFinal reads ex again until it is final or timeout passes, from every 100 ms up to every
// 2 s.
func (c *client) waitFinal(ctx context.Context, ex *wasmwiz.Execution, timeout time.Duration) error {
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
		e, err := c.getExecution(ctx, ex.ID)
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("execution %s is still %s after %s", ex.ID, ex.Status, timeout)
		}
		if err != nil {
			return err
		}
		*ex = *e
	}
	return nil
}
