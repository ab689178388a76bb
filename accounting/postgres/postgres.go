// Package postgres is accounting's PostgreSQL store (pgx/v5). Every batch of events is one
// transaction: raw rows are inserted with ON CONFLICT DO NOTHING, and only the rows that
// RETURNING reports as inserted are added to the daily rollup, so a redelivered or republished
// execution is counted once, with no dedupe window. Migrations are embedded and applied by
// Open under a PostgreSQL advisory lock, so replicas starting together migrate once.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/accounting/internal/ledger"
	"github.com/wasmwiz/wasmwiz/schemas"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store keeps usage in PostgreSQL. It is safe for concurrent use, also by several processes.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// Open connects to databaseURL (a pgx connection string; a search_path parameter selects the
// schema) and applies the pending migrations.
func Open(ctx context.Context, databaseURL string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse database url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool, now: time.Now}, nil
}

// migrate applies the embedded migrations with goose. The session locker holds a
// pg_advisory_lock for the whole run; its id is derived from the current schema, so replicas
// sharing a schema migrate one after another, while different schemas (tests) do not wait for
// each other.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	var schema string
	if err := pool.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return fmt.Errorf("postgres: current schema: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte("wasmwiz-accounting-migrations:" + schema))
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(int64(h.Sum64()>>1)),
		lock.WithLockTimeout(1, 600), // poll every second, up to 10 minutes
	)
	if err != nil {
		return fmt.Errorf("postgres: migration lock: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// Close closes the connection pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping checks the database is reachable.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

const insertExecutions = `
INSERT INTO executions (execution_id, tenant_id, key_id, tier, module_id, status, exit_code,
    wall_ms, cpu_ms, memory_peak_bytes, stdin_bytes, stdout_bytes, stderr_bytes,
    billed_wall_ms, memory_mb_ms, queued_at, started_at, finished_at, day, node_id,
    event_id, event_seq)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::integer[], $8::float8[], $9::float8[], $10::bigint[], $11::bigint[], $12::bigint[],
    $13::bigint[], $14::bigint[], $15::bigint[], $16::timestamptz[], $17::timestamptz[],
    $18::timestamptz[], $19::date[], $20::text[], $21::text[], $22::bigint[])
ON CONFLICT (execution_id) DO NOTHING
RETURNING execution_id`

const upsertDaily = `
INSERT INTO usage_daily (tenant_id, day, executions, succeeded, failed, timed_out, wall_ms,
    memory_mb_ms, bytes_in, bytes_out)
SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[], $5::bigint[],
    $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])
ON CONFLICT (tenant_id, day) DO UPDATE SET
    executions   = usage_daily.executions   + EXCLUDED.executions,
    succeeded    = usage_daily.succeeded    + EXCLUDED.succeeded,
    failed       = usage_daily.failed       + EXCLUDED.failed,
    timed_out    = usage_daily.timed_out    + EXCLUDED.timed_out,
    wall_ms      = usage_daily.wall_ms      + EXCLUDED.wall_ms,
    memory_mb_ms = usage_daily.memory_mb_ms + EXCLUDED.memory_mb_ms,
    bytes_in     = usage_daily.bytes_in     + EXCLUDED.bytes_in,
    bytes_out    = usage_daily.bytes_out    + EXCLUDED.bytes_out`

const insertEvents = `
INSERT INTO events (id, type, tenant_id, time, data, event_seq)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[], $6::bigint[])
ON CONFLICT (id) DO NOTHING
RETURNING id`

// Insert stores a batch of valid events in one transaction and returns what it inserted.
func (s *Store) Insert(ctx context.Context, entries []accounting.Entry) (accounting.InsertResult, error) {
	var res accounting.InsertResult
	execs, audits, dups, err := ledger.Rows(entries)
	if err != nil {
		return res, err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		res = accounting.InsertResult{Duplicates: dups}
		if len(execs) > 0 {
			inserted, err := insertExecs(ctx, tx, execs)
			if err != nil {
				return err
			}
			res.Executions = len(inserted)
			res.Duplicates += len(execs) - len(inserted)
			if err := addDaily(ctx, tx, ledger.Rollup(inserted)); err != nil {
				return err
			}
		}
		if len(audits) > 0 {
			n, err := insertAudits(ctx, tx, audits)
			if err != nil {
				return err
			}
			res.Events = n
			res.Duplicates += len(audits) - n
		}
		return nil
	})
	if err != nil {
		return accounting.InsertResult{}, fmt.Errorf("postgres: insert batch: %w", err)
	}
	return res, nil
}

func ts(t time.Time) pgtype.Timestamptz { return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()} }

func day(d string) (time.Time, error) { return time.Parse(ledger.DayFormat, d) }

func insertExecs(ctx context.Context, tx pgx.Tx, execs []ledger.Execution) ([]ledger.Execution, error) {
	n := len(execs)
	var (
		ids, tenants, keys, tiers, modules, statuses, nodes, eventIDs = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		exitCodes                                                     = make([]int32, n)
		wall, cpu                                                     = make([]float64, n), make([]float64, n)
		mem, stdin, stdout, stderr, billed, mbms, seqs                = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		queued, started, finished                                     = make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
		days                                                          = make([]time.Time, n)
	)
	byID := make(map[string]int, n)
	for i := range execs {
		e := &execs[i]
		byID[e.ExecutionID] = i
		ids[i], tenants[i], keys[i], tiers[i], modules[i], statuses[i] = e.ExecutionID, e.TenantID, e.KeyID, e.Tier, e.ModuleID, e.Status
		exitCodes[i] = int32(e.ExitCode)
		wall[i], cpu[i] = e.WallMS, e.CPUMS
		mem[i], stdin[i], stdout[i], stderr[i] = e.MemoryPeakBytes, e.StdinBytes, e.StdoutBytes, e.StderrBytes
		billed[i], mbms[i], seqs[i] = e.BilledWallMS, e.MemoryMBMS, int64(e.EventSeq)
		queued[i], started[i], finished[i] = ts(e.QueuedAt), ts(e.StartedAt), ts(e.FinishedAt)
		d, err := day(e.Day)
		if err != nil {
			return nil, err
		}
		days[i] = d
		nodes[i], eventIDs[i] = e.NodeID, e.EventID
	}
	rows, err := tx.Query(ctx, insertExecutions, ids, tenants, keys, tiers, modules, statuses,
		exitCodes, wall, cpu, mem, stdin, stdout, stderr, billed, mbms, queued, started, finished,
		days, nodes, eventIDs, seqs)
	if err != nil {
		return nil, err
	}
	returned, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	inserted := make([]ledger.Execution, 0, len(returned))
	for _, id := range returned {
		i, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("insert returned unknown execution id %q", id)
		}
		inserted = append(inserted, execs[i])
	}
	return inserted, nil
}

func addDaily(ctx context.Context, tx pgx.Tx, deltas []ledger.DailyDelta) error {
	if len(deltas) == 0 {
		return nil
	}
	n := len(deltas)
	tenants, days := make([]string, n), make([]time.Time, n)
	cols := make([][]int64, 8)
	for c := range cols {
		cols[c] = make([]int64, n)
	}
	for i, d := range deltas {
		t, err := day(d.Day)
		if err != nil {
			return err
		}
		tenants[i], days[i] = d.TenantID, t
		for c, v := range []int64{d.Executions, d.Succeeded, d.Failed, d.TimedOut, d.WallMS, d.MemoryMBMS, d.BytesIn, d.BytesOut} {
			cols[c][i] = v
		}
	}
	_, err := tx.Exec(ctx, upsertDaily, tenants, days, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7])
	return err
}

func insertAudits(ctx context.Context, tx pgx.Tx, audits []ledger.Audit) (int, error) {
	n := len(audits)
	ids, types, tenants, data := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	times, seqs := make([]time.Time, n), make([]int64, n)
	for i, a := range audits {
		ids[i], types[i], tenants[i], data[i] = a.ID, a.Type, a.TenantID, string(a.Data)
		times[i], seqs[i] = a.Time, int64(a.EventSeq)
	}
	rows, err := tx.Query(ctx, insertEvents, ids, types, tenants, times, data, seqs)
	if err != nil {
		return 0, err
	}
	returned, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return len(returned), err
}

const sums = `count(*),
    count(*) FILTER (WHERE status = 'succeeded'),
    count(*) FILTER (WHERE status NOT IN ('succeeded', 'timed_out')),
    count(*) FILTER (WHERE status = 'timed_out'),
    sum(billed_wall_ms)::bigint, sum(memory_mb_ms)::bigint,
    sum(stdin_bytes)::bigint, sum(stdout_bytes + stderr_bytes)::bigint`

var rawQueries = map[string]string{
	schemas.UsageByDay:    `SELECT to_char(day, 'YYYY-MM-DD'), ` + sums + ` FROM executions WHERE tenant_id = $1 AND finished_at >= $2 AND finished_at < $3 GROUP BY day ORDER BY 1`,
	schemas.UsageByModule: `SELECT module_id, ` + sums + ` FROM executions WHERE tenant_id = $1 AND finished_at >= $2 AND finished_at < $3 GROUP BY module_id ORDER BY 1`,
	schemas.UsageByKey:    `SELECT key_id, ` + sums + ` FROM executions WHERE tenant_id = $1 AND finished_at >= $2 AND finished_at < $3 GROUP BY key_id ORDER BY 1`,
}

const rollupQuery = `SELECT to_char(day, 'YYYY-MM-DD'), executions, succeeded, failed, timed_out,
    wall_ms, memory_mb_ms, bytes_in, bytes_out
FROM usage_daily WHERE tenant_id = $1 AND day >= $2 AND day < $3 ORDER BY day`

// Usage answers a usage query. Grouped by day over whole UTC days it reads the daily rollup;
// otherwise it aggregates the raw rows.
func (s *Store) Usage(ctx context.Context, req schemas.UsageRequest) (schemas.UsageResponse, error) {
	req, err := ledger.NormalizeUsage(req, s.now())
	if err != nil {
		return schemas.UsageResponse{}, err
	}
	var rows pgx.Rows
	if ledger.UseRollup(req) {
		rows, err = s.pool.Query(ctx, rollupQuery, req.TenantID, req.From, req.To)
	} else {
		rows, err = s.pool.Query(ctx, rawQueries[req.GroupBy], req.TenantID, req.From, req.To)
	}
	if err != nil {
		return schemas.UsageResponse{}, fmt.Errorf("postgres: usage: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (schemas.UsageRow, error) {
		var u schemas.UsageRow
		err := r.Scan(&u.Key, &u.Executions, &u.Succeeded, &u.Failed, &u.TimedOut, &u.WallMS, &u.MemoryMBMS, &u.BytesIn, &u.BytesOut)
		return u, err
	})
	if err != nil {
		return schemas.UsageResponse{}, fmt.Errorf("postgres: usage: %w", err)
	}
	return ledger.Response(req, out), nil
}
