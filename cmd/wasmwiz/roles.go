package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/accounting/stores"
	"github.com/wasmwiz/wasmwiz/executor"
	"github.com/wasmwiz/wasmwiz/executor/worker"
	"github.com/wasmwiz/wasmwiz/gateway"
	"github.com/wasmwiz/wasmwiz/internal/telemetry"
	"github.com/wasmwiz/wasmwiz/schemas"
)

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wasmwiz_build_info", Help: "Build information; always 1."}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version(), goVersion()).Set(1)
	reg.MustRegister(buildInfo)
	return reg
}

// connect dials NATS as role (its own inbox prefix where its user has permissions) and keeps
// reconnecting for ever: roles ride out a NATS restart.
func connect(url, role string, auth *natsAuth, log *slog.Logger) (*nats.Conn, error) {
	var opts []nats.Option
	if prefix, ok := natsRoleInbox(role); ok {
		opts = append(opts, nats.CustomInboxPrefix(prefix))
	}
	return auth.connect(url, "wasmwiz-"+role, append(opts,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		natsErrorLog(log),
	)...)
}

// natsErrorLog logs what the server refused on a role's connection. A publish the role's user
// may not make (nats-roles.conf) is refused asynchronously: a reply or an ack is lost, a
// JetStream call times out; this line says which subject it was.
func natsErrorLog(log *slog.Logger) nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if sub != nil {
			log.Error("nats error", "subject", sub.Subject, "err", err)
			return
		}
		log.Error("nats error", "err", err)
	})
}

// setupTracing starts OpenTelemetry for a role (an exporter only when OTEL_EXPORTER_OTLP_ENDPOINT
// is set); the returned func flushes it.
func setupTracing(ctx context.Context, service string, getenv func(string) string, log *slog.Logger) func() {
	shutdown, err := telemetry.Setup(ctx, service, func(k string) string { return getenv(k) })
	if err != nil {
		log.Warn("tracing disabled", "err", err)
		return func() {}
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(sctx)
	}
}

// serveOps serves /metrics and /health/{live,ready} for roles that have no API of their own.
func serveOps(ctx context.Context, addr string, reg *prometheus.Registry, ready func() bool, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health/live", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"status":"ok"}`) })
	readyH := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"unavailable"}`)
			return
		}
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}
	mux.HandleFunc("GET /health/ready", readyH)
	mux.HandleFunc("GET /health", readyH)
	ln, err := listenOps(addr, log)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("ops endpoint listening", "addr", ln.Addr().String())
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// The roles' default ops addresses. Two roles of a kind on one host (two executors) would
// collide on them: see listenOps.
const (
	defaultExecutorOpsAddr   = "127.0.0.1:9091"
	defaultAccountingOpsAddr = "127.0.0.1:9092"
)

// listenOps listens on addr. When addr is a role's default and already taken, it listens on a
// free port of the same host instead and says so: a second executor on a host must not fail to
// start over its metrics. An address chosen by flag or environment is never moved.
func listenOps(addr string, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil || (addr != defaultExecutorOpsAddr && addr != defaultAccountingOpsAddr) || !errors.Is(err, syscall.EADDRINUSE) {
		return ln, err
	}
	host, _, _ := net.SplitHostPort(addr)
	ln, ferr := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if ferr != nil {
		return nil, errors.Join(err, ferr)
	}
	log.Warn("ops endpoint: the default address is taken (another role on this host?); serving on a free port, set --metrics-addr to choose one",
		"default_addr", addr, "addr", ln.Addr().String())
	return ln, nil
}

// roleCommon holds the flags and the start-up that every server role shares.
type roleCommon struct {
	name      string
	natsURL   *string
	natsAuth  *natsAuth
	replicas  *int
	loadTiers func() (map[string]schemas.Tier, error)
}

func commonRoleFlags(fs *flagSet, name string) *roleCommon {
	return &roleCommon{
		name:      name,
		natsURL:   fs.String("nats-url", nats.DefaultURL, "NATS server URL(s), comma separated"),
		natsAuth:  natsAuthFlags(fs),
		replicas:  fs.Int("replicas", 1, "JetStream replicas for streams, buckets and consumers (3 on a cluster)"),
		loadTiers: fs.tiersFlag(),
	}
}

// roleEnv is what a role starts with: its tiers, logger, NATS connection and metrics registry.
type roleEnv struct {
	tiers       map[string]schemas.Tier
	log         *slog.Logger
	nc          *nats.Conn
	reg         *prometheus.Registry
	stopTracing func()
	replicas    int
}

// start parses the flags, loads the tiers, and sets up logging, tracing, NATS and metrics.
func (rc *roleCommon) start(ctx context.Context, fs *flagSet, args []string, getenv func(string) string, stderr io.Writer, ops int) (*roleEnv, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	tiers, err := rc.loadTiers()
	if err != nil {
		return nil, usageError{err.Error()}
	}
	e := &roleEnv{tiers: tiers, log: newLogger(stderr, getenv, false), reg: newRegistry(), replicas: *rc.replicas}
	e.stopTracing = setupTracing(ctx, "wasmwiz-"+rc.name, getenv, e.log)
	if e.nc, err = connect(*rc.natsURL, rc.name, rc.natsAuth, e.log); err != nil {
		e.stopTracing()
		return nil, err
	}
	if err := registerOps(e.reg, e.nc, ops, tiers); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *roleEnv) close() {
	e.nc.Close()
	e.stopTracing()
}

// serveUntilDrained serves the ops endpoint for a role without an API of its own, for as long
// as run runs: live, and not ready, through the drain.
func (e *roleEnv) serveUntilDrained(ctx context.Context, addr string, ready func() bool, run func(context.Context) error) error {
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOps()
	if err := serveOps(opsCtx, addr, e.reg, ready, e.log); err != nil {
		return err
	}
	return run(ctx)
}

func runGatewayCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gateway", getenv, stderr)
	rc := commonRoleFlags(fs, "gateway")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "REST API address")
	uploadWait := fs.Duration("upload-wait", 0, "longest an upload waits for its compile before answering 202 with status compiling (default 30s; ?wait=true waits for the whole compile budget)")
	syncWait := fs.Duration("sync-wait", 0, "longest a synchronous execution request waits before answering 202 (default: its timeout + 10s)")
	drainTimeout := fs.Duration("drain-timeout", 30*time.Second, "after SIGTERM, how long in-flight requests may take to finish")
	drainDelay := fs.Duration("drain-delay", 0, "after SIGTERM, how long to keep serving while /health/ready answers 503, before refusing new connections")
	jwtKey := fs.String("jwt-key-file", "", "Ed25519 private key (PKCS#8 PEM) that signs tokens; empty: no tokens (wasmwiz secrets generate makes one)")
	metricsAddr := fs.String("metrics-addr", "", "serve /metrics on this address instead of the API's (empty: on the API's)")
	tlsCert := fs.String("tls-cert", "", "serve the API over HTTPS with this certificate chain (PEM; with --tls-key); read again when it changes")
	tlsKey := fs.String("tls-key", "", "the private key (PEM) of --tls-cert")
	maxConns := fs.Int("max-connections", gateway.DefaultMaxConnections, "most open HTTP connections; more wait in the accept queue")
	e, err := rc.start(ctx, fs, args, getenv, stderr, opsGateway)
	if err != nil {
		return err
	}
	defer e.close()
	g, err := gateway.New(gateway.Config{
		HTTPAddr: *httpAddr, Tiers: e.tiers, JWTKeyFile: *jwtKey, SyncWait: *syncWait, UploadWait: *uploadWait, DrainTimeout: *drainTimeout,
		DrainDelay: *drainDelay, Replicas: e.replicas, Logger: e.log, Registerer: e.reg, Gatherer: e.reg,
		MetricsAddr: *metricsAddr, TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey, MaxConnections: *maxConns,
	}, e.nc)
	if err != nil {
		return err
	}
	return g.Run(ctx)
}

func runExecutorCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("executor", getenv, stderr)
	rc := commonRoleFlags(fs, "executor")
	cacheDir := fs.String("cache-dir", "./wasmwiz-cache", "module files and the compilation cache")
	workers := fs.Int("workers", 0, "worker processes (default: 3 per CPU, at least 4; long-running guests are held to one per CPU)")
	compileTimeout := fs.Duration("compile-timeout", 0, "caps every tier's compile budget (the tier table's compile_base_ms + compile_per_mib_ms per MiB, at most compile_max_ms); 0: the budgets alone")
	nodeID := fs.String("node-id", "", "node id (default: hostname-random)")
	metricsAddr := fs.String("metrics-addr", defaultExecutorOpsAddr, "address for /metrics and /health (empty: off; the default, when taken, moves to a free port)")
	e, err := rc.start(ctx, fs, args, getenv, stderr, opsExecutor)
	if err != nil {
		return err
	}
	defer e.close()
	n, err := executor.New(executor.Config{
		NodeID: *nodeID, Workers: *workers, CompileTimeout: *compileTimeout, CacheDir: *cacheDir, Tiers: e.tiers,
		Replicas: e.replicas, Logger: e.log, Registerer: e.reg,
	}, e.nc)
	if err != nil {
		return err
	}
	return e.serveUntilDrained(ctx, *metricsAddr, n.Ready, n.Run)
}

func runAccountingCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("accounting", getenv, stderr)
	rc := commonRoleFlags(fs, "accounting")
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "Postgres URL (default: $DATABASE_URL); empty: SQLite at --sqlite-path")
	sqlitePath := fs.String("sqlite-path", "./wasmwiz-data/accounting.db", "SQLite file when no database URL is set")
	metricsAddr := fs.String("metrics-addr", defaultAccountingOpsAddr, "address for /metrics and /health (empty: off; the default, when taken, moves to a free port)")
	e, err := rc.start(ctx, fs, args, getenv, stderr, opsAccounting)
	if err != nil {
		return err
	}
	defer e.close()
	if *dbURL == "" {
		if err := mkdirData(filepath.Dir(*sqlitePath)); err != nil {
			return err
		}
	}
	// A replica started while PostgreSQL is down waits for it (RATIONALE.md), live and not
	// ready meanwhile: its ops endpoint serves from the start, so that probes see it waiting.
	var consumer atomic.Pointer[accounting.Consumer]
	var opened atomic.Pointer[accounting.Store]
	ready := func() bool { c := consumer.Load(); return c != nil && c.Ready() }
	// wasmwiz_database_up is 0 while the database has never answered (the alert fires).
	if err := registerDatabaseUp(e.reg, func(ctx context.Context) error {
		if s := opened.Load(); s != nil {
			return (*s).Ping(ctx)
		}
		return errors.New("not connected yet")
	}); err != nil {
		return err
	}
	return e.serveUntilDrained(ctx, *metricsAddr, ready, func(ctx context.Context) error {
		store, err := stores.OpenWithRetry(ctx, *dbURL, *sqlitePath, e.log)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while waiting for the database: nothing to drain
			}
			return fmt.Errorf("open accounting store: %w", err)
		}
		defer store.Close()
		opened.Store(&store)
		c, err := accounting.New(accounting.Config{Store: store, Tiers: e.tiers, Replicas: e.replicas, Logger: e.log, Registerer: e.reg}, e.nc)
		if err != nil {
			return err
		}
		consumer.Store(c)
		return c.Run(ctx)
	})
}

// runWorker is the executor's child process: jobs on stdin, results on stdout.
func runWorker(ctx context.Context) int {
	return worker.Main(ctx, os.Stdin, os.Stdout, os.Stderr)
}
