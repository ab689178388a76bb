package main

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/internal/opsmetrics"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Which JetStream consumers and streams each role reports (see internal/opsmetrics).
const (
	opsGateway    = 1 << iota // connection, JetStream reachability and storage, the modules, bundles and results stores
	opsExecutor               // + the per-tier execution consumers, WASMWIZ_EXEC and the DLQ
	opsAccounting             // + the accounting consumer and WASMWIZ_EVENTS
)

// registerOps registers the scrape-time JetStream collector for the given roles on reg, in a
// deployment of tiers: the executor reports its tiers' queues, which are all its NATS user may
// look up (natsroles.For).
func registerOps(reg prometheus.Registerer, nc *nats.Conn, roles int, tiers map[string]schemas.Tier) error {
	var cfg opsmetrics.Config
	if roles&opsGateway != 0 { // the stores uploads and results fill (see streams.StoreBudget)
		cfg.Streams = append(cfg.Streams, "OBJ_"+schemas.ObjectModules, "OBJ_"+schemas.ObjectBundles, "KV_"+schemas.BucketResults)
	}
	if roles&opsExecutor != 0 {
		for _, name := range streams.TierNames(tiers) {
			cfg.Consumers = append(cfg.Consumers, opsmetrics.ConsumerRef{Stream: schemas.ExecStream(name), Consumer: schemas.ExecConsumer(name)})
			cfg.Streams = append(cfg.Streams, schemas.ExecStream(name))
		}
		cfg.Streams = append(cfg.Streams, schemas.StreamDLQ)
	}
	if roles&opsAccounting != 0 {
		cfg.Consumers = append(cfg.Consumers, opsmetrics.ConsumerRef{Stream: schemas.StreamEvents, Consumer: schemas.ConsumerAccounting})
		cfg.Streams = append(cfg.Streams, schemas.StreamEvents)
	}
	c, err := opsmetrics.NewJetStream(nc, cfg)
	if err != nil {
		return err
	}
	return reg.Register(c)
}

// registerDatabaseUp registers wasmwiz_database_up, the accounting store's ping at scrape time.
func registerDatabaseUp(reg prometheus.Registerer, ping func(context.Context) error) error {
	return reg.Register(opsmetrics.PingGauge("wasmwiz_database_up",
		"1 when the accounting database (PostgreSQL or SQLite) answered a ping at scrape time, else 0.", 2*time.Second, ping))
}
