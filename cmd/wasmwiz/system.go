package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/accounting/stores"
	"github.com/wasmwiz/wasmwiz/executor"
	"github.com/wasmwiz/wasmwiz/gateway"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// systemConfig is a whole WasmWiz in one process, as `wasmwiz dev` and `wasmwiz bench` run it.
type systemConfig struct {
	DataDir        string // JetStream, the SQLite database, caches and the JWT signing key
	NATSAddr       string // the embedded NATS server's address; port 0: any free port
	HTTPAddr       string // the REST API's address; port 0: any free port
	DatabaseURL    string // Postgres for accounting; empty: SQLite in DataDir
	Workers        int
	CompileTimeout time.Duration
	SyncWait       time.Duration
	UploadWait     time.Duration
	ResultsTTL     time.Duration
	Tiers          map[string]schemas.Tier
	Logger         *slog.Logger
	Registry       *prometheus.Registry
	// NATSDir, when set, holds NATS credentials (made there on first use, kept after): the
	// server then authenticates every connection with the shipped account layout and each role
	// connects as itself (devNATSConfig). Empty: no authentication (bench, on loopback).
	NATSDir string
	// Bootstrap, when set, runs once the streams and buckets exist and before any role starts
	// (so before the API answers): dev makes its keys there, bench its tenant.
	Bootstrap func(ctx context.Context, js jetstream.JetStream) error
	// BeforeServe, when set, runs once the API's address is known (apiURL) and before any role
	// starts, so before the API answers ready: dev saves its client contexts there, so that a
	// script that waits for /health/ready finds them.
	BeforeServe func(apiURL, natsURL string) error
}

// system is a running WasmWiz: an embedded nats-server with JetStream, the gateway, an executor
// node with its worker processes, and accounting.
type system struct {
	cfg     systemConfig
	ns      *server.Server
	url     string // the REST API
	workers int
	conns   []*nats.Conn
	store   accounting.Store
	cancel  context.CancelFunc
	grp     *errgroup.Group
}

// role is what startSystem runs: executor.Node, accounting.Consumer, gateway.Server.
type role interface {
	Run(ctx context.Context) error
}

// startSystem starts a whole WasmWiz and returns once the gateway and the executor are ready.
// The roles run until ctx ends or stop is called; wait returns when they have drained.
func startSystem(ctx context.Context, cfg systemConfig) (_ *system, err error) {
	s := &system{cfg: cfg, workers: cfg.Workers}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	if s.workers <= 0 {
		s.workers = executor.DefaultWorkers()
	}
	if s.cfg.Tiers == nil { // the roles' defaults; the executor's NATS user is made for them
		s.cfg.Tiers = schemas.DefaultTiers()
	}
	if err := s.startNATS(); err != nil {
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	node, acct, gw, err := s.newRoles()
	if err != nil {
		return nil, err
	}
	if s.cfg.BeforeServe != nil {
		if err := s.cfg.BeforeServe(s.url, s.ns.ClientURL()); err != nil {
			return nil, err
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.grp, rctx = errgroup.WithContext(rctx)
	for _, r := range []role{node, acct, gw} {
		s.grp.Go(func() error { return r.Run(rctx) })
	}
	if err := s.waitReady(ctx, rctx, gw.Ready, node.Ready); err != nil {
		return nil, err
	}
	return s, nil
}

// startNATS starts the embedded server, with the shipped accounts when cfg.NATSDir is set.
func (s *system) startNATS() (err error) {
	natsConf := ""
	if s.cfg.NATSDir != "" {
		if natsConf, err = devNATSConfig(s.cfg.NATSDir, s.cfg.Tiers); err != nil {
			return fmt.Errorf("NATS credentials: %w", err)
		}
	}
	s.ns, err = startEmbeddedNATS(s.cfg.NATSAddr, natsConf, filepath.Join(s.cfg.DataDir, "jetstream"))
	return err
}

// dial connects to the embedded server, as role's own user when cfg.NATSDir is set.
func (s *system) dial(name, role string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), natsErrorLog(s.cfg.Logger.With("conn", name))}
	if prefix, ok := natsRoleInbox(role); ok {
		opts = append(opts, nats.CustomInboxPrefix(prefix))
	}
	if s.cfg.NATSDir != "" {
		seed, err := nats.NkeyOptionFromSeed(filepath.Join(s.cfg.NATSDir, natsRoleSeed(role)))
		if err != nil {
			return nil, err
		}
		opts = append(opts, seed)
	}
	nc, err := nats.Connect(s.ns.ClientURL(), opts...)
	if err == nil {
		s.conns = append(s.conns, nc)
	}
	return nc, err
}

// prepare does what comes before any role starts: the streams and buckets, cfg.Bootstrap, the
// accounting store, and the ops metrics.
func (s *system) prepare(ctx context.Context) error {
	boot, err := s.dial("wasmwiz-dev", "admin")
	if err != nil {
		return err
	}
	js, err := jetstream.New(boot)
	if err != nil {
		return err
	}
	if err := streams.EnsureWithRetry(ctx, js, streams.Options{Tiers: s.cfg.Tiers, ResultsTTL: s.cfg.ResultsTTL}); err != nil {
		return fmt.Errorf("create streams: %w", err)
	}
	if s.cfg.Bootstrap != nil {
		if err := s.cfg.Bootstrap(ctx, js); err != nil {
			return err
		}
	}
	sqlitePath := ""
	if s.cfg.DatabaseURL == "" {
		sqlitePath = filepath.Join(s.cfg.DataDir, "accounting.db")
	}
	if s.store, err = stores.Open(ctx, s.cfg.DatabaseURL, sqlitePath); err != nil {
		return fmt.Errorf("open accounting store: %w", err)
	}
	if err := registerOps(s.cfg.Registry, boot, opsGateway|opsExecutor|opsAccounting, s.cfg.Tiers); err != nil {
		return err
	}
	return registerDatabaseUp(s.cfg.Registry, s.store.Ping)
}

// newRoles makes the three roles, each on a connection of its own; the gateway's listener is
// opened here, so the API's address is known (s.url) before it serves.
func (s *system) newRoles() (*executor.Node, *accounting.Consumer, *gateway.Server, error) {
	cfg := s.cfg
	var nc [3]*nats.Conn
	for i, r := range []string{"executor", "accounting", "gateway"} {
		var err error
		if nc[i], err = s.dial("wasmwiz-"+r, r); err != nil {
			return nil, nil, nil, err
		}
	}
	node, err := executor.New(executor.Config{Workers: cfg.Workers, CompileTimeout: cfg.CompileTimeout,
		CacheDir: filepath.Join(cfg.DataDir, "cache"), Tiers: cfg.Tiers, Logger: cfg.Logger, Registerer: cfg.Registry}, nc[0])
	if err != nil {
		return nil, nil, nil, err
	}
	acct, err := accounting.New(accounting.Config{Store: s.store, Tiers: cfg.Tiers, Logger: cfg.Logger, Registerer: cfg.Registry}, nc[1])
	if err != nil {
		return nil, nil, nil, err
	}
	jwtKey := filepath.Join(cfg.DataDir, "jwt-key.pem")
	if _, err := gateway.LoadSigner(jwtKey, true); err != nil {
		return nil, nil, nil, fmt.Errorf("JWT signing key: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("API cannot listen on %s (%w): set WASMWIZ_HTTP_ADDR to a free address", cfg.HTTPAddr, err)
	}
	gw, err := gateway.New(gateway.Config{Listener: ln, JWTKeyFile: jwtKey, SyncWait: cfg.SyncWait, UploadWait: cfg.UploadWait, Tiers: cfg.Tiers,
		Logger: cfg.Logger, Registerer: cfg.Registry, Gatherer: cfg.Registry}, nc[2])
	if err != nil {
		ln.Close()
		return nil, nil, nil, err
	}
	s.url = "http://" + ln.Addr().String()
	return node, acct, gw, nil
}

// waitReady polls the roles' readiness flags for at most a minute; a role that fails first
// ends the wait with its error.
func (s *system) waitReady(ctx, rctx context.Context, ready ...func() bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(time.Minute)
	for _, r := range ready {
		for !r() {
			select {
			case <-rctx.Done():
				if err := s.grp.Wait(); err != nil {
					return err
				}
				return ctx.Err()
			case <-deadline:
				return errors.New("the in-process system did not become ready within a minute")
			case <-tick.C:
			}
		}
	}
	return nil
}

// wait waits until the roles have returned (ctx ended, or one failed) and gives the first error.
func (s *system) wait() error { return s.grp.Wait() }

// stop stops the roles, waits for them, and closes the connections, the store and NATS.
func (s *system) stop() {
	if s.cancel != nil {
		s.cancel()
		_ = s.grp.Wait()
	}
	for _, nc := range s.conns {
		nc.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
}

// startEmbeddedNATS starts a nats-server with JetStream stored in storeDir, listening on addr
// (port 0: a free port), configured by configFile when given (accounts and users).
func startEmbeddedNATS(addr, configFile, storeDir string) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, usageError{fmt.Sprintf("nats address %q: %v", addr, err)}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, usageError{fmt.Sprintf("nats address %q: bad port", addr)}
	}
	if port == 0 {
		port = server.RANDOM_PORT
	} else {
		// nats-server does not report a taken port to its caller; find out first, and say so plainly.
		probe, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS cannot listen on %s (%v): set WASMWIZ_NATS_ADDR to a free address", addr, err)
		}
		probe.Close()
	}
	opts := &server.Options{}
	if configFile != "" {
		if opts, err = server.ProcessConfigFile(configFile); err != nil {
			return nil, fmt.Errorf("embedded NATS: %w", err)
		}
	}
	opts.ServerName, opts.Host, opts.Port = "wasmwiz-dev", host, port
	opts.JetStream, opts.StoreDir, opts.MaxPayload, opts.NoSigs = true, storeDir, 8<<20, true
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not start on %s (is the port taken? set WASMWIZ_NATS_ADDR)", addr)
	}
	return ns, nil
}
