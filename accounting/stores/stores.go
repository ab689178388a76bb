// Package stores picks the accounting.Store adapter a process runs with: PostgreSQL when a
// database URL is given, else SQLite. Only cmd/wasmwiz (and tests) import it; the accounting
// role itself knows only the accounting.Store interface, and the adapters import accounting,
// never the other way round.
package stores

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/accounting/postgres"
	"github.com/wasmwiz/wasmwiz/accounting/sqlite"
	"github.com/wasmwiz/wasmwiz/internal/backoff"
)

var (
	_ accounting.Store = (*postgres.Store)(nil)
	_ accounting.Store = (*sqlite.Store)(nil)
)

// Open opens the store: PostgreSQL when databaseURL is set, else the SQLite file at sqlitePath
// (its directory is created). Migrations are applied before it returns.
func Open(ctx context.Context, databaseURL, sqlitePath string) (accounting.Store, error) {
	if databaseURL != "" {
		return postgres.Open(ctx, databaseURL)
	}
	if sqlitePath == "" {
		return nil, errors.New("accounting store: neither a database url nor a sqlite path")
	}
	if err := os.MkdirAll(filepath.Dir(sqlitePath), 0o755); err != nil {
		return nil, fmt.Errorf("accounting store: %w", err)
	}
	return sqlite.Open(ctx, sqlitePath)
}

// OpenWithRetry is Open retried with capped, jittered exponential backoff (up to 10 s) until it
// succeeds or ctx ends, logging each failure, so that a process starting while PostgreSQL is
// down waits for it instead of exiting. SQLite and a malformed URL are not retried: their
// failures do not heal by waiting.
func OpenWithRetry(ctx context.Context, databaseURL, sqlitePath string, log *slog.Logger) (accounting.Store, error) {
	if databaseURL == "" {
		return Open(ctx, databaseURL, sqlitePath)
	}
	// A URL that cannot be parsed will not heal by waiting either.
	if _, err := pgx.ParseConfig(databaseURL); err != nil {
		return nil, fmt.Errorf("accounting store: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	b := backoff.Backoff{Max: 10 * time.Second, Jitter: true}
	for {
		s, err := Open(ctx, databaseURL, sqlitePath)
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, errors.Join(ctx.Err(), err)
		}
		d := b.Next()
		log.Warn("accounting store not available; retrying", "err", err, "retry_in", d.String())
		backoff.Sleep(ctx, d)
	}
}
