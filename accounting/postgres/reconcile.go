package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz/accounting/internal/ledger"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// The tenant filter: $3 = ” means every tenant.
const (
	reconcileCount = `SELECT count(*) FROM executions
WHERE finished_at >= $1 AND finished_at < $2 AND ($3 = '' OR tenant_id = $3)`
	reconcileIDs = `SELECT execution_id FROM executions
WHERE finished_at >= $1 AND finished_at < $2 AND ($3 = '' OR tenant_id = $3) AND execution_id > $4
ORDER BY execution_id LIMIT $5`
	reconcileRollup = `SELECT tenant_id, to_char(day, 'YYYY-MM-DD'), executions, succeeded, failed, timed_out,
    wall_ms, memory_mb_ms, bytes_in, bytes_out
FROM usage_daily WHERE day >= $1 AND day < $2 AND ($3 = '' OR tenant_id = $3)`
	reconcileRaw = `SELECT tenant_id, to_char(day, 'YYYY-MM-DD'), ` + sums + ` FROM executions
WHERE finished_at >= $1 AND finished_at < $2 AND ($3 = '' OR tenant_id = $3)
GROUP BY tenant_id, day`
)

// Reconcile lists stored execution ids page by page and checks the rollup against the raw rows.
func (s *Store) Reconcile(ctx context.Context, req schemas.ReconcileRequest) (schemas.ReconcileResponse, error) {
	req, err := ledger.NormalizeReconcile(req, s.now())
	if err != nil {
		return schemas.ReconcileResponse{}, err
	}
	resp := schemas.ReconcileResponse{From: req.From, To: req.To, ExecutionIDs: []string{}, RollupMismatches: []schemas.RollupMismatch{}}
	// One snapshot for the page, the count and the two sides of the rollup: rows stored while
	// it reads (accounting goes on under load) would otherwise make the count disagree with
	// the ids listed, and the rollup with the raw rows.
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return resp, fmt.Errorf("postgres: reconcile: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	rows, err := tx.Query(ctx, reconcileIDs, req.From, req.To, req.TenantID, req.After, req.Limit+1)
	if err != nil {
		return resp, fmt.Errorf("postgres: reconcile: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return resp, fmt.Errorf("postgres: reconcile: %w", err)
	}
	if len(ids) > req.Limit {
		ids = ids[:req.Limit]
		resp.Next = ids[len(ids)-1]
	}
	resp.ExecutionIDs = append(resp.ExecutionIDs, ids...)
	if req.After != "" {
		return resp, nil
	}
	if err := tx.QueryRow(ctx, reconcileCount, req.From, req.To, req.TenantID).Scan(&resp.Count); err != nil {
		return resp, fmt.Errorf("postgres: reconcile: %w", err)
	}
	firstDay, endDay := ledger.DayRange(req.From, req.To)
	first, _ := time.Parse(ledger.DayFormat, firstDay)
	end, _ := time.Parse(ledger.DayFormat, endDay)
	rollup, err := daily(ctx, tx, reconcileRollup, first, end, req.TenantID)
	if err != nil {
		return resp, err
	}
	raw, err := daily(ctx, tx, reconcileRaw, first, end, req.TenantID)
	if err != nil {
		return resp, err
	}
	resp.RollupMismatches = ledger.CompareRollup(rollup, raw)
	return resp, nil
}

func daily(ctx context.Context, tx pgx.Tx, query string, args ...any) ([]ledger.DailyDelta, error) {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: reconcile: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ledger.DailyDelta, error) {
		var d ledger.DailyDelta
		err := r.Scan(&d.TenantID, &d.Day, &d.Executions, &d.Succeeded, &d.Failed, &d.TimedOut, &d.WallMS, &d.MemoryMBMS, &d.BytesIn, &d.BytesOut)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: reconcile: %w", err)
	}
	return out, nil
}
