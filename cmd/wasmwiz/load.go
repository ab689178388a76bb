package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	wasmwiz "github.com/wasmwiz/wasmwiz/clients/go"
	"github.com/wasmwiz/wasmwiz/internal/bench"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// runLoad is `wasmwiz load`: a load generator for a running WasmWiz, over REST or direct NATS
// (bench.Generate: closed loop, or open loop with --rate).
func runLoad(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("load", getenv, stderr)
	var urls listFlag
	fs.Var(&urls, "url", "REST API URL (e.g. http://127.0.0.1:8080), repeatable or comma separated: requests start on each in turn, and a retried one moves to the next; give --url or --nats")
	natsURL := fs.String("nats", "", "NATS URL for the direct NATS API (e.g. nats://127.0.0.1:4222); without credential flags, the key and NATS identity of a context saved for it")
	auth := natsAuthFlags(fs)
	key := fs.String("key", "", "API key (default, over REST beside a dev system: a key made for the run on the unlimited tier, with ./wasmwiz-data/admin-api-key; else the key of a context saved for --url; else ./wasmwiz-data/dev-api-key)")
	module := fs.String("module", "", "module file (uploaded first) or an uploaded module's sha256:id")
	stdin := fs.String("stdin", "", "stdin for every execution")
	concurrency := fs.Int("concurrency", 16, "requests in flight at most")
	duration := fs.Duration("duration", 10*time.Second, "how long to send (ignored with --requests)")
	requests := fs.Int("requests", 0, "send exactly this many requests instead of running for --duration")
	rate := fs.Float64("rate", 0, "open loop: requests per second at a constant arrival rate (0: closed loop)")
	progress := fs.Bool("progress", false, "live progress line on stderr even when it is not a terminal")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	async := fs.Bool("async", false, "REST: ask for asynchronous executions (202) and poll each until its final status, which is its outcome")
	idem := fs.Bool("idempotency-keys", false, "REST: send an Idempotency-Key per request and retry a request that got no answer, a 502/503/504 or a timeout with the same key on the next --url, until --deadline (on by itself with several --url)")
	deadline := fs.Duration("deadline", time.Minute, "REST with keys: how long a request may take to be accepted, retries included, before it counts as an error")
	attemptTimeout := fs.Duration("attempt-timeout", 30*time.Second, "REST with keys or --async: the timeout of one POST or poll")
	wait := fs.Duration("wait", 5*time.Minute, "with --async: how long to poll an accepted execution for its final status")
	record := fs.String("record", "", "REST: append every accepted execution to this file as it is accepted, one JSON object a line (id, idempotency_key, http_status, status, attempts, url, sent_at, accepted_at)")
	timeoutMS := fs.Int64("timeout-ms", 0, "the executions' timeout_ms (0: the tier's wall time)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	baseURL := strings.Join(urls, ",")
	rest := baseURL != ""
	switch {
	case fs.NArg() > 0:
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	case rest == (*natsURL != ""):
		return usageError{"give exactly one of --url (REST) or --nats (direct NATS)"}
	case *module == "":
		return usageError{"--module is required (a .wasm file or sha256:id)"}
	case *concurrency < 1:
		return usageError{"--concurrency must be at least 1"}
	case *rate < 0 || *requests < 0 || *timeoutMS < 0:
		return usageError{"--rate, --requests and --timeout-ms must not be negative"}
	case !rest && (*async || *idem || *record != ""):
		return usageError{"--async, --idempotency-keys and --record are for REST (--url)"}
	}
	k, made := *key, false
	if k == "" && rest {
		if admin, err := os.ReadFile(filepath.Join("wasmwiz-data", "admin-api-key")); err == nil {
			var merr error
			if k, merr = loadKey(ctx, urls[0], strings.TrimSpace(string(admin))); merr != nil {
				fmt.Fprintf(stderr, "wasmwiz load: cannot make a key on the unlimited tier (%v); using the dev key\n", merr)
			} else {
				made = true
				fmt.Fprintf(stderr, "wasmwiz load: running as tenant %s on the unlimited tier, with a key made for this run (expires in an hour)\n", loadTenant)
			}
		}
	}
	if k == "" && rest {
		// The key of a context saved for this URL (wasmwiz login, wasmwiz dev), else
		// ./wasmwiz-data/dev-api-key: as every client command finds it (resolveTarget).
		if t, err := resolveTarget(getenv, urls[0], "", ""); err == nil {
			k = t.Key
		}
	}
	natsCtx, fromCtx := cliContext{}, false
	if !rest {
		natsCtx, fromCtx = contextForNATS(getenv, *natsURL)
		if k == "" && fromCtx {
			k = natsCtx.Key // the key of the context saved for this NATS URL
		}
	}
	if k == "" {
		if b, err := os.ReadFile(filepath.Join("wasmwiz-data", "dev-api-key")); err == nil {
			k = strings.TrimSpace(string(b))
		}
	}
	if k == "" {
		return usageError{"no API key: pass --key or set WASMWIZ_KEY"}
	}
	var t bench.Target
	var rt *bench.RESTTarget
	if rest {
		opts := bench.RESTOptions{URLs: urls, Async: *async, IdempotencyKeys: *idem || len(urls) > 1,
			AttemptTimeout: *attemptTimeout, Deadline: *deadline, Wait: *wait}
		if *record != "" {
			rec, err := newRecordFile(*record)
			if err != nil {
				return err
			}
			defer func() {
				if cerr := rec.close(); cerr != nil {
					fmt.Fprintf(stderr, "wasmwiz load: %s: %v\n", *record, cerr)
				}
			}()
			opts.Record = rec.write
		}
		rt = bench.NewRESTTargetWith(k, *concurrency, opts)
		t = rt
	} else {
		if *auth.user == "" && *auth.creds == "" && *auth.nkey == "" {
			if fromCtx { // the identity of the context saved for this NATS URL
				auth.fillFrom(natsCtx.NATS)
			} else if seed := filepath.Join("wasmwiz-data", "nats", natsTenantSeed("dev")); fileExists(seed) {
				*auth.nkey = seed // beside a dev system: its tenant dev
			}
		}
		opts, err := auth.options()
		if err != nil {
			return err
		}
		nt, err := bench.NewNATSTarget(*natsURL, k, opts...)
		if err != nil {
			return err
		}
		defer nt.Close()
		t = nt
	}
	moduleID := *module
	if !strings.HasPrefix(moduleID, "sha256:") {
		wasm, err := os.ReadFile(moduleID)
		if err != nil {
			return err
		}
		if moduleID, err = t.Upload(ctx, filepath.Base(*module), wasm); err != nil {
			return fmt.Errorf("upload %s: %w", *module, err)
		}
	}
	body, err := json.Marshal(schemas.ExecutionRequest{ModuleID: moduleID, Stdin: *stdin, TimeoutMS: *timeoutMS, Async: *async})
	if err != nil {
		return err
	}
	cfg := bench.LoadConfig{Concurrency: *concurrency, Duration: *duration, Requests: *requests, Rate: *rate}
	if *progress || isTerminal(stderr) {
		cfg.Progress = stderr
	}
	rep := bench.Generate(ctx, cfg, func(ctx context.Context) string { return t.Execute(ctx, body) })
	if rt != nil {
		rep.Retried = rt.Retried()
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.Print(stdout)
	if rep.Outcomes["429"] > 0 && !made {
		fmt.Fprintf(stderr, "wasmwiz load: 429s: the key's tier limits its rate or its executions in flight. Load tests want a key on the unlimited tier:\n"+
			"  wasmwiz keys tenant-create %[1]s --tier unlimited --key <admin key>\n  wasmwiz keys admin-create --tenant %[1]s --tier unlimited --key <admin key>\n", loadTenant)
	}
	if rep.Errors > 0 {
		return fmt.Errorf("%d of %d requests failed", rep.Errors, rep.Requests)
	}
	return nil
}

// loadTenant is the tenant whose keys load makes for itself.
const loadTenant = "wasmwiz-load"

// loadKey makes, with an admin key, a key of tenant loadTenant on the unlimited tier (creating
// the tenant, or moving it to that tier), expiring in an hour: a load test's tenant is made for
// the purpose, so that no tier's rate limits throttle it by accident.
func loadKey(ctx context.Context, baseURL, adminKey string) (string, error) {
	c, err := dial(baseURL, adminKey, 30*time.Second)
	if err != nil {
		return "", err
	}
	_, err = c.api.AdminCreateTenantWithResponse(ctx, wasmwiz.CreateTenantRequest{ID: loadTenant, Tier: schemas.TierUnlimited})
	if e := (*wasmwiz.Error)(nil); errors.As(err, &e) && e.Status == http.StatusConflict {
		_, err = c.api.AdminUpdateTenantWithResponse(ctx, loadTenant, wasmwiz.UpdateTenantRequest{Tier: new(schemas.TierUnlimited)})
	}
	if err != nil {
		return "", err
	}
	r, err := c.api.AdminCreateKeyWithResponse(ctx, wasmwiz.CreateKeyRequest{TenantID: loadTenant, Tier: new(schemas.TierUnlimited),
		Name: new("wasmwiz load"), ExpiresAt: new(time.Now().Add(time.Hour).UTC())})
	if err != nil {
		return "", err
	}
	k, err := answer(r.JSON201, r.StatusCode())
	if err != nil {
		return "", err
	}
	return k.Key, nil
}

// recordFile is `load --record`: accepted executions, one JSON line each, written as they are
// accepted (so a load that is killed leaves what it had accepted).
type recordFile struct {
	mu  sync.Mutex
	f   *os.File
	err error
}

func newRecordFile(path string) (*recordFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &recordFile{f: f}, nil
}

func (r *recordFile) write(a bench.Accepted) {
	b, err := json.Marshal(a)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		_, err = r.f.Write(append(b, '\n'))
	}
	if err != nil && r.err == nil {
		r.err = err
	}
}

func (r *recordFile) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.f.Close(); r.err == nil {
		r.err = err
	}
	return r.err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
