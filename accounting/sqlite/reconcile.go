package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/wasmwiz/wasmwiz/accounting/internal/ledger"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// The tenant filter: ?3 = ” means every tenant.
const (
	reconcileCount = `SELECT count(*) FROM executions
WHERE finished_at >= ?1 AND finished_at < ?2 AND (?3 = '' OR tenant_id = ?3)`
	reconcileIDs = `SELECT execution_id FROM executions
WHERE finished_at >= ?1 AND finished_at < ?2 AND (?3 = '' OR tenant_id = ?3) AND execution_id > ?4
ORDER BY execution_id LIMIT ?5`
	reconcileRollup = `SELECT tenant_id, day, executions, succeeded, failed, timed_out, wall_ms,
    memory_mb_ms, bytes_in, bytes_out
FROM usage_daily WHERE day >= ?1 AND day < ?2 AND (?3 = '' OR tenant_id = ?3)`
	reconcileRaw = `SELECT tenant_id, day, ` + sums + ` FROM executions
WHERE finished_at >= ?1 AND finished_at < ?2 AND (?3 = '' OR tenant_id = ?3)
GROUP BY tenant_id, day`
)

// Reconcile lists stored execution ids page by page and checks the rollup against the raw rows.
func (s *Store) Reconcile(ctx context.Context, req schemas.ReconcileRequest) (schemas.ReconcileResponse, error) {
	req, err := ledger.NormalizeReconcile(req, s.now())
	if err != nil {
		return schemas.ReconcileResponse{}, err
	}
	resp := schemas.ReconcileResponse{From: req.From, To: req.To, ExecutionIDs: []string{}, RollupMismatches: []schemas.RollupMismatch{}}
	from, to := req.From.UnixMicro(), req.To.UnixMicro()
	rows, err := s.db.QueryContext(ctx, reconcileIDs, from, to, req.TenantID, req.After, req.Limit+1)
	if err != nil {
		return resp, fmt.Errorf("sqlite: reconcile: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return resp, fmt.Errorf("sqlite: reconcile: %w", err)
		}
		resp.ExecutionIDs = append(resp.ExecutionIDs, id)
	}
	if err := rows.Err(); err != nil {
		return resp, fmt.Errorf("sqlite: reconcile: %w", err)
	}
	if len(resp.ExecutionIDs) > req.Limit {
		resp.ExecutionIDs = resp.ExecutionIDs[:req.Limit]
		resp.Next = resp.ExecutionIDs[req.Limit-1]
	}
	if req.After != "" {
		return resp, nil
	}
	if err := s.db.QueryRowContext(ctx, reconcileCount, from, to, req.TenantID).Scan(&resp.Count); err != nil {
		return resp, fmt.Errorf("sqlite: reconcile: %w", err)
	}
	firstDay, endDay := ledger.DayRange(req.From, req.To)
	rollup, err := s.daily(ctx, reconcileRollup, firstDay, endDay, req.TenantID)
	if err != nil {
		return resp, err
	}
	first, _ := time.Parse(ledger.DayFormat, firstDay)
	end, _ := time.Parse(ledger.DayFormat, endDay)
	raw, err := s.daily(ctx, reconcileRaw, first.UnixMicro(), end.UnixMicro(), req.TenantID)
	if err != nil {
		return resp, err
	}
	resp.RollupMismatches = ledger.CompareRollup(rollup, raw)
	return resp, nil
}

func (s *Store) daily(ctx context.Context, query string, args ...any) ([]ledger.DailyDelta, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: reconcile: %w", err)
	}
	defer rows.Close()
	var out []ledger.DailyDelta
	for rows.Next() {
		var d ledger.DailyDelta
		if err := rows.Scan(&d.TenantID, &d.Day, &d.Executions, &d.Succeeded, &d.Failed, &d.TimedOut, &d.WallMS, &d.MemoryMBMS, &d.BytesIn, &d.BytesOut); err != nil {
			return nil, fmt.Errorf("sqlite: reconcile: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: reconcile: %w", err)
	}
	return out, nil
}
