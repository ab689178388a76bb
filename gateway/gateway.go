// Package gateway is WasmWiz's front door: it authenticates callers, validates their requests,
// stores modules, publishes execution requests to JetStream and waits for the executors'
// replies. It serves one contract twice: REST (Huma v2, OpenAPI 3.1) and a NATS micro service
// (wasmwiz.api.v1.*). It is stateless and speaks only NATS: no database, no guest code.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Config configures a gateway. Zero values take the defaults.
type Config struct {
	HTTPAddr string // default 127.0.0.1:8080; "" with Listener set
	Listener net.Listener
	Tiers    map[string]schemas.Tier
	// SyncWait bounds how long a synchronous execution request waits for its result before
	// answering 202; default the tier's wall time + 10s.
	SyncWait       time.Duration
	CompileTimeout time.Duration // how long an upload waits for an executor's compile; default 30s
	Replicas       int           // stream replicas for streams.Ensure
	DrainTimeout   time.Duration // default 30s
	// DrainDelay is how long a draining gateway keeps serving, answering 503 on /health/ready,
	// before it stops accepting: time for load balancers to take it out. Default 0.
	DrainDelay time.Duration
	JWTKeyFile string        // Ed25519 PKCS#8 PEM; empty: no tokens issued or accepted
	TokenTTL   time.Duration // default 15m
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer // served at /metrics; default prometheus.DefaultGatherer

	// MetricsAddr serves /metrics on a listener of its own, and no longer on the API's (which
	// then answers 404 there); "" keeps it on the API's. MetricsListener is that listener
	// already open (tests).
	MetricsAddr     string
	MetricsListener net.Listener
	// TLSCertFile and TLSKeyFile (PEM), both or neither: the API is served over HTTPS (TLS 1.2
	// and later, HTTP/2) with Strict-Transport-Security; the pair is read again when it changes.
	TLSCertFile string
	TLSKeyFile  string
	// MaxConnections bounds the open HTTP connections; past it new ones wait in the kernel's
	// accept queue. Default DefaultMaxConnections.
	MaxConnections int
	// ReadHeaderTimeout, ReadTimeout (header and body) and IdleTimeout (keep-alive connections
	// between requests) bound slow and idle clients; MaxHeaderBytes the request headers (431).
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
}

func (c *Config) defaults() {
	if c.HTTPAddr == "" && c.Listener == nil {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	if c.Tiers == nil {
		c.Tiers = schemas.DefaultTiers()
	}
	if c.CompileTimeout <= 0 {
		c.CompileTimeout = 30 * time.Second
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = TokenTTL
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Gatherer == nil {
		c.Gatherer = prometheus.DefaultGatherer
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("give both a TLS certificate and its key, or neither")
	}
	return schemas.ValidateTiers(c.Tiers)
}

// Server is a gateway: it serves the WasmWiz API over REST and NATS.
type Server struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	id      string
	metrics *metrics

	results     jetstream.KeyValue
	moduleRefs  jetstream.KeyValue
	idempotency jetstream.KeyValue
	tenants     jetstream.KeyValue
	keysKV      jetstream.KeyValue
	modules     jetstream.ObjectStore
	bundleRefs  jetstream.KeyValue    // bundles.go
	bundles     jetstream.ObjectStore // bundles.go
	keyring     *keyring
	waiters     *waiters
	limiter     *Limiter
	slots       *requestSlots
	keyUsage    *keyUsage
	refCache    moduleRefCache

	ops       []operation           // the API (ops.go)
	opByID    map[string]*operation // ops by id
	handler   http.Handler
	certs     *certReloader // nil: plain HTTP
	lastPing  atomic.Int64  // unix nanos of the last executor answer
	streamsOK atomic.Bool
	draining  atomic.Bool
	inflight  sync.WaitGroup
}

// New connects a gateway to NATS; it creates streams and buckets it needs.
func New(ctx context.Context, cfg Config, nc *nats.Conn) (*Server, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	g := &Server{cfg: cfg, log: cfg.Logger.With("role", "gateway"), nc: nc, js: js, id: nuid.Next()}
	if g.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := streams.EnsureWithRetry(ctx, js, streams.Options{Replicas: cfg.Replicas, Tiers: cfg.Tiers}); err != nil {
		return nil, fmt.Errorf("ensure streams: %w", err)
	}
	g.streamsOK.Store(true)
	for _, b := range []struct {
		name string
		kv   *jetstream.KeyValue
	}{
		{schemas.BucketResults, &g.results},
		{schemas.BucketModuleOwner, &g.moduleRefs},
		{schemas.BucketIdempotency, &g.idempotency},
		{schemas.BucketTenants, &g.tenants},
		{schemas.BucketKeys, &g.keysKV},
		{schemas.BucketBundleOwner, &g.bundleRefs},
	} {
		kv, err := js.KeyValue(ctx, b.name)
		if err != nil {
			return nil, fmt.Errorf("kv %s: %w", b.name, err)
		}
		*b.kv = streams.LeaderReads(js, kv, cfg.Replicas)
	}
	if g.modules, err = js.ObjectStore(ctx, schemas.ObjectModules); err != nil {
		return nil, fmt.Errorf("object store: %w", err)
	}
	if g.bundles, err = js.ObjectStore(ctx, schemas.ObjectBundles); err != nil {
		return nil, fmt.Errorf("object store: %w", err)
	}
	if cfg.TLSCertFile != "" {
		if g.certs, err = newCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, err
		}
	}
	g.keyring = newKeyring(g.keysKV, g.tenants, cfg.Tiers, g.log)
	if cfg.JWTKeyFile != "" {
		if g.keyring.signer, err = LoadSigner(cfg.JWTKeyFile, false); err != nil {
			return nil, fmt.Errorf("JWT signing key: %w", err)
		}
	}
	usageKV, err := js.KeyValue(ctx, schemas.BucketKeyUsage)
	if err != nil {
		return nil, fmt.Errorf("kv %s: %w", schemas.BucketKeyUsage, err)
	}
	g.keyUsage = &keyUsage{kv: usageKV, m: map[string]time.Time{}}
	g.waiters = newWaiters(nc, "_INBOX.wasmwiz."+g.id)
	g.limiter = NewLimiter(js)
	g.slots = newRequestSlots()
	g.ops = g.operations()
	g.opByID = opsByID(g.ops)
	g.handler = g.routes()
	return g, nil
}

// Handler is the gateway's HTTP handler (REST API, compat endpoint, health, metrics).
func (g *Server) Handler() http.Handler { return g.handler }

// Ready reports whether the gateway can take work: NATS connected, streams present, keys
// loaded, and an executor answered within the last 10 seconds.
func (g *Server) Ready() bool {
	return !g.draining.Load() && g.nc.IsConnected() && g.streamsOK.Load() && g.keyring.isSynced() &&
		time.Since(time.Unix(0, g.lastPing.Load())) < 10*time.Second
}

// Run serves HTTP and the NATS micro service until ctx ends, then drains: it stops accepting,
// lets in-flight requests finish within DrainTimeout, and returns.
func (g *Server) Run(ctx context.Context) error {
	if err := g.waiters.start(); err != nil {
		return err
	}
	defer g.waiters.stop()
	svc, err := g.startMicro()
	if err != nil {
		return fmt.Errorf("nats micro service: %w", err)
	}
	ln, err := g.listen()
	if err != nil {
		_ = svc.Stop()
		return err
	}
	srv := g.newServer(g.handler)
	servers := []*http.Server{srv}
	grp, gctx := errgroup.WithContext(ctx)
	if mln, err := g.metricsListener(); err != nil {
		_ = svc.Stop()
		_ = ln.Close()
		return err
	} else if mln != nil {
		msrv := g.newServer(g.metricsHandler())
		servers = append(servers, msrv)
		grp.Go(func() error {
			if err := msrv.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.log.Info("gateway metrics listening", "addr", mln.Addr().String())
	}
	grp.Go(func() error { return g.keyring.run(gctx) })
	grp.Go(func() error { g.pingExecutors(gctx); return nil })
	grp.Go(func() error { g.keyUsage.run(gctx); return nil })
	grp.Go(func() error {
		var err error
		if g.certs != nil {
			srv.TLSConfig = g.certs.tlsConfig()
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	grp.Go(func() error {
		<-gctx.Done()
		g.draining.Store(true)
		if g.cfg.DrainDelay > 0 {
			g.log.Info("gateway draining: not ready, still serving", "drain_delay", g.cfg.DrainDelay.String())
			time.Sleep(g.cfg.DrainDelay)
		}
		_ = svc.Stop()
		sctx, cancel := context.WithTimeout(context.Background(), g.cfg.DrainTimeout)
		defer cancel()
		err := srv.Shutdown(sctx)
		for _, s := range servers[1:] {
			_ = s.Shutdown(sctx)
		}
		done := make(chan struct{})
		go func() { g.inflight.Wait(); close(done) }()
		select {
		case <-done:
		case <-sctx.Done():
		}
		return err
	})
	g.log.Info("gateway listening", "addr", ln.Addr().String(), "tls", g.certs != nil, "gateway_id", g.id)
	err = grp.Wait()
	if ctx.Err() != nil && err == nil {
		return nil
	}
	return err
}

// pingExecutors keeps lastPing fresh while any executor answers.
func (g *Server) pingExecutors(ctx context.Context) {
	for {
		interval := 2 * time.Second
		if _, err := g.nc.Request(schemas.SubjectExecutorPing, nil, time.Second); err == nil {
			g.lastPing.Store(time.Now().UnixNano())
		} else {
			interval = 250 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
