// Package sqlite is accounting's embedded store for dev mode and single-node deployments
// (modernc.org/sqlite, no cgo): the same tables and behaviour as accounting/postgres, in one file
// in WAL mode. Every batch is one IMMEDIATE transaction; raw rows are inserted with
// ON CONFLICT DO NOTHING and only the rows really inserted are added to the daily rollup.
// synchronous=FULL, because a batch is acked once its commit returns.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"net/url"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers driver "sqlite"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/accounting/internal/ledger"
	"github.com/wasmwiz/wasmwiz/schemas"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store keeps usage in a SQLite file. It is safe for concurrent use within one process; other
// processes may read the file, and writers wait for each other up to the busy timeout.
type Store struct {
	db  *sql.DB
	now func() time.Time
}

// BusyTimeout is how long a writer waits for another one to finish.
const BusyTimeout = 10 * time.Second

// Open opens (creating it if needed) the database file at path and applies the pending
// migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db, now: time.Now}, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database is usable.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

const insertExecution = `
INSERT INTO executions (execution_id, tenant_id, key_id, tier, module_id, status, exit_code,
    wall_ms, cpu_ms, memory_peak_bytes, stdin_bytes, stdout_bytes, stderr_bytes,
    billed_wall_ms, memory_mb_ms, queued_at, started_at, finished_at, day, node_id,
    event_id, event_seq, inserted_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (execution_id) DO NOTHING`

const upsertDaily = `
INSERT INTO usage_daily (tenant_id, day, executions, succeeded, failed, timed_out, wall_ms,
    memory_mb_ms, bytes_in, bytes_out)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant_id, day) DO UPDATE SET
    executions   = executions   + excluded.executions,
    succeeded    = succeeded    + excluded.succeeded,
    failed       = failed       + excluded.failed,
    timed_out    = timed_out    + excluded.timed_out,
    wall_ms      = wall_ms      + excluded.wall_ms,
    memory_mb_ms = memory_mb_ms + excluded.memory_mb_ms,
    bytes_in     = bytes_in     + excluded.bytes_in,
    bytes_out    = bytes_out    + excluded.bytes_out`

const insertEvent = `
INSERT INTO events (id, type, tenant_id, time, data, event_seq, inserted_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING`

func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// Insert stores a batch of valid events in one transaction and returns what it inserted.
func (s *Store) Insert(ctx context.Context, entries []accounting.Entry) (accounting.InsertResult, error) {
	execs, audits, dups, err := ledger.Rows(entries)
	if err != nil {
		return accounting.InsertResult{}, err
	}
	res, err := s.insert(ctx, execs, audits)
	if err != nil {
		return accounting.InsertResult{}, fmt.Errorf("sqlite: insert batch: %w", err)
	}
	res.Duplicates += dups
	return res, nil
}

func (s *Store) insert(ctx context.Context, execs []ledger.Execution, audits []ledger.Audit) (res accounting.InsertResult, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	now := s.now().UnixMicro()
	if len(execs) > 0 {
		stmt, err := tx.PrepareContext(ctx, insertExecution)
		if err != nil {
			return res, err
		}
		defer stmt.Close()
		inserted := make([]ledger.Execution, 0, len(execs))
		for i := range execs {
			e := &execs[i]
			r, err := stmt.ExecContext(ctx, e.ExecutionID, e.TenantID, e.KeyID, e.Tier, e.ModuleID,
				e.Status, e.ExitCode, e.WallMS, e.CPUMS, e.MemoryPeakBytes, e.StdinBytes,
				e.StdoutBytes, e.StderrBytes, e.BilledWallMS, e.MemoryMBMS, micros(e.QueuedAt),
				micros(e.StartedAt), e.FinishedAt.UnixMicro(), e.Day, e.NodeID, e.EventID,
				int64(e.EventSeq), now)
			if err != nil {
				return res, err
			}
			n, err := r.RowsAffected()
			if err != nil {
				return res, err
			}
			if n == 1 {
				inserted = append(inserted, *e)
			}
		}
		res.Executions = len(inserted)
		res.Duplicates += len(execs) - len(inserted)
		for _, d := range ledger.Rollup(inserted) {
			_, err := tx.ExecContext(ctx, upsertDaily, d.TenantID, d.Day, d.Executions, d.Succeeded,
				d.Failed, d.TimedOut, d.WallMS, d.MemoryMBMS, d.BytesIn, d.BytesOut)
			if err != nil {
				return res, err
			}
		}
	}
	for _, a := range audits {
		r, err := tx.ExecContext(ctx, insertEvent, a.ID, a.Type, a.TenantID, a.Time.UnixMicro(), string(a.Data), int64(a.EventSeq), now)
		if err != nil {
			return res, err
		}
		n, err := r.RowsAffected()
		if err != nil {
			return res, err
		}
		res.Events += int(n)
		res.Duplicates += 1 - int(n)
	}
	return res, tx.Commit()
}

const sums = `count(*),
    coalesce(sum(status = 'succeeded'), 0),
    coalesce(sum(status NOT IN ('succeeded', 'timed_out')), 0),
    coalesce(sum(status = 'timed_out'), 0),
    coalesce(sum(billed_wall_ms), 0), coalesce(sum(memory_mb_ms), 0),
    coalesce(sum(stdin_bytes), 0), coalesce(sum(stdout_bytes + stderr_bytes), 0)`

var rawQueries = map[string]string{
	schemas.UsageByDay:    `SELECT day, ` + sums + ` FROM executions WHERE tenant_id = ? AND finished_at >= ? AND finished_at < ? GROUP BY day ORDER BY 1`,
	schemas.UsageByModule: `SELECT module_id, ` + sums + ` FROM executions WHERE tenant_id = ? AND finished_at >= ? AND finished_at < ? GROUP BY module_id ORDER BY 1`,
	schemas.UsageByKey:    `SELECT key_id, ` + sums + ` FROM executions WHERE tenant_id = ? AND finished_at >= ? AND finished_at < ? GROUP BY key_id ORDER BY 1`,
}

const rollupQuery = `SELECT day, executions, succeeded, failed, timed_out, wall_ms, memory_mb_ms,
    bytes_in, bytes_out
FROM usage_daily WHERE tenant_id = ? AND day >= ? AND day < ? ORDER BY day`

// Usage answers a usage query. Grouped by day over whole UTC days it reads the daily rollup;
// otherwise it aggregates the raw rows.
func (s *Store) Usage(ctx context.Context, req schemas.UsageRequest) (schemas.UsageResponse, error) {
	req, err := ledger.NormalizeUsage(req, s.now())
	if err != nil {
		return schemas.UsageResponse{}, err
	}
	var rows *sql.Rows
	if ledger.UseRollup(req) {
		rows, err = s.db.QueryContext(ctx, rollupQuery, req.TenantID, req.From.Format(ledger.DayFormat), req.To.Format(ledger.DayFormat))
	} else {
		rows, err = s.db.QueryContext(ctx, rawQueries[req.GroupBy], req.TenantID, req.From.UnixMicro(), req.To.UnixMicro())
	}
	if err != nil {
		return schemas.UsageResponse{}, fmt.Errorf("sqlite: usage: %w", err)
	}
	defer rows.Close()
	var out []schemas.UsageRow
	for rows.Next() {
		var u schemas.UsageRow
		if err := rows.Scan(&u.Key, &u.Executions, &u.Succeeded, &u.Failed, &u.TimedOut, &u.WallMS, &u.MemoryMBMS, &u.BytesIn, &u.BytesOut); err != nil {
			return schemas.UsageResponse{}, fmt.Errorf("sqlite: usage: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return schemas.UsageResponse{}, fmt.Errorf("sqlite: usage: %w", err)
	}
	return ledger.Response(req, out), nil
}
