package accounting

import (
	"context"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Entry is one event read from the events stream, with its stream sequence.
type Entry struct {
	Seq   uint64
	Event schemas.Event
}

// InsertResult counts what one Store.Insert did.
type InsertResult struct {
	Executions int // execution rows inserted
	Events     int // audit (non-execution) events inserted
	Duplicates int // executions and events skipped: already stored, or twice in the batch
}

// Store keeps usage. The adapters accounting/postgres and accounting/sqlite import this package
// and implement it; both pass accounting/storetest. accounting/stores picks one for a role.
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
