package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/bench"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// runLoad is `wasmwiz load`: a load generator for a running WasmWiz, over REST or direct NATS
// (bench.Generate: closed loop, or open loop with --rate).
func runLoad(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("load", getenv, stderr)
	baseURL := fs.String("url", "", "REST API URL (e.g. http://127.0.0.1:8080); give --url or --nats")
	natsURL := fs.String("nats", "", "NATS URL for the direct NATS API (e.g. nats://127.0.0.1:4222)")
	auth := natsAuthFlags(fs)
	key := fs.String("key", "", "API key (default, over REST beside a dev system: a key made for the run on the unlimited tier, with ./wasmwiz-data/admin-api-key; else ./wasmwiz-data/dev-api-key)")
	module := fs.String("module", "", "module file (uploaded first) or an uploaded module's sha256:id")
	stdin := fs.String("stdin", "", "stdin for every execution")
	concurrency := fs.Int("concurrency", 16, "requests in flight at most")
	duration := fs.Duration("duration", 10*time.Second, "how long to send (ignored with --requests)")
	requests := fs.Int("requests", 0, "send exactly this many requests instead of running for --duration")
	rate := fs.Float64("rate", 0, "open loop: requests per second at a constant arrival rate (0: closed loop)")
	progress := fs.Bool("progress", false, "live progress line on stderr even when it is not a terminal")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	case (*baseURL == "") == (*natsURL == ""):
		return usageError{"give exactly one of --url (REST) or --nats (direct NATS)"}
	case *module == "":
		return usageError{"--module is required (a .wasm file or sha256:id)"}
	case *concurrency < 1:
		return usageError{"--concurrency must be at least 1"}
	case *rate < 0 || *requests < 0:
		return usageError{"--rate and --requests must not be negative"}
	}
	k, made := *key, false
	if k == "" && *baseURL != "" {
		if admin, err := os.ReadFile(filepath.Join("wasmwiz-data", "admin-api-key")); err == nil {
			var merr error
			if k, merr = loadKey(ctx, *baseURL, strings.TrimSpace(string(admin))); merr != nil {
				fmt.Fprintf(stderr, "wasmwiz load: cannot make a key on the unlimited tier (%v); using the dev key\n", merr)
			} else {
				made = true
				fmt.Fprintf(stderr, "wasmwiz load: running as tenant %s on the unlimited tier, with a key made for this run (expires in an hour)\n", loadTenant)
			}
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
	if *baseURL != "" {
		t = bench.NewRESTTarget(*baseURL, k, *concurrency)
	} else {
		if *auth.user == "" && *auth.creds == "" && *auth.nkey == "" {
			if seed := filepath.Join("wasmwiz-data", "nats", natsTenantSeed("dev")); fileExists(seed) {
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
	body, err := json.Marshal(schemas.ExecutionRequest{ModuleID: moduleID, Stdin: *stdin})
	if err != nil {
		return err
	}
	cfg := bench.LoadConfig{Concurrency: *concurrency, Duration: *duration, Requests: *requests, Rate: *rate}
	if *progress || isTerminal(stderr) {
		cfg.Progress = stderr
	}
	rep := bench.Generate(ctx, cfg, func(ctx context.Context) string { return t.Execute(ctx, body) })
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
	c := &client{base: strings.TrimRight(baseURL, "/"), key: adminKey, hc: &http.Client{Timeout: 30 * time.Second}}
	post := func(path string, in, out any) (int, error) {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		return c.do(ctx, http.MethodPost, path, "application/json", bytes.NewReader(b), out)
	}
	status, err := post("/v1/admin/tenants", schemas.CreateTenantRequest{ID: loadTenant, Tier: schemas.TierUnlimited}, nil)
	if status == http.StatusConflict {
		b, _ := json.Marshal(schemas.UpdateTenantRequest{Tier: schemas.TierUnlimited})
		_, err = c.do(ctx, http.MethodPatch, "/v1/admin/tenants/"+loadTenant, "application/json", bytes.NewReader(b), nil)
	}
	if err != nil {
		return "", err
	}
	expires := time.Now().Add(time.Hour).UTC()
	var k schemas.CreatedKey
	if _, err := post("/v1/admin/keys", schemas.CreateKeyRequest{TenantID: loadTenant, Tier: schemas.TierUnlimited, Name: "wasmwiz load", ExpiresAt: &expires}, &k); err != nil {
		return "", err
	}
	return k.Key, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
