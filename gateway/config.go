package gateway

import (
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Config configures a gateway. Zero values take the defaults.
type Config struct {
	HTTPAddr string // default 127.0.0.1:8080; "" with Listener set
	Listener net.Listener
	Tiers    map[string]schemas.Tier
	// SyncWait bounds how long a synchronous execution request waits for its result before
	// answering 202; default the tier's wall time + 10s.
	SyncWait time.Duration
	// UploadWait is how long an upload waits for its compile before answering 202 "compiling"
	// (?wait=true waits for the compile's whole budget); default 30s.
	UploadWait   time.Duration
	Replicas     int           // stream replicas for streams.Ensure
	DrainTimeout time.Duration // default 30s
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

// withDefaults returns c with every zero value replaced by its default; c is not changed.
func (c Config) withDefaults() Config {
	if c.HTTPAddr == "" && c.Listener == nil {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	if c.Tiers == nil {
		c.Tiers = schemas.DefaultTiers()
	}
	if c.UploadWait <= 0 {
		c.UploadWait = 30 * time.Second
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
	return c
}

// Validate checks c as given, zero values standing for their defaults; it changes nothing.
func (c Config) Validate() error {
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("give both a TLS certificate and its key, or neither")
	}
	if c.Tiers == nil {
		return nil // the default tiers
	}
	return schemas.ValidateTiers(c.Tiers)
}
