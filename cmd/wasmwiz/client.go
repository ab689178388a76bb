package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// client is the small REST client behind the client commands.
type client struct {
	base string
	key  string
	hc   *http.Client
}

func newClient(fs *flagSet) (func() (*client, error), *string) {
	u := fs.String("url", "http://127.0.0.1:8080", "WasmWiz API URL")
	key := fs.String("key", "", "API key (default: ./wasmwiz-data/dev-api-key when present)")
	return func() (*client, error) {
		k := *key
		if k == "" {
			if b, err := os.ReadFile(filepath.Join("wasmwiz-data", "dev-api-key")); err == nil {
				k = strings.TrimSpace(string(b))
			}
		}
		if k == "" {
			return nil, usageError{"no API key: pass --key or set WASMWIZ_KEY"}
		}
		return &client{base: strings.TrimRight(*u, "/"), key: k, hc: &http.Client{Timeout: 10 * time.Minute}}, nil
	}, u
}

type apiError struct {
	Status int
	Code   string
	Detail string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Detail) }

func (c *client) do(ctx context.Context, method, path, contentType string, body io.Reader, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 400 {
		var p struct {
			Code   string `json:"code"`
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(b, &p)
		return resp.StatusCode, &apiError{Status: resp.StatusCode, Code: p.Code, Detail: p.Detail}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode response: %w", err)
		}
	}
	return resp.StatusCode, nil
}

type envFlag map[string]string

func (e envFlag) String() string { return "" }
func (e envFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want NAME=value, got %q", s)
	}
	e[k] = v
	return nil
}

// runClientRun runs a module file or an uploaded module id, prints its stdout and stderr, and
// exits with the module's exit code.
func runClientRun(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", getenv, stderr)
	mk, _ := newClient(fs)
	stdinArg := fs.String("stdin", "", "stdin for the module; '-' reads this command's stdin")
	timeout := fs.Int64("timeout-ms", 0, "wall-time limit (default: the tier's)")
	memory := fs.Int("memory-mb", 0, "memory limit (default: the tier's)")
	async := fs.Bool("async", false, "queue it and print the execution id")
	asJSON := fs.Bool("json", false, "print the whole execution as JSON")
	env := envFlag{}
	fs.Var(env, "env", "NAME=value for the module's environment (repeatable)")
	files := addRunFileFlags(fs) // runfiles.go
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return usageError{"usage: wasmwiz run [flags] <module.wasm | sha256:id> [-- args...]"}
	}
	c, err := mk()
	if err != nil {
		return err
	}
	guestArgs := fs.Args()[1:]
	if len(guestArgs) > 0 && guestArgs[0] == "--" { // module.wasm -- args: flags end at the module
		guestArgs = guestArgs[1:]
	}
	req := schemas.ExecutionRequest{Args: guestArgs, Env: env, TimeoutMS: *timeout, MemoryMB: *memory, Async: *async}
	if m := fs.Arg(0); strings.HasPrefix(m, "sha256:") {
		req.ModuleID = m
	} else {
		b, err := os.ReadFile(m)
		if err != nil {
			return err
		}
		var mod schemas.Module
		if _, err := c.do(ctx, http.MethodPost, "/v1/modules?name="+url.QueryEscape(filepath.Base(m)), "application/wasm", bytes.NewReader(b), &mod); err != nil {
			return fmt.Errorf("upload %s: %w", m, err)
		}
		req.ModuleID = mod.ID
	}
	switch *stdinArg {
	case "":
	case "-":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		req.StdinBase64 = base64.StdEncoding.EncodeToString(b)
	default:
		req.Stdin = *stdinArg
	}
	if err := files.apply(ctx, c, &req); err != nil {
		return err
	}
	body, _ := json.Marshal(req)
	var ex schemas.Execution
	status, err := c.do(ctx, http.MethodPost, "/v1/executions", "application/json", bytes.NewReader(body), &ex)
	if err != nil {
		return err
	}
	for status == http.StatusAccepted && !*async {
		time.Sleep(200 * time.Millisecond)
		if status, err = c.do(ctx, http.MethodGet, "/v1/executions/"+ex.ID, "", nil, &ex); err != nil {
			return err
		}
		if ex.Status.Final() {
			break
		}
	}
	if *asJSON || *async {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ex)
	}
	writeOutput(stdout, ex.Stdout, ex.StdoutEncoding)
	writeOutput(stderr, ex.Stderr, ex.StderrEncoding)
	if err := files.save(&ex, stderr); err != nil {
		return err
	}
	if ex.Status != schemas.StatusSucceeded {
		code := -1
		if ex.ExitCode != nil {
			code = *ex.ExitCode
		}
		msg := fmt.Sprintf("execution %s %s (exit code %d)", ex.ID, ex.Status, code)
		if ex.Error != "" {
			msg += ": " + ex.Error
		}
		return exitError{msg: msg, code: code}
	}
	return nil
}

// exitError makes `wasmwiz run` exit with the module's own exit code (1 when it has none).
type exitError struct {
	msg  string
	code int
}

func (e exitError) Error() string { return e.msg }

func writeOutput(w io.Writer, s, encoding string) {
	if encoding == "base64" {
		b, err := base64.StdEncoding.DecodeString(s)
		if err == nil {
			_, _ = w.Write(b)
			return
		}
	}
	_, _ = io.WriteString(w, s)
}

func runClientModules(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"usage: wasmwiz modules upload <file> [--name N] | list | get <id> | delete <id>"}
	}
	sub, rest := args[0], args[1:]
	fs := newFlagSet("modules "+sub, getenv, stderr)
	mk, _ := newClient(fs)
	name := fs.String("name", "", "module name (upload; default: the file name)")
	pos, err := fs.parseInterspersed(rest)
	if err != nil {
		return err
	}
	c, err := mk()
	if err != nil {
		return err
	}
	var out any
	arg := func(i int) string { return pos[i] }
	switch sub {
	case "upload":
		if len(pos) != 1 {
			return usageError{"usage: wasmwiz modules upload <file> [--name N]"}
		}
		b, err := os.ReadFile(arg(0))
		if err != nil {
			return err
		}
		n := *name
		if n == "" {
			n = filepath.Base(arg(0))
		}
		var m schemas.Module
		if _, err := c.do(ctx, http.MethodPost, "/v1/modules?name="+url.QueryEscape(n), "application/wasm", bytes.NewReader(b), &m); err != nil {
			return err
		}
		out = m
	case "list":
		var l schemas.ModuleList
		if _, err := c.do(ctx, http.MethodGet, "/v1/modules", "", nil, &l); err != nil {
			return err
		}
		out = l
	case "get", "delete":
		if len(pos) != 1 {
			return usageError{"usage: wasmwiz modules " + sub + " <sha256:id>"}
		}
		method := http.MethodGet
		if sub == "delete" {
			method = http.MethodDelete
		}
		var m schemas.Module
		if _, err := c.do(ctx, method, "/v1/modules/"+url.PathEscape(arg(0)), "", nil, &m); err != nil {
			return err
		}
		if sub == "delete" {
			fmt.Fprintf(stdout, "deleted %s\n", arg(0))
			return nil
		}
		out = m
	default:
		return usageError{"unknown modules command " + sub}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
