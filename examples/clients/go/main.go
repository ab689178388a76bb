// The Go client example runs a WebAssembly module through WasmWiz with the generated Go client
// (clients/go): it uploads the module, runs it with stdin and waits for the answer, runs it again
// asynchronously and polls until it ends, and lists the key's tenant's API keys.
//
//	WASMWIZ_URL=http://127.0.0.1:8080 WASMWIZ_KEY="$(cat wasmwiz-data/dev-api-key)" \
//	  go run ./examples/clients/go module.wasm "some stdin"
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	wasmwiz "github.com/wasmwiz/wasmwiz/clients/go"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	baseURL, key := os.Getenv("WASMWIZ_URL"), os.Getenv("WASMWIZ_KEY")
	if baseURL == "" {
		baseURL = "http://127.0.0.1:8080"
	}
	if len(args) < 1 || key == "" {
		return errors.New("usage: WASMWIZ_URL=… WASMWIZ_KEY=… go run ./examples/clients/go <module.wasm> [stdin]")
	}
	stdin := "hello from Go"
	if len(args) > 1 {
		stdin = args[1]
	}
	// WithProblemErrors: every answer of 400 or more is the call's error, a *wasmwiz.Error.
	c, err := wasmwiz.NewClientWithResponses(baseURL, wasmwiz.WithAPIKey(key),
		wasmwiz.WithProblemErrors(&http.Client{Timeout: time.Minute}))
	if err != nil {
		return err
	}

	wasm, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer wasm.Close()
	name := filepath.Base(args[0])
	up, err := c.UploadModuleWithBodyWithResponse(ctx, &wasmwiz.UploadModuleParams{Name: &name}, "application/wasm", wasm)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	mod := up.JSON201
	fmt.Printf("uploaded %s: %s (%d bytes, exports %v)\n", mod.Name, mod.ID, mod.Size, mod.Exports)

	// A sync run answers 200 with the result; 202 when its wait ran out (then poll, as below).
	r, err := c.CreateExecutionWithResponse(ctx, nil, wasmwiz.ExecutionRequest{ModuleID: &mod.ID, Stdin: &stdin})
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	ex := r.JSON200
	if r.StatusCode() == http.StatusAccepted {
		if ex, err = wait(ctx, c, r.JSON202.ID); err != nil {
			return err
		}
	}
	fmt.Printf("sync %s: %s, exit %d, %.1f ms, stdout %q\n", ex.ID, ex.Status, *ex.ExitCode, ex.DurationMs, ex.Stdout)

	// An async run answers 202 at once with the queued execution and where to poll it.
	async := true
	r, err = c.CreateExecutionWithResponse(ctx, nil, wasmwiz.ExecutionRequest{ModuleID: &mod.ID, Stdin: &stdin, Async: &async})
	if err != nil {
		return fmt.Errorf("run async: %w", err)
	}
	fmt.Printf("async %s: HTTP %d, %s, Location %s\n", r.JSON202.ID, r.StatusCode(), r.JSON202.Status, *r.Headers202.Location)
	if ex, err = wait(ctx, c, r.JSON202.ID); err != nil {
		return err
	}
	fmt.Printf("async %s: %s, exit %d, stdout %q\n", ex.ID, ex.Status, *ex.ExitCode, ex.Stdout)

	keys, err := c.ListKeysWithResponse(ctx)
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	for _, k := range keys.JSON200.Keys {
		fmt.Printf("key %s: %s…, tier %s\n", k.ID, k.Prefix, k.Tier)
	}

	// Errors are problem+json with a stable code.
	_, err = c.GetExecutionWithResponse(ctx, "ex_nosuch")
	var e *wasmwiz.Error
	if !errors.As(err, &e) {
		return fmt.Errorf("get of an unknown execution: %v, want a *wasmwiz.Error", err)
	}
	fmt.Printf("unknown execution: %d %s\n", e.Status, e.Code)
	return nil
}

// wait polls an execution until it ends, from every 100 ms to every 2 s, for at most a minute.
func wait(ctx context.Context, c *wasmwiz.ClientWithResponses, id string) (*wasmwiz.Execution, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for interval := 100 * time.Millisecond; ; interval = min(2*interval, 2*time.Second) {
		r, err := c.GetExecutionWithResponse(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("execution %s: %w", id, err)
		}
		if r.JSON200.Status.Final() {
			return r.JSON200, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("execution %s is still %s", id, r.JSON200.Status)
		case <-time.After(interval):
		}
	}
}
