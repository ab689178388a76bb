package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// reconcileAll pages through a reconcile and returns all ids and the first page.
func reconcileAll(t *testing.T, s accounting.Store, req schemas.ReconcileRequest) ([]string, schemas.ReconcileResponse) {
	t.Helper()
	var ids []string
	var first schemas.ReconcileResponse
	for page := 0; ; page++ {
		resp, err := s.Reconcile(context.Background(), req)
		if err != nil {
			t.Fatalf("reconcile %+v: %v", req, err)
		}
		if page == 0 {
			first = resp
		}
		if len(resp.ExecutionIDs) > req.Limit && req.Limit > 0 {
			t.Fatalf("page of %d ids, limit %d", len(resp.ExecutionIDs), req.Limit)
		}
		ids = append(ids, resp.ExecutionIDs...)
		if resp.Next == "" {
			return ids, first
		}
		if page > 1000 {
			t.Fatal("reconcile does not end")
		}
		req.After = resp.Next
	}
}

func wantIDs(execs []Exec, tenant string, from, to time.Time) []string {
	var ids []string
	for _, x := range execs {
		if (tenant == "" || x.Tenant == tenant) && !x.Finished.Before(from) && x.Finished.Before(to) {
			ids = append(ids, x.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func testReconcile(t *testing.T, s accounting.Store) {
	execs := Fixture(200)
	MustInsert(t, s, entries(execs, 0, 1))
	MustInsert(t, s, entries(execs[50:90], 1, 300)) // duplicates change nothing
	for _, tc := range []struct {
		tenant   string
		from, to time.Time
		limit    int
	}{
		{"", Day0, Day0.AddDate(0, 0, 4), 7},
		{"", Day0, Day0.AddDate(0, 0, 4), 0},
		{"", Day0.Add(time.Hour), Day0.AddDate(0, 0, 2).Add(time.Hour), 13},
		{"acme", Day0, Day0.AddDate(0, 0, 4), 5},
		{"globex", Day0.AddDate(0, 0, 1), Day0.AddDate(0, 0, 2), 1000},
		{"hooli", Day0, Day0.AddDate(0, 0, 4), 10},
		{"", Day0.AddDate(0, 0, 10), Day0.AddDate(0, 0, 11), 10},
	} {
		req := schemas.ReconcileRequest{TenantID: tc.tenant, From: tc.from, To: tc.to, Limit: tc.limit}
		ids, first := reconcileAll(t, s, req)
		want := wantIDs(execs, tc.tenant, tc.from, tc.to)
		if !slices.Equal(ids, want) {
			t.Errorf("%+v: %d ids, want %d", tc, len(ids), len(want))
		}
		if first.Count != int64(len(want)) {
			t.Errorf("%+v: count %d, want %d", tc, first.Count, len(want))
		}
		if first.RollupMismatches == nil || len(first.RollupMismatches) != 0 {
			t.Errorf("%+v: rollup mismatches %+v", tc, first.RollupMismatches)
		}
	}
	for name, req := range map[string]schemas.ReconcileRequest{
		"bad tenant":     {TenantID: "A B", From: Day0, To: Day0.AddDate(0, 0, 1)},
		"negative limit": {From: Day0, To: Day0.AddDate(0, 0, 1), Limit: -1},
		"huge limit":     {From: Day0, To: Day0.AddDate(0, 0, 1), Limit: 1 << 30},
		"reversed":       {From: Day0.AddDate(0, 0, 1), To: Day0},
	} {
		_, err := s.Reconcile(context.Background(), req)
		var e *schemas.Error
		if !errors.As(err, &e) || e.Code != schemas.CodeInvalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
}

// RunRollupDrift checks that Reconcile notices a rollup that disagrees with the raw rows. exec
// runs a statement directly on the store's database, bypassing it.
func RunRollupDrift(t *testing.T, s accounting.Store, exec func(query string)) {
	execs := Fixture(100)
	MustInsert(t, s, entries(execs, 0, 1))
	req := schemas.ReconcileRequest{From: Day0, To: Day0.AddDate(0, 0, 4)}
	if resp, err := s.Reconcile(context.Background(), req); err != nil || len(resp.RollupMismatches) != 0 {
		t.Fatalf("before: %+v, %v", resp.RollupMismatches, err)
	}
	exec(`UPDATE usage_daily SET wall_ms = wall_ms + 1 WHERE tenant_id = 'acme' AND day = '2026-03-02'`)
	exec(`DELETE FROM executions WHERE execution_id = '` + execs[2].ID + `'`) // initech, day 3
	resp, err := s.Reconcile(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.RollupMismatches) != 2 {
		t.Fatalf("mismatches %+v, want 2", resp.RollupMismatches)
	}
	a, b := resp.RollupMismatches[0], resp.RollupMismatches[1]
	if a.TenantID != "acme" || a.Day != "2026-03-02" || a.Rollup.WallMS != a.Raw.WallMS+1 || a.Rollup.Executions != a.Raw.Executions {
		t.Errorf("first mismatch %+v", a)
	}
	if b.TenantID != "initech" || b.Day != execs[2].Finished.Format("2006-01-02") || b.Rollup.Executions != b.Raw.Executions+1 {
		t.Errorf("second mismatch %+v", b)
	}
	if resp.Count != 99 {
		t.Errorf("count %d, want 99", resp.Count)
	}
	// A range inside one day checks that whole day.
	resp, err = s.Reconcile(context.Background(), schemas.ReconcileRequest{TenantID: "acme", From: Day0.AddDate(0, 0, 1).Add(time.Hour), To: Day0.AddDate(0, 0, 1).Add(2 * time.Hour)})
	if err != nil || len(resp.RollupMismatches) != 1 {
		t.Errorf("inside the day: %+v, %v", resp.RollupMismatches, err)
	}
}
