// Package storetest is the contract every accounting.Store must meet, run against PostgreSQL and
// SQLite alike, plus helpers to open test stores and build events.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Exec describes one execution in a test.
type Exec struct {
	ID       string
	Tenant   string
	Module   string
	Key      string
	Status   schemas.Status
	Finished time.Time
	WallMS   float64
	MemBytes int64
	Stdin    int64
	Stdout   int64
	Stderr   int64
}

// ExecID makes a valid execution id from a tag and a number.
func ExecID(tag string, i int) string { return fmt.Sprintf("x-%s-%012d", tag, i) }

// Event is the execution event of x with event id "ev-<execution id>-<n>"; events of the same
// execution with different n are what a republish looks like.
func (x Exec) Event(n int) schemas.Event {
	typ := schemas.EventExecutionCompleted
	if x.Status != schemas.StatusSucceeded && x.Status != schemas.StatusFailed {
		typ = schemas.EventExecutionFailed
	}
	return schemas.Event{
		ID: fmt.Sprintf("ev-%s-%d", x.ID, n), Type: typ, Version: schemas.EventVersion,
		Time: x.Finished.Add(time.Millisecond), TenantID: x.Tenant,
		Execution: &schemas.ExecutionEvent{
			ExecutionID: x.ID, KeyID: x.Key, Tier: schemas.TierBasic, ModuleID: x.Module,
			Status: x.Status, WallMS: x.WallMS, CPUMS: x.WallMS / 2, MemoryPeakBytes: x.MemBytes,
			StdinBytes: x.Stdin, StdoutBytes: x.Stdout, StderrBytes: x.Stderr,
			QueuedAt:   x.Finished.Add(-time.Duration(x.WallMS*float64(time.Millisecond)) - 5*time.Millisecond),
			StartedAt:  x.Finished.Add(-time.Duration(x.WallMS * float64(time.Millisecond))),
			FinishedAt: x.Finished, NodeID: "node-1",
		},
	}
}

// Entry is x.Event(n) at stream sequence seq.
func (x Exec) Entry(n int, seq uint64) accounting.Entry {
	return accounting.Entry{Seq: seq, Event: x.Event(n)}
}

// Totals is what x must add to usage, computed from the definitions in schemas.UsageTotals.
func (x Exec) Totals() schemas.UsageTotals {
	wall := int64(math.Ceil(x.WallMS))
	t := schemas.UsageTotals{
		Executions: 1,
		WallMS:     wall,
		MemoryMBMS: int64(math.Ceil(float64(x.MemBytes)/float64(schemas.MiB))) * wall,
		BytesIn:    x.Stdin,
		BytesOut:   x.Stdout + x.Stderr,
	}
	switch x.Status {
	case schemas.StatusSucceeded:
		t.Succeeded++
	case schemas.StatusTimedOut:
		t.TimedOut++
	case schemas.StatusFailed, schemas.StatusKilled:
		t.Failed++
	}
	return t
}

// Expect computes the usage response a store must give for execs (not necessarily all of the
// tenant's) under req, whose From, To and GroupBy must be set.
func Expect(req schemas.UsageRequest, execs []Exec) schemas.UsageResponse {
	byKey := map[string]*schemas.UsageTotals{}
	var keys []string
	for _, x := range execs {
		if x.Tenant != req.TenantID || x.Finished.Before(req.From) || !x.Finished.Before(req.To) {
			continue
		}
		var k string
		switch req.GroupBy {
		case schemas.UsageByDay:
			k = x.Finished.UTC().Format("2006-01-02")
		case schemas.UsageByModule:
			k = x.Module
		case schemas.UsageByKey:
			k = x.Key
		}
		if byKey[k] == nil {
			byKey[k] = &schemas.UsageTotals{}
			keys = append(keys, k)
		}
		byKey[k].Add(x.Totals())
	}
	sort.Strings(keys)
	resp := schemas.UsageResponse{From: ceilMicro(req.From), To: ceilMicro(req.To), GroupBy: req.GroupBy, Rows: []schemas.UsageRow{}}
	for _, k := range keys {
		resp.Rows = append(resp.Rows, schemas.UsageRow{Key: k, UsageTotals: *byKey[k]})
		resp.Total.Add(*byKey[k])
	}
	return resp
}

func ceilMicro(t time.Time) time.Time {
	if u := t.UTC().Truncate(time.Microsecond); u.Before(t) {
		return u.Add(time.Microsecond)
	}
	return t.UTC()
}

// Day0 is the first day of the test data: a UTC midnight.
var Day0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// Fixture is a varied set of executions: 3 tenants, 4 days, 3 modules, 2 keys per tenant, all
// statuses, some of them exactly on day boundaries.
func Fixture(n int) []Exec {
	statuses := []schemas.Status{schemas.StatusSucceeded, schemas.StatusSucceeded, schemas.StatusFailed, schemas.StatusTimedOut, schemas.StatusKilled}
	tenants := []string{"acme", "globex", "initech"}
	execs := make([]Exec, n)
	for i := range execs {
		tenant := tenants[i%3]
		finished := Day0.Add(time.Duration(i%4) * 24 * time.Hour)
		if i%7 != 0 { // every 7th exactly at midnight
			finished = finished.Add(time.Duration(i*7919%86_399_000) * time.Millisecond)
		}
		execs[i] = Exec{
			ID:       ExecID("fx", i),
			Tenant:   tenant,
			Module:   fmt.Sprintf("sha256:%064x", i%3),
			Key:      fmt.Sprintf("key-%s-%d", tenant, i%2),
			Status:   statuses[i%len(statuses)],
			Finished: finished,
			WallMS:   float64(i%50) + 0.25*float64(i%4), // some whole, some fractional
			MemBytes: int64(i%5)*schemas.MiB + int64(i%3)*1000,
			Stdin:    int64(i % 11),
			Stdout:   int64(i * 3 % 17),
			Stderr:   int64(i % 2),
		}
	}
	return execs
}

// Run runs the contract suite against stores made by newStore, a fresh empty store per call.
func Run(t *testing.T, newStore func(testing.TB) accounting.Store) {
	t.Run("InsertAndUsage", func(t *testing.T) { t.Parallel(); testInsertAndUsage(t, newStore(t)) })
	t.Run("Duplicates", func(t *testing.T) { t.Parallel(); testDuplicates(t, newStore(t)) })
	t.Run("RollupMatchesRaw", func(t *testing.T) { t.Parallel(); testRollupMatchesRaw(t, newStore(t)) })
	t.Run("TimeRange", func(t *testing.T) { t.Parallel(); testTimeRange(t, newStore(t)) })
	t.Run("TenantIsolation", func(t *testing.T) { t.Parallel(); testTenantIsolation(t, newStore(t)) })
	t.Run("InvalidRequest", func(t *testing.T) { t.Parallel(); testInvalidRequest(t, newStore(t)) })
	t.Run("AuditEvents", func(t *testing.T) { t.Parallel(); testAuditEvents(t, newStore(t)) })
	t.Run("Concurrent", func(t *testing.T) { t.Parallel(); testConcurrent(t, newStore(t)) })
	t.Run("Defaults", func(t *testing.T) { t.Parallel(); testDefaults(t, newStore(t)) })
	t.Run("Extremes", func(t *testing.T) { t.Parallel(); testExtremes(t, newStore(t)) })
	t.Run("Reconcile", func(t *testing.T) { t.Parallel(); testReconcile(t, newStore(t)) })
}

// MustInsert inserts entries and fails the test on error.
func MustInsert(tb testing.TB, s accounting.Store, entries []accounting.Entry) accounting.InsertResult {
	tb.Helper()
	res, err := s.Insert(context.Background(), entries)
	if err != nil {
		tb.Fatalf("insert: %v", err)
	}
	return res
}

// MustUsage runs a usage query and fails the test on error.
func MustUsage(tb testing.TB, s accounting.Store, req schemas.UsageRequest) schemas.UsageResponse {
	tb.Helper()
	resp, err := s.Usage(context.Background(), req)
	if err != nil {
		tb.Fatalf("usage %+v: %v", req, err)
	}
	return resp
}

func checkUsage(t *testing.T, s accounting.Store, req schemas.UsageRequest, execs []Exec) schemas.UsageResponse {
	t.Helper()
	got := MustUsage(t, s, req)
	want := Expect(req, execs)
	if !got.From.Equal(want.From) || !got.To.Equal(want.To) || got.GroupBy != want.GroupBy {
		t.Errorf("usage %s %s..%s: got range %s..%s by %q", req.GroupBy, req.From, req.To, got.From, got.To, got.GroupBy)
	}
	if !reflect.DeepEqual(got.Rows, want.Rows) || got.Total != want.Total {
		t.Errorf("usage of %s by %s in %s..%s:\n got rows %+v total %+v\nwant rows %+v total %+v",
			req.TenantID, req.GroupBy, req.From, req.To, got.Rows, got.Total, want.Rows, want.Total)
	}
	return got
}

func entries(execs []Exec, n int, seq0 uint64) []accounting.Entry {
	out := make([]accounting.Entry, len(execs))
	for i, x := range execs {
		out[i] = x.Entry(n, seq0+uint64(i))
	}
	return out
}

func testInsertAndUsage(t *testing.T, s accounting.Store) {
	execs := Fixture(300)
	for i := 0; i < len(execs); i += 64 {
		batch := execs[i:min(i+64, len(execs))]
		res := MustInsert(t, s, entries(batch, 0, uint64(i+1)))
		if res.Executions != len(batch) || res.Duplicates != 0 || res.Events != 0 {
			t.Fatalf("batch at %d: %+v, want %d executions and no duplicates", i, res, len(batch))
		}
	}
	for _, tenant := range []string{"acme", "globex", "initech"} {
		for _, by := range []string{schemas.UsageByDay, schemas.UsageByModule, schemas.UsageByKey} {
			req := schemas.UsageRequest{TenantID: tenant, From: Day0, To: Day0.AddDate(0, 0, 4), GroupBy: by}
			got := checkUsage(t, s, req, execs)
			if got.Total.Executions != 100 {
				t.Errorf("%s by %s: %d executions, want 100", tenant, by, got.Total.Executions)
			}
			if by == schemas.UsageByDay && len(got.Rows) != 4 {
				t.Errorf("%s by day: %d rows, want 4", tenant, len(got.Rows))
			}
		}
	}
}

func testDuplicates(t *testing.T, s accounting.Store) {
	execs := Fixture(30)
	// The same execution twice in one batch, under two event ids (a republish).
	batch := entries(execs[:10], 0, 1)
	batch = append(batch, execs[3].Entry(1, 11), execs[3].Entry(2, 12))
	res := MustInsert(t, s, batch)
	if res.Executions != 10 || res.Duplicates != 2 {
		t.Fatalf("first batch: %+v, want 10 executions, 2 duplicates", res)
	}
	// The same executions again in a later batch (a redelivery), mixed with new ones.
	batch = append(entries(execs[5:20], 3, 20), execs[0].Entry(0, 40))
	res = MustInsert(t, s, batch)
	if res.Executions != 10 || res.Duplicates != 6 {
		t.Fatalf("second batch: %+v, want 10 executions (10..19), 6 duplicates (0, 5..9)", res)
	}
	// A batch made only of duplicates inserts nothing and leaves the rollup alone.
	res = MustInsert(t, s, entries(execs[:20], 9, 50))
	if res.Executions != 0 || res.Duplicates != 20 {
		t.Fatalf("third batch: %+v, want 0 executions, 20 duplicates", res)
	}
	for _, tenant := range []string{"acme", "globex", "initech"} {
		for _, by := range []string{schemas.UsageByDay, schemas.UsageByModule, schemas.UsageByKey} {
			checkUsage(t, s, schemas.UsageRequest{TenantID: tenant, From: Day0, To: Day0.AddDate(0, 0, 4), GroupBy: by}, execs[:20])
		}
	}
}

func testRollupMatchesRaw(t *testing.T, s accounting.Store) {
	execs := Fixture(500)
	// Insert in overlapping batches, so the rollup sees many duplicates.
	for i := 0; i < len(execs); i += 50 {
		MustInsert(t, s, entries(execs[max(0, i-20):min(i+50, len(execs))], i, uint64(i)))
	}
	for _, tenant := range []string{"acme", "globex", "initech"} {
		from, to := Day0.AddDate(0, 0, -1), Day0.AddDate(0, 0, 5)
		rollup := checkUsage(t, s, schemas.UsageRequest{TenantID: tenant, From: from, To: to, GroupBy: schemas.UsageByDay}, execs)
		// One microsecond less at the end: no execution finishes then, but the query can no
		// longer use the rollup and aggregates the raw rows.
		raw := checkUsage(t, s, schemas.UsageRequest{TenantID: tenant, From: from, To: to.Add(-time.Microsecond), GroupBy: schemas.UsageByDay}, execs)
		if !reflect.DeepEqual(rollup.Rows, raw.Rows) {
			t.Errorf("%s: rollup %+v != raw %+v", tenant, rollup.Rows, raw.Rows)
		}
		for _, by := range []string{schemas.UsageByModule, schemas.UsageByKey} {
			other := MustUsage(t, s, schemas.UsageRequest{TenantID: tenant, From: from, To: to, GroupBy: by})
			if other.Total != rollup.Total {
				t.Errorf("%s: total by %s %+v != total by day %+v", tenant, by, other.Total, rollup.Total)
			}
		}
	}
}

func testTimeRange(t *testing.T, s accounting.Store) {
	at := func(d time.Duration) time.Time { return Day0.Add(d) }
	var execs []Exec
	for i, f := range []time.Time{
		at(-time.Microsecond), at(0), at(time.Microsecond), at(12 * time.Hour),
		at(24*time.Hour - time.Microsecond), at(24 * time.Hour), at(36 * time.Hour), at(48 * time.Hour),
	} {
		execs = append(execs, Exec{ID: ExecID("tr", i), Tenant: "acme", Module: "m", Key: "k", Status: schemas.StatusSucceeded, Finished: f, WallMS: float64(i + 1), Stdin: int64(1 << i)})
	}
	MustInsert(t, s, entries(execs, 0, 1))
	ranges := [][2]time.Time{
		{at(0), at(24 * time.Hour)},                   // one whole day: rollup
		{at(0), at(48 * time.Hour)},                   // two days: rollup
		{at(time.Microsecond), at(24 * time.Hour)},    // from is exclusive of midnight
		{at(0), at(24*time.Hour - time.Microsecond)},  // to excludes its own instant
		{at(6 * time.Hour), at(30 * time.Hour)},       // across midnight
		{at(-time.Hour), at(time.Hour)},               // across the earlier midnight
		{at(72 * time.Hour), at(96 * time.Hour)},      // nothing
		{at(-48 * time.Hour), at(-24 * time.Hour)},    // nothing, before
		{at(48 * time.Hour), at(48*time.Hour + 1000)}, // the last one only
		{at(-24 * time.Hour), at(72 * time.Hour)},     // everything, rollup
	}
	for _, r := range ranges {
		for _, by := range []string{schemas.UsageByDay, schemas.UsageByModule, schemas.UsageByKey} {
			checkUsage(t, s, schemas.UsageRequest{TenantID: "acme", From: r[0], To: r[1], GroupBy: by}, execs)
		}
	}
	// Times in other zones mean the same instants.
	loc := time.FixedZone("x", -5*3600)
	got := checkUsage(t, s, schemas.UsageRequest{TenantID: "acme", From: at(0).In(loc), To: at(24 * time.Hour).In(loc), GroupBy: "day"}, execs)
	if got.Total.Executions != 4 {
		t.Errorf("day 0 in another zone: %d executions, want 4", got.Total.Executions)
	}
}

func testTenantIsolation(t *testing.T, s accounting.Store) {
	execs := Fixture(60)
	MustInsert(t, s, entries(execs, 0, 1))
	// A tenant with no executions sees nothing, with an empty (not null) list of rows.
	for _, by := range []string{schemas.UsageByDay, schemas.UsageByModule, schemas.UsageByKey} {
		got := MustUsage(t, s, schemas.UsageRequest{TenantID: "hooli", From: Day0, To: Day0.AddDate(0, 0, 4), GroupBy: by})
		if got.Rows == nil || len(got.Rows) != 0 || got.Total != (schemas.UsageTotals{}) {
			t.Errorf("hooli by %s: %+v, want no rows", by, got)
		}
		for _, tenant := range []string{"acme", "globex"} {
			got := checkUsage(t, s, schemas.UsageRequest{TenantID: tenant, From: Day0, To: Day0.AddDate(0, 0, 4), GroupBy: by}, execs)
			if got.Total.Executions != 20 {
				t.Errorf("%s by %s: %d executions, want 20", tenant, by, got.Total.Executions)
			}
		}
	}
	// A module and key of another tenant do not appear.
	got := MustUsage(t, s, schemas.UsageRequest{TenantID: "acme", From: Day0, To: Day0.AddDate(0, 0, 4), GroupBy: schemas.UsageByKey})
	for _, r := range got.Rows {
		if r.Key != "key-acme-0" && r.Key != "key-acme-1" {
			t.Errorf("acme sees key %q", r.Key)
		}
	}
}

func testInvalidRequest(t *testing.T, s accounting.Store) {
	for name, req := range map[string]schemas.UsageRequest{
		"no tenant":       {From: Day0, To: Day0.AddDate(0, 0, 1)},
		"bad tenant":      {TenantID: "Acme Corp", From: Day0, To: Day0.AddDate(0, 0, 1)},
		"bad group":       {TenantID: "acme", From: Day0, To: Day0.AddDate(0, 0, 1), GroupBy: "hour"},
		"empty range":     {TenantID: "acme", From: Day0, To: Day0},
		"reversed range":  {TenantID: "acme", From: Day0.AddDate(0, 0, 1), To: Day0},
		"too long range":  {TenantID: "acme", From: Day0, To: Day0.AddDate(2, 0, 0)},
		"sql in group_by": {TenantID: "acme", From: Day0, To: Day0.AddDate(0, 0, 1), GroupBy: "day; DROP TABLE executions"},
	} {
		_, err := s.Usage(context.Background(), req)
		var e *schemas.Error
		if !errors.As(err, &e) || e.Code != schemas.CodeInvalid {
			t.Errorf("%s: err = %v, want a schemas.Error with code invalid", name, err)
		}
	}
}

func testAuditEvents(t *testing.T, s accounting.Store) {
	mod := schemas.Event{ID: "ev-mod-1", Type: schemas.EventModuleUploaded, Version: 1, Time: Day0, TenantID: "acme",
		Module: &schemas.ModuleEvent{ModuleID: "sha256:" + fmt.Sprintf("%064x", 1), Name: "hello.wasm", Size: 1234, KeyID: "k"}}
	key := schemas.Event{ID: "ev-key-1", Type: schemas.EventKeyCreated, Version: 1, Time: Day0, TenantID: "acme",
		Key: &schemas.KeyEvent{KeyID: "k", Tier: "free"}}
	x := Fixture(1)[0]
	res := MustInsert(t, s, []accounting.Entry{{Seq: 1, Event: mod}, {Seq: 2, Event: key}, {Seq: 3, Event: mod}, x.Entry(0, 4)})
	if res.Events != 2 || res.Executions != 1 || res.Duplicates != 1 {
		t.Fatalf("first: %+v, want 2 events, 1 execution, 1 duplicate", res)
	}
	res = MustInsert(t, s, []accounting.Entry{{Seq: 1, Event: mod}, {Seq: 2, Event: key}})
	if res.Events != 0 || res.Duplicates != 2 {
		t.Fatalf("again: %+v, want 0 events, 2 duplicates", res)
	}
	// Audit events are not usage.
	got := MustUsage(t, s, schemas.UsageRequest{TenantID: "acme", From: Day0, To: Day0.AddDate(0, 0, 1)})
	if got.Total.Executions != 1 {
		t.Errorf("usage counts %d executions, want 1", got.Total.Executions)
	}
}

// testConcurrent inserts overlapping batches from several goroutines, as several accounting
// replicas do after a redelivery storm: each execution must be counted once, and no transaction
// may deadlock.
func testConcurrent(t *testing.T, s accounting.Store) {
	execs := Fixture(400)
	const workers = 6
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		inserted int
		errs     []error
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker walks the executions in its own order, in batches of 40.
			order := make([]Exec, len(execs))
			for i := range execs {
				order[i] = execs[(i*(2*w+1)+w*37)%len(execs)]
			}
			for i := 0; i < len(order); i += 40 {
				res, err := s.Insert(context.Background(), entries(order[i:i+40], w, uint64(i)))
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				inserted += res.Executions
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent inserts: %d errors, first: %v", len(errs), errs[0])
	}
	if inserted != len(execs) {
		t.Errorf("inserted %d executions in all, want %d", inserted, len(execs))
	}
	for _, tenant := range []string{"acme", "globex", "initech"} {
		checkUsage(t, s, schemas.UsageRequest{TenantID: tenant, From: Day0, To: Day0.AddDate(0, 0, 4), GroupBy: schemas.UsageByDay}, execs)
		checkUsage(t, s, schemas.UsageRequest{TenantID: tenant, From: Day0, To: Day0.AddDate(0, 0, 4).Add(-1), GroupBy: schemas.UsageByDay}, execs)
	}
}

func testDefaults(t *testing.T, s accounting.Store) {
	now := time.Now().UTC()
	x := Exec{ID: ExecID("df", 1), Tenant: "acme", Module: "m", Key: "k", Status: schemas.StatusSucceeded, Finished: now.Add(-time.Hour), WallMS: 3}
	old := Exec{ID: ExecID("df", 2), Tenant: "acme", Module: "m", Key: "k", Status: schemas.StatusSucceeded, Finished: now.AddDate(0, 0, -40), WallMS: 3}
	MustInsert(t, s, []accounting.Entry{x.Entry(0, 1), old.Entry(0, 2)})
	got := MustUsage(t, s, schemas.UsageRequest{TenantID: "acme"})
	if got.GroupBy != schemas.UsageByDay || got.Total.Executions != 1 || len(got.Rows) != 1 || got.Rows[0].Key != x.Finished.Format("2006-01-02") {
		t.Errorf("defaults: %+v, want the last 30 days by day with one execution", got)
	}
	if got.To.Before(now) || got.To.Sub(got.From) < 30*24*time.Hour || got.To.Sub(got.From) > 31*24*time.Hour {
		t.Errorf("default range %s..%s", got.From, got.To)
	}
}

// testExtremes stores events at the edges of what accounting.ValidateEvent accepts: whatever
// passes validation must be storable, or one event would block the stream for ever.
func testExtremes(t *testing.T, s accounting.Store) {
	base := Exec{Tenant: "acme", Module: "m", Key: "k", Status: schemas.StatusKilled, Finished: Day0}
	var evs []schemas.Event
	add := func(mod func(*schemas.Event)) {
		x := base
		x.ID = ExecID("edge", len(evs))
		ev := x.Event(0)
		mod(&ev)
		if err := accounting.ValidateEvent(&ev, ""); err != nil {
			t.Fatalf("edge %d not valid: %v", len(evs), err)
		}
		evs = append(evs, ev)
	}
	add(func(e *schemas.Event) {
		e.Execution.WallMS, e.Execution.CPUMS, e.Execution.MemoryPeakBytes = 1e9, 1e9, 1<<40
		e.Execution.StdinBytes, e.Execution.StdoutBytes, e.Execution.StderrBytes = 1<<40, 1<<40, 1<<40
	})
	add(func(e *schemas.Event) {
		e.Execution.KeyID, e.Execution.NodeID = "clé-ключ-鍵-🔑", "n\\u0000'; --"
		e.Execution.ModuleID = strings.Repeat("m", 200)
	})
	add(func(e *schemas.Event) {
		e.Execution.FinishedAt = time.Time{}
		e.Execution.QueuedAt, e.Execution.StartedAt = time.Time{}, time.Time{}
	})
	add(func(e *schemas.Event) {
		e.Execution.FinishedAt = time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC)
		e.Execution.ExitCode = math.MinInt32
	})
	add(func(e *schemas.Event) {
		e.Execution.FinishedAt = time.Date(1970, 1, 1, 0, 0, 0, 1, time.FixedZone("", 7200)).Add(2 * time.Hour)
		e.Execution.ExitCode = math.MaxInt32
	})
	add(func(e *schemas.Event) {
		e.Type, e.Execution = schemas.EventRateLimitRejected, nil
		e.RateLimit = &schemas.RateLimitEvent{KeyID: "k", Limit: "per_minute", Reason: "ünïcödé \\u0000 \"quoted\""}
	})
	entries := make([]accounting.Entry, len(evs))
	for i, ev := range evs {
		entries[i] = accounting.Entry{Seq: math.MaxInt64, Event: ev}
	}
	res := MustInsert(t, s, entries)
	if res.Executions != len(evs)-1 || res.Events != 1 {
		t.Fatalf("inserted %+v, want %d executions and 1 event", res, len(evs)-1)
	}
	got := MustUsage(t, s, schemas.UsageRequest{TenantID: "acme", From: Day0, To: Day0.AddDate(0, 0, 1), GroupBy: schemas.UsageByKey})
	want := schemas.UsageTotals{Executions: 3, Failed: 3, WallMS: 1e9, MemoryMBMS: 1e9 << 20, BytesIn: 1 << 40, BytesOut: 2 << 40}
	if got.Total != want {
		t.Errorf("day 0: %+v, want %+v", got.Total, want)
	}
}

// CheckAllUsage checks every tenant's usage, by day, module and key, against Expect.
func CheckAllUsage(t testing.TB, s accounting.Store, execs []Exec) {
	t.Helper()
	for _, tenant := range []string{"acme", "globex", "initech"} {
		for _, by := range []string{schemas.UsageByDay, schemas.UsageByModule, schemas.UsageByKey} {
			req := schemas.UsageRequest{TenantID: tenant, From: Day0, To: Day0.AddDate(0, 0, 4), GroupBy: by}
			got, want := MustUsage(t, s, req), Expect(req, execs)
			if fmt.Sprint(got.Rows, got.Total) != fmt.Sprint(want.Rows, want.Total) {
				t.Errorf("%s by %s:\n got %+v %+v\nwant %+v %+v", tenant, by, got.Rows, got.Total, want.Rows, want.Total)
			}
		}
	}
}
