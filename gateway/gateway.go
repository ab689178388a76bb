// Package gateway is WasmWiz's front door: it authenticates callers, validates their requests,
// stores modules, publishes execution requests to JetStream and waits for the executors'
// replies. It serves one contract twice, from one table of operations (ops.go): REST (Huma v2,
// OpenAPI 3.1) and a NATS micro service (wasmwiz.api.v1.*). It is stateless and speaks only
// NATS: no database, no guest code.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"golang.org/x/sync/errgroup"

	"github.com/wasmwiz/wasmwiz/internal/history"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Server is a gateway: it serves the WasmWiz API over REST and NATS.
type Server struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	id      string
	metrics *metrics

	results        jetstream.KeyValue
	moduleRefs     jetstream.KeyValue
	idempotency    jetstream.KeyValue
	tenants        jetstream.KeyValue
	keysKV         jetstream.KeyValue
	modules        jetstream.ObjectStore
	bundleRefs     jetstream.KeyValue    // bundles.go
	bundles        jetstream.ObjectStore // bundles.go
	outputs        jetstream.ObjectStore // outputs.go
	history        *history.Lister       // history.go
	historyBatches history.Batches       // queued records, stored a tenant's minute at a time (history.go)
	storage        jetstream.KeyValue    // per-tenant result usage (storage.go)
	usageReads     usageReads            // result usage as last read, per tenant (storage.go)
	resultsTTL     time.Duration         // the results bucket's: how long a result counts against its tenant
	keyring        *keyring
	waiters        *waiters
	limiter        *Limiter
	slots          *requestSlots
	keyUsage       *keyUsage
	refCache       moduleRefCache
	compiles       sync.WaitGroup // compiles running in the background (compiling.go)

	ops       []operation           // the API (ops.go)
	opByID    map[string]*operation // ops by id
	handler   http.Handler
	certs     *certReloader // nil: plain HTTP
	lastPing  atomic.Int64  // unix nanos of the last executor answer
	opened    bool          // open has run
	streamsOK atomic.Bool
	draining  atomic.Bool
	inflight  sync.WaitGroup
}

// New checks cfg and prepares a gateway on nc. It does no I/O: Run (through open) ensures the
// streams, opens the buckets and object stores, reads the TLS pair and the JWT signing key, and
// then serves.
func New(cfg Config, nc *nats.Conn) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	g := &Server{cfg: cfg, log: cfg.Logger.With("role", "gateway"), nc: nc, js: js, id: nuid.Next()}
	if g.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	g.keyring = newKeyring(nil, nil, cfg.Tiers, g.log) // buckets set by open
	g.keyUsage = &keyUsage{m: map[string]time.Time{}}
	g.waiters = newWaiters(nc, schemas.ExecutorReplyPrefix+"."+g.id)
	g.limiter = NewLimiter(js)
	g.slots = newRequestSlots()
	g.ops = g.operations()
	g.opByID = opsByID(g.ops)
	g.handler = g.routes()
	return g, nil
}

// open does the gateway's start-up I/O, once: it ensures the streams (riding out a JetStream
// that is not up yet), opens the buckets and object stores, and reads the TLS pair and the JWT
// signing key. Run calls it; tests that need the stores before Run call it first.
func (g *Server) open(ctx context.Context) error {
	if g.opened {
		return nil
	}
	cfg, js := g.cfg, g.js
	if err := streams.EnsureWithRetry(ctx, js, streams.Options{Replicas: cfg.Replicas, Tiers: cfg.Tiers}); err != nil {
		return fmt.Errorf("ensure streams: %w", err)
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
		{schemas.BucketStorage, &g.storage},
	} {
		kv, err := js.KeyValue(ctx, b.name)
		if err != nil {
			return fmt.Errorf("kv %s: %w", b.name, err)
		}
		*b.kv = streams.LeaderReads(js, kv, cfg.Replicas)
	}
	var err error
	if st, err := g.results.Status(ctx); err != nil {
		return fmt.Errorf("kv %s: %w", schemas.BucketResults, err)
	} else if g.resultsTTL = st.TTL(); g.resultsTTL <= 0 {
		g.resultsTTL = streams.DefaultResultsTTL
	}
	if g.keyUsage.kv, err = js.KeyValue(ctx, schemas.BucketKeyUsage); err != nil {
		return fmt.Errorf("kv %s: %w", schemas.BucketKeyUsage, err)
	}
	if g.modules, err = js.ObjectStore(ctx, schemas.ObjectModules); err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	if g.bundles, err = js.ObjectStore(ctx, schemas.ObjectBundles); err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	if g.outputs, err = js.ObjectStore(ctx, schemas.ObjectOutputs); err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	hs, err := js.Stream(ctx, schemas.StreamHistory)
	if err != nil {
		return fmt.Errorf("stream %s: %w", schemas.StreamHistory, err)
	}
	g.history = &history.Lister{NC: g.nc, Stream: hs, Results: g.results}
	if cfg.TLSCertFile != "" {
		if g.certs, err = newCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return err
		}
	}
	g.keyring.keys, g.keyring.tenants = g.keysKV, g.tenants
	if cfg.JWTKeyFile != "" {
		if g.keyring.signer, err = LoadSigner(cfg.JWTKeyFile, false); err != nil {
			return fmt.Errorf("JWT signing key: %w", err)
		}
	}
	g.opened = true
	return nil
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
	if err := g.open(ctx); err != nil {
		return err
	}
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
		g.log.Info("gateway draining: not ready", "drain_delay", g.cfg.DrainDelay.String())
		if g.cfg.DrainDelay > 0 {
			time.Sleep(g.cfg.DrainDelay) // still serving meanwhile
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
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := g.waiters.request(pctx, schemas.SubjectExecutorPing, nil)
		cancel()
		if err == nil {
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
