package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	wasmwiz "github.com/wasmwiz/wasmwiz/clients/go"
)

// client is the REST client behind the client commands: the generated one (clients/go), with
// the key as a bearer token and every answer of 400 or more as the call's error (a
// *wasmwiz.Error, printed as "404 not_found: …").
type client struct {
	api      *wasmwiz.ClientWithResponses
	progress io.Writer // where long uploads show a progress line (a terminal), or nil
}

// clientFlags adds --url, --key and --context, the flags every client command shares.
func clientFlags(fs *flagSet) (u, key, context *string) {
	u = fs.String("url", "", "WasmWiz API URL (default: the context's, else "+defaultAPIURL+")")
	key = fs.String("key", "", "API key (default: the context's; a given --url takes the key of a context saved for that URL; else ./wasmwiz-data/dev-api-key)")
	context = fs.String("context", "", "the saved context to use (default: the current one; wasmwiz context list)")
	return u, key, context
}

// newClient adds the client flags to fs; the returned func resolves them (config.go,
// resolveTarget) and dials the API. The string is the resolved URL once the func has run.
func newClient(fs *flagSet) (func() (*client, error), *string) {
	u, key, ctxName := clientFlags(fs)
	getenv := fs.getenv
	resolved := new(string)
	return func() (*client, error) {
		t, err := resolveTarget(getenv, *u, *key, *ctxName)
		if err != nil {
			return nil, err
		}
		if err := checkAPIURL(t.URL); err != nil {
			return nil, err
		}
		*resolved = t.URL
		c, err := dial(t.URL, t.Key, 10*time.Minute)
		if err == nil && isTerminal(fs.Output()) {
			c.progress = fs.Output()
		}
		return c, err
	}, resolved
}

// dial makes a client of the API at baseURL with key, each request bounded by timeout.
func dial(baseURL, key string, timeout time.Duration) (*client, error) {
	api, err := wasmwiz.NewClientWithResponses(strings.TrimRight(baseURL, "/"),
		wasmwiz.WithAPIKey(key), wasmwiz.WithProblemErrors(&http.Client{Timeout: timeout}))
	if err != nil {
		return nil, err
	}
	return &client{api: api}, nil
}

// answer is the body of a successful answer, or an error when it had no body of the expected
// kind (a proxy's HTML page, say).
func answer[T any](body *T, status int) (*T, error) {
	if body == nil {
		return nil, fmt.Errorf("unexpected answer: HTTP %d without the JSON body it should have", status)
	}
	return body, nil
}

// uploadModule uploads a module and returns it.
func (c *client) uploadModule(ctx context.Context, name string, wasm []byte) (*wasmwiz.Module, error) {
	p := startProgress(c.progress, name, int64(len(wasm)), "compiling")
	wait := true // the CLI waits for the compile, however long the tier's budget lets it run
	r, err := c.api.UploadModuleWithBodyWithResponse(ctx, &wasmwiz.UploadModuleParams{Name: &name, Wait: &wait}, "application/wasm",
		p.reader(bytes.NewReader(wasm)), withContentLength(int64(len(wasm))))
	p.end()
	if err != nil {
		return nil, err
	}
	if r.JSON202 != nil { // still compiling after every attempt's budget: its executions queue
		return r.JSON202, nil
	}
	return answer(r.JSON201, r.StatusCode())
}

// withContentLength declares a body's length, which a wrapped reader hides from net/http.
func withContentLength(n int64) wasmwiz.RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		req.ContentLength = n
		return nil
	}
}

// getExecution reads an execution.
func (c *client) getExecution(ctx context.Context, id string) (*wasmwiz.Execution, error) {
	r, err := c.api.GetExecutionWithResponse(ctx, id)
	if err != nil {
		return nil, err
	}
	return answer(r.JSON200, r.StatusCode())
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

const runUsage = `usage: wasmwiz run [flags] <module.wasm | sha256:id> [--] [args...]

Uploads the module (unless given by id), runs it, prints its stdout and stderr, and exits with
its exit code. Flags go before the module: everything after it is the guest's argv[1:],
verbatim, except one '--' right after the module, which is dropped (so 'run m.wasm -- --help'
passes --help to the guest, and 'run m.wasm -- -- x' passes "--" and "x").`

// splitRunArgs splits what follows run's flags into the module and the guest's arguments:
// everything after the module, less one "--" right after it.
func splitRunArgs(rest []string) (module string, guest []string, ok bool) {
	if len(rest) == 0 || rest[0] == "" {
		return "", nil, false
	}
	guest = rest[1:]
	if len(guest) > 0 && guest[0] == "--" {
		guest = guest[1:]
	}
	return rest[0], guest, true
}

// runClientRun runs a module file or an uploaded module id, prints its stdout and stderr, and
// exits with the module's exit code.
func runClientRun(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", getenv, stderr)
	mk, _ := newClient(fs)
	stdinArg := fs.String("stdin", "", "stdin for the module; '-' reads this command's stdin")
	timeout := fs.Int64("timeout-ms", 0, "wall-time limit (default: the tier's)")
	memory := fs.Int("memory-mb", 0, "memory limit (default: the tier's)")
	async := fs.Bool("async", false, "queue it and print the queued execution as JSON (its id is .id; wasmwiz executions wait <id>)")
	asJSON := fs.Bool("json", false, "print the whole execution as JSON")
	argv0 := fs.String("argv0", "", "the guest's argv[0] (default: the module's name), for multi-call programs such as LLVM's: --argv0 wasm-ld")
	clock := fs.String("clock", "", "the guest's clocks: fixed (the default: from 2022-01-01, 1 ms a reading, so whatever a guest seeds from the clock, such as QuickJS's Math.random, repeats) or real")
	seed := fs.String("seed", "", "an integer that makes the guest's random bytes (WASI random_get) reproducible (default: new ones every run)")
	env := envFlag{}
	fs.Var(env, "env", "NAME=value for the module's environment (repeatable)")
	files := addRunFileFlags(fs) // runfiles.go
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), runUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	module, guestArgs, ok := splitRunArgs(fs.Args())
	if !ok {
		return usageError{runUsage}
	}
	c, err := mk()
	if err != nil {
		return err
	}
	req := wasmwiz.ExecutionRequest{Argv0: optional(*argv0), Args: guestArgs, TimeoutMs: optional(*timeout), MemoryMb: optional(int64(*memory)), Async: optional(*async)}
	switch ck := wasmwiz.ExecutionRequestClock(*clock); {
	case ck == "":
	case ck.Valid():
		req.Clock = &ck
	default:
		return usageError{fmt.Sprintf("--clock %q: fixed or real", *clock)}
	}
	if *seed != "" {
		n, err := strconv.ParseInt(*seed, 10, 64)
		if err != nil {
			return usageError{fmt.Sprintf("--seed %q: an integer", *seed)}
		}
		req.Seed = &n
	}
	if len(env) > 0 {
		req.Env = env
	}
	if m := module; strings.HasPrefix(m, "sha256:") {
		req.ModuleID = &m
	} else {
		b, err := os.ReadFile(m)
		if err != nil {
			return err
		}
		mod, err := c.uploadModule(ctx, filepath.Base(m), b)
		if err != nil {
			return fmt.Errorf("upload %s: %w", m, err)
		}
		req.ModuleID = &mod.ID
	}
	switch *stdinArg {
	case "":
	case "-":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		req.StdinBase64 = new(base64.StdEncoding.EncodeToString(b))
	default:
		req.Stdin = stdinArg
	}
	if err := files.apply(ctx, c, &req); err != nil {
		return err
	}
	r, err := c.api.CreateExecutionWithResponse(ctx, nil, req)
	if err != nil {
		return err
	}
	ex := r.JSON200
	if r.StatusCode() == http.StatusAccepted {
		ex = r.JSON202
	}
	if ex, err = answer(ex, r.StatusCode()); err != nil {
		return err
	}
	if !*async && !ex.Status.Final() { // a 202: the server's wait ran out, the execution goes on
		if err := c.waitFinal(ctx, ex, 10*time.Minute); err != nil {
			return err
		}
	}
	if *asJSON || *async {
		if !*async { // the output files a --json run asked for are written as without it
			if err := files.save(ctx, c, ex, stderr); err != nil {
				return err
			}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ex)
	}
	// An output over 1 MiB comes whole from its own download; the result holds its first MiB.
	outW, errW := &countingWriter{w: stdout}, &countingWriter{w: stderr}
	if ex.StdoutURL == nil {
		writeOutput(outW, ex.Stdout, str(ex.StdoutEncoding))
	} else if err := download(outW)(c.api.GetExecutionStdout(ctx, ex.ID)); err != nil {
		return err
	}
	if ex.StderrURL == nil {
		writeOutput(errW, ex.Stderr, str(ex.StderrEncoding))
	} else if err := download(errW)(c.api.GetExecutionStderr(ctx, ex.ID)); err != nil {
		return err
	}
	// A cut stream is said, as a cut output file is: piped to a file, it would otherwise pass
	// for the whole output (zstd -dc > file got 1 MiB and exit code 0).
	for _, o := range []struct {
		name string
		cut  bool
		w    *countingWriter
	}{{"stdout", ex.StdoutTruncated, outW}, {"stderr", ex.StderrTruncated, errW}} {
		if !o.cut {
			continue
		}
		sep := ""
		if o.w == errW && !errW.endsInNewline() {
			sep = "\n"
		}
		why := "at the tier's stdout_max"
		if ex.StorageQuotaExceeded != nil && *ex.StorageQuotaExceeded {
			why = "to fit the tier's result_bytes, which your stored results filled"
		}
		fmt.Fprintf(stderr, "%swasmwiz run: %s was cut %s: only its first %d bytes came back (write larger output to a file and --output it)\n", sep, o.name, why, o.w.n)
	}
	if err := files.save(ctx, c, ex, stderr); err != nil {
		return err
	}
	if ex.Status != wasmwiz.ExecutionStatusSucceeded {
		code := -1
		if ex.ExitCode != nil {
			code = int(*ex.ExitCode)
		}
		msg := fmt.Sprintf("execution %s %s (exit code %d)", ex.ID, ex.Status, code)
		if ex.Error != nil && *ex.Error != "" {
			msg += ": " + *ex.Error
		}
		return exitError{msg: msg, code: code}
	}
	return nil
}

// countingWriter counts the bytes written to w and keeps the last one.
type countingWriter struct {
	w    io.Writer
	n    int64
	last byte
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if n > 0 {
		c.last = p[n-1]
	}
	return n, err
}

// endsInNewline reports whether nothing was written or the last byte was a newline.
func (c *countingWriter) endsInNewline() bool { return c.n == 0 || c.last == '\n' }

// download copies a raw download's body to w.
func download(w io.Writer) func(*http.Response, error) error {
	return func(resp *http.Response, err error) error {
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("download %s: %s", resp.Request.URL.Path, resp.Status)
		}
		_, err = io.Copy(w, resp.Body)
		return err
	}
}

// optional is v, or nil for its zero value: a field the request leaves to the server.
func optional[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

// str is what p points to, or "" for nil.
func str[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
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

const modulesUsage = `usage: wasmwiz modules <command> [flags]

  upload <file.wasm> [--name N]   upload (and compile) a module; prints its id
  list                            your modules
  get <sha256:id>                 one module, with its imports and exports
  delete <sha256:id>              delete a module

Tables for people, --json for scripts. Flags common to all: --url, --key, --context (wasmwiz login).`

func runClientModules(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, modulesUsage)
		if len(args) == 0 {
			return usageError{"missing command"}
		}
		return nil
	}
	sub, rest := args[0], args[1:]
	fs := newFlagSet("modules "+sub, getenv, stderr)
	mk, _ := newClient(fs)
	var name *string
	if sub == "upload" {
		name = fs.String("name", "", "module name (default: the file name)")
	}
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: wasmwiz modules %s%s [flags]\n", sub, map[string]string{"upload": " <file.wasm>", "get": " <sha256:id>", "delete": " <sha256:id>"}[sub])
		fs.PrintDefaults()
	}
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
		if out, err = c.uploadModule(ctx, n, b); err != nil {
			return err
		}
	case "list":
		r, err := c.api.ListModulesWithResponse(ctx)
		if err != nil {
			return err
		}
		if out, err = answer(r.JSON200, r.StatusCode()); err != nil {
			return err
		}
	case "get":
		if len(pos) != 1 {
			return usageError{"usage: wasmwiz modules get <sha256:id>"}
		}
		r, err := c.api.GetModuleWithResponse(ctx, arg(0))
		if err != nil {
			return err
		}
		if out, err = answer(r.JSON200, r.StatusCode()); err != nil {
			return err
		}
	case "delete":
		if len(pos) != 1 {
			return usageError{"usage: wasmwiz modules delete <sha256:id>"}
		}
		if _, err := c.api.DeleteModuleWithResponse(ctx, arg(0)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s\n", arg(0))
		return nil
	default:
		return usageError{"unknown modules command " + sub}
	}
	if *asJSON {
		return writeJSON(stdout, out)
	}
	var mods []wasmwiz.Module
	switch m := out.(type) {
	case *wasmwiz.Module:
		mods = []wasmwiz.Module{*m}
	case *wasmwiz.ModuleList:
		mods = m.Modules
	}
	t := newTable(stdout, "ID", "NAME", "SIZE", "CREATED")
	for _, m := range mods {
		t.row(m.ID, m.Name, fmt.Sprintf("%d", m.Size), m.CreatedAt.Format(time.RFC3339))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if sub == "get" && len(mods) == 1 {
		fmt.Fprintf(stdout, "imports: %s\nexports: %s\n", strings.Join(mods[0].Imports, " "), strings.Join(mods[0].Exports, " "))
	}
	return nil
}
