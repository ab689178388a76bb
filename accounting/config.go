package accounting

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Config configures a Consumer. Zero values take the defaults.
type Config struct {
	Store     Store         // required
	BatchSize int           // events per batch at most; default 256
	BatchWait time.Duration // how long a batch waits to fill; default 200ms
	Replicas  int           // replicas of the streams and of the consumer; default 1
	// Tiers are the deployment's tiers (the same file as every other role): streams.Ensure
	// declares per-tier streams too, and must not put back the defaults. Default schemas.DefaultTiers().
	Tiers      map[string]schemas.Tier
	AckWait    time.Duration // redelivery timeout of a held event; default 30s
	MaxBackoff time.Duration // cap of the retry delay when the store fails; default 5s
	// QueryTimeout bounds one usage query; default 10s.
	QueryTimeout time.Duration
	// RejectedRetry is how long an event the store refuses (while it accepts others) waits
	// before it is delivered again; default 1m.
	RejectedRetry time.Duration
	Logger        *slog.Logger          // default slog.Default()
	Registerer    prometheus.Registerer // default: a private registry (metrics not exported)
}

// withDefaults returns c with every zero value replaced by its default; c is not changed.
func (c Config) withDefaults() Config {
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.BatchWait <= 0 {
		c.BatchWait = 200 * time.Millisecond
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = 10 * time.Second
	}
	if c.RejectedRetry <= 0 {
		c.RejectedRetry = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Tiers == nil {
		c.Tiers = schemas.DefaultTiers()
	}
	return c
}

// Validate checks the configuration as New would use it (defaults applied); it changes nothing.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Store == nil:
		return errors.New("accounting: config: Store is required")
	case c.BatchSize > 10_000:
		return errors.New("accounting: config: BatchSize must be at most 10000")
	case c.AckWait < 4*c.BatchWait || c.AckWait < 5*time.Second:
		return errors.New("accounting: config: AckWait must be at least 5s and 4 x BatchWait")
	}
	if err := schemas.ValidateTiers(c.Tiers); err != nil {
		return fmt.Errorf("accounting: config: %w", err)
	}
	return nil
}

// maxAckPending is how many events the consumer lets all replicas hold unacked at once.
func (c Config) maxAckPending() int { return max(20_000, 8*c.BatchSize*c.Replicas) }

// insertTimeout bounds one attempt to store a batch; held events are kept alive with
// InProgress meanwhile, so an attempt may exceed AckWait.
func (c Config) insertTimeout() time.Duration { return 30 * time.Second }
