package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/deploy"
	"github.com/wasmwiz/wasmwiz/gateway"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// runDev runs the whole system in one process (startSystem): an embedded nats-server with
// JetStream stored in the data dir, the gateway, one executor node with its worker processes, and
// accounting on SQLite (or Postgres with DATABASE_URL). The first start creates an admin key and a tenant
// "dev" with a key, written to <data dir>/admin-api-key and <data dir>/dev-api-key.
//
// The embedded NATS server authenticates every connection, with the account layout of the
// shipped deployments (deploy/nats/wasmwiz-account.conf): the roles are nkey users of account
// WASMWIZ, and tenant dev has an account of its own that reaches only the API. The seeds are
// made in <data dir>/nats on first start (mode 0600) and kept.
func runDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", getenv, stderr)
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "REST API address")
	natsAddr := fs.String("nats-addr", "127.0.0.1:4222", "address the embedded NATS server listens on for direct NATS clients")
	dataDir := fs.String("data-dir", "./wasmwiz-data", "where JetStream, the accounting database, caches and dev keys live")
	workers := fs.Int("workers", 0, "worker processes (default: 3 per CPU, at least 4; long-running guests are held to one per CPU)")
	compileTimeout := fs.Duration("compile-timeout", 0, "caps every tier's compile budget (the tier table's compile_base_ms + compile_per_mib_ms per MiB, at most compile_max_ms); 0: the budgets alone")
	uploadWait := fs.Duration("upload-wait", 0, "longest an upload waits for its compile before answering 202 with status compiling (default 30s; ?wait=true waits for the whole compile budget)")
	syncWait := fs.Duration("sync-wait", 0, "longest a synchronous execution request waits before answering 202 (default: its timeout + 10s)")
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "Postgres URL for accounting (default: $DATABASE_URL); empty: SQLite in the data dir")
	resultsTTL := fs.Duration("results-ttl", 0, "how long execution results stay readable (default: as the data dir has it, 24h when new)")
	saveCtx := fs.Bool("save-context", true, "save contexts dev and dev-admin (this API's URL, tenant dev's and the admin key) for the client commands; dev becomes current when none is")
	loadTiers := fs.tiersFlag()
	if err := fs.Parse(args); err != nil {
		return err
	}
	tiers, err := loadTiers()
	if err != nil {
		return usageError{err.Error()}
	}
	if *resultsTTL < 0 {
		return usageError{"--results-ttl must not be negative"}
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	log := newLogger(stderr, getenv, true)
	defer setupTracing(ctx, "wasmwiz-dev", getenv, log)()
	if err := mkdirData(*dataDir); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	var keys *devKeys
	var saved struct { // the client contexts, saved before the API answers (BeforeServe)
		path, current string
		err           error
	}
	sys, err := startSystem(ctx, systemConfig{
		DataDir: *dataDir, NATSDir: filepath.Join(*dataDir, "nats"), NATSAddr: *natsAddr, HTTPAddr: *httpAddr, DatabaseURL: *dbURL,
		Workers: *workers, CompileTimeout: *compileTimeout, SyncWait: *syncWait, UploadWait: *uploadWait, ResultsTTL: *resultsTTL,
		Tiers: tiers, Logger: log, Registry: newRegistry(),
		Bootstrap: func(ctx context.Context, js jetstream.JetStream) (err error) {
			if keys, err = bootstrapKeys(ctx, js, tiers, *dataDir); err != nil {
				return fmt.Errorf("create dev keys: %w", err)
			}
			return nil
		},
		BeforeServe: func(apiURL, natsURL string) error {
			if *saveCtx {
				saved.path, saved.current, saved.err = saveDevContexts(getenv, apiURL, keys.devFile, keys.adminFile, natsURL, filepath.Join(*dataDir, "nats"))
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	defer sys.stop()
	url := sys.url
	natsDir, natsURL := filepath.Join(*dataDir, "nats"), sys.ns.ClientURL()
	fmt.Fprintf(stdout, "WasmWiz dev\n  API:       %s  (OpenAPI %s/openapi.json, docs %s/docs)\n", url, url, url)
	fmt.Fprintf(stdout, "  NATS:      %s  (no anonymous connections)\n", natsURL)
	fmt.Fprintf(stdout, "    tenant dev connects with the nkey seed %s, e.g.\n      nats --server %s --nkey %s req wasmwiz.api.v1.modules.list '' -H \"Authorization:Bearer $(cat %s)\"\n",
		filepath.Join(natsDir, natsTenantSeed("dev")), natsURL, filepath.Join(natsDir, natsTenantSeed("dev")), filepath.Join(*dataDir, "dev-api-key"))
	fmt.Fprintf(stdout, "    operator tools (events tail, dlq, accounting reconcile): --context dev-admin, or --nats-nkey %s\n    another tenant: wasmwiz secrets nats-tenant --dir %s <tenant>, then restart dev\n",
		filepath.Join(natsDir, natsRoleSeed("admin")), natsDir)
	fmt.Fprintf(stdout, "  data dir:  %s\n", *dataDir)
	if keys.created {
		fmt.Fprintf(stdout, "  admin key: %s\n  dev key:   %s  (tenant dev, tier pro)\n  (shown once; also in %s and %s)\n",
			keys.admin, keys.dev, keys.adminFile, keys.devFile)
	} else {
		fmt.Fprintf(stdout, "  keys:      %s, %s\n", keys.adminFile, keys.devFile)
	}
	if *saveCtx {
		switch path, current, err := saved.path, saved.current, saved.err; {
		case err != nil:
			log.Warn("cannot save the dev contexts; client commands need --url and --key", "err", err)
		case current == "dev" || current == "dev-admin":
			fmt.Fprintf(stdout, "  contexts:  dev, dev-admin in %s  (wasmwiz modules list works from any directory)\n", path)
		default:
			fmt.Fprintf(stdout, "  contexts:  dev, dev-admin in %s  (the current one is %s: wasmwiz context use dev)\n", path, current)
		}
	}
	fmt.Fprintf(stdout, "ready: %s\n", url)
	err = sys.wait()
	if ctx.Err() != nil {
		fmt.Fprintln(stdout, "stopped")
		return nil
	}
	return err
}

type devKeys struct {
	admin, dev         string
	adminFile, devFile string
	created            bool
}

// bootstrapKeys makes the admin and dev keys on first start. Later starts keep them, unless the
// key files no longer match the key store (a wiped JetStream dir), in which case they are made anew.
func bootstrapKeys(ctx context.Context, js jetstream.JetStream, tiers map[string]schemas.Tier, dataDir string) (*devKeys, error) {
	admin, err := gateway.NewAdmin(ctx, js, tiers)
	if err != nil {
		return nil, err
	}
	k := &devKeys{adminFile: filepath.Join(dataDir, "admin-api-key"), devFile: filepath.Join(dataDir, "dev-api-key")}
	if keyFileValid(ctx, admin, k.adminFile) && keyFileValid(ctx, admin, k.devFile) {
		return k, nil
	}
	for _, t := range []struct{ id, tier string }{{"admin", schemas.TierUnlimited}, {"dev", schemas.TierPro}} {
		if _, err := admin.CreateTenant(ctx, t.id, t.tier); err != nil {
			var se *schemas.Error
			if !errors.As(err, &se) || se.Code != schemas.CodeConflict {
				return nil, err
			}
		}
	}
	ak, err := admin.CreateKey(ctx, schemas.CreateKeyRequest{TenantID: "admin", Name: "dev admin", Admin: true})
	if err != nil {
		return nil, err
	}
	dk, err := admin.CreateKey(ctx, schemas.CreateKeyRequest{TenantID: "dev", Name: "dev"})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(k.adminFile, []byte(ak.Key+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(k.devFile, []byte(dk.Key+"\n"), 0o600); err != nil {
		return nil, err
	}
	k.admin, k.dev, k.created = ak.Key, dk.Key, true
	return k, nil
}

func keyFileValid(ctx context.Context, a *gateway.Admin, path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	key := strings.TrimSpace(string(b))
	if !gateway.WellFormedAPIKey(key) {
		return false
	}
	_, err = a.Keys.Get(ctx, gateway.HashAPIKey(key))
	return err == nil
}

// devNATSConfig makes (first start) or keeps the roles' and tenant dev's nkey seeds in dir,
// writes the account layout the shipped deployments use beside them, and returns the path of
// the server configuration that includes it. The roles' permissions are for tiers.
func devNATSConfig(dir string, tiers map[string]schemas.Tier) (string, error) {
	if err := mkdirData(dir); err != nil {
		return "", err
	}
	quiet := func(string) {}
	if err := ensureNATSRoles(dir, tiers, false, quiet); err != nil {
		return "", err
	}
	if err := ensureNATSTenant(dir, "dev", false, quiet); err != nil {
		return "", err
	}
	if err := writeIfChanged(filepath.Join(dir, "wasmwiz-account.conf"), deploy.WasmWizAccount, quiet); err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "dev.conf")
	const devConf = `# Made by wasmwiz dev: the shipped account layout (deploy/nats/nats.conf without cluster, TLS
# and storage limits). Listen address, store and limits come from dev's flags.
accounts {
  WASMWIZ {
    jetstream: enabled
    include "wasmwiz-account.conf"
  }
  include "nats-tenants.conf"
}
`
	return conf, writeIfChanged(conf, []byte(devConf), quiet)
}
