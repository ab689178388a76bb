package accounting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/wasmwiz/wasmwiz/accounting/internal/ledger"
	"github.com/wasmwiz/wasmwiz/accounting/postgres"
	"github.com/wasmwiz/wasmwiz/accounting/sqlite"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Entry is one event read from the events stream, with its stream sequence.
type Entry = ledger.Entry

// InsertResult counts what one Store.Insert did.
type InsertResult = ledger.InsertResult

// Store keeps usage. Implementations: accounting/postgres and accounting/sqlite; both pass
// accounting/storetest.
type Store interface {
	// Insert stores a batch of events (valid per ValidateEvent) in one transaction: each
	// execution once by execution id, each other event once by event id, the daily rollup
	// updated with what was really inserted. On error nothing is stored.
	Insert(ctx context.Context, entries []Entry) (InsertResult, error)
	// Usage answers a usage query for one tenant. Invalid requests fail with a *schemas.Error.
	Usage(ctx context.Context, req schemas.UsageRequest) (schemas.UsageResponse, error)
	// Reconcile lists the stored execution ids of a time range, a page at a time, and checks
	// the daily rollup against the raw rows.
	Reconcile(ctx context.Context, req schemas.ReconcileRequest) (schemas.ReconcileResponse, error)
	// Ping checks the database is reachable.
	Ping(ctx context.Context) error
	Close() error
}

var (
	_ Store = (*postgres.Store)(nil)
	_ Store = (*sqlite.Store)(nil)
)

// ValidateEvent checks an event received on subject; events that fail can never be stored.
func ValidateEvent(ev *schemas.Event, subject string) error { return ledger.Validate(ev, subject) }

// Open opens the store: PostgreSQL when databaseURL is set, else the SQLite file at sqlitePath
// (its directory is created). Migrations are applied before it returns.
func Open(ctx context.Context, databaseURL, sqlitePath string) (Store, error) {
	if databaseURL != "" {
		return postgres.Open(ctx, databaseURL)
	}
	if sqlitePath == "" {
		return nil, fmt.Errorf("accounting: neither a database url nor a sqlite path")
	}
	if err := os.MkdirAll(filepath.Dir(sqlitePath), 0o755); err != nil {
		return nil, fmt.Errorf("accounting: %w", err)
	}
	return sqlite.Open(ctx, sqlitePath)
}

// OpenWithRetry is Open retried with capped exponential backoff until it succeeds or ctx ends,
// so that a replica starting while PostgreSQL is down waits for it instead of exiting.
func OpenWithRetry(ctx context.Context, databaseURL, sqlitePath string, log *slog.Logger) (Store, error) {
	if log == nil {
		log = slog.Default()
	}
	b := newBackoff(10 * time.Second)
	for {
		s, err := Open(ctx, databaseURL, sqlitePath)
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, errors.Join(ctx.Err(), err)
		}
		d := b.next()
		log.Warn("accounting store not available; retrying", "error", err, "retry_in", d.String())
		sleep(ctx, d)
	}
}
