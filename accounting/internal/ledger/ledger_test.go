package ledger

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/schemas"
)

var t0 = time.Date(2026, 3, 1, 23, 59, 59, 999_999_500, time.UTC)

func execEvent() schemas.Event {
	return schemas.Event{
		ID: "ev-1", Type: schemas.EventExecutionCompleted, Version: 1, Time: t0, TenantID: "acme",
		Execution: &schemas.ExecutionEvent{
			ExecutionID: "exec-0000000000000001", KeyID: "k1", Tier: "free", ModuleID: "m1",
			Status: schemas.StatusSucceeded, WallMS: 2.01, MemoryPeakBytes: schemas.MiB + 1,
			StdinBytes: 3, StdoutBytes: 4, StderrBytes: 5, FinishedAt: t0, NodeID: "n1",
		},
	}
}

func TestExecutionRow(t *testing.T) {
	ev := execEvent()
	r := ExecutionRow(&ev, 7)
	if r.BilledWallMS != 3 || r.MemoryMBMS != 2*3 || r.Day != "2026-03-01" || r.EventSeq != 7 {
		t.Errorf("row: %+v", r)
	}
	// Truncated, not rounded, to microseconds: the day stays the day of the event.
	if !r.FinishedAt.Equal(t0.Truncate(time.Microsecond)) {
		t.Errorf("finished %s", r.FinishedAt)
	}
	tot := r.Totals()
	want := schemas.UsageTotals{Executions: 1, Succeeded: 1, WallMS: 3, MemoryMBMS: 6, BytesIn: 3, BytesOut: 9}
	if tot != want {
		t.Errorf("totals %+v, want %+v", tot, want)
	}
	for status, want := range map[schemas.Status]schemas.UsageTotals{
		schemas.StatusFailed:   {Failed: 1},
		schemas.StatusKilled:   {Failed: 1},
		schemas.StatusTimedOut: {TimedOut: 1},
	} {
		ev.Execution.Status = status
		r := ExecutionRow(&ev, 1)
		got := r.Totals()
		if got.Succeeded != want.Succeeded || got.Failed != want.Failed || got.TimedOut != want.TimedOut {
			t.Errorf("%s: %+v", status, got)
		}
	}
}

func TestRowsAndRollup(t *testing.T) {
	a, b := execEvent(), execEvent()
	b.ID, b.Execution = "ev-2", &schemas.ExecutionEvent{}
	*b.Execution = *a.Execution
	b.Execution.ExecutionID = "exec-0000000000000000" // sorts first
	dup := execEvent()
	dup.ID = "ev-3" // same execution as a
	audit := schemas.Event{ID: "ev-k", Type: schemas.EventKeyCreated, TenantID: "acme", Time: t0, Key: &schemas.KeyEvent{KeyID: "k"}}
	execs, audits, dups, err := Rows([]accounting.Entry{{Seq: 1, Event: a}, {Seq: 2, Event: b}, {Seq: 3, Event: dup}, {Seq: 4, Event: audit}, {Seq: 5, Event: audit}})
	if err != nil {
		t.Fatal(err)
	}
	if len(execs) != 2 || len(audits) != 1 || dups != 2 || execs[0].ExecutionID != "exec-0000000000000000" || execs[1].EventID != "ev-1" {
		t.Fatalf("rows: %d execs %d audits %d dups; %+v", len(execs), len(audits), dups, execs)
	}
	var back schemas.Event
	if err := json.Unmarshal(audits[0].Data, &back); err != nil || back.Key.KeyID != "k" {
		t.Errorf("audit data %s", audits[0].Data)
	}
	roll := Rollup(execs)
	if len(roll) != 1 || roll[0].Executions != 2 || roll[0].WallMS != 6 || roll[0].Day != "2026-03-01" {
		t.Errorf("rollup %+v", roll)
	}
}

func TestNormalizeUsage(t *testing.T) {
	now := time.Date(2026, 3, 31, 15, 4, 5, 123_456_789, time.UTC)
	got, err := NormalizeUsage(schemas.UsageRequest{TenantID: "acme"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.GroupBy != "day" || !got.To.Equal(now.Add(211*time.Nanosecond)) || !got.From.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("defaults: %+v", got)
	}
	if UseRollup(got) {
		t.Errorf("rollup used for a range ending mid-day")
	}
	aligned := schemas.UsageRequest{TenantID: "acme", From: time.Date(2026, 3, 1, 1, 0, 0, 0, time.FixedZone("", 3600)), To: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}
	got, err = NormalizeUsage(aligned, now)
	if err != nil || !UseRollup(got) || got.From.Location() != time.UTC {
		t.Errorf("aligned: %+v %v", got, err)
	}
	got.GroupBy = "module"
	if UseRollup(got) {
		t.Errorf("rollup used for module grouping")
	}
	for _, bad := range []schemas.UsageRequest{
		{TenantID: ""}, {TenantID: "acme", GroupBy: "week"},
		{TenantID: "acme", From: now, To: now}, {TenantID: "acme", From: now.AddDate(-2, 0, 0), To: now},
	} {
		_, err := NormalizeUsage(bad, now)
		var e *schemas.Error
		if !errors.As(err, &e) || e.Code != schemas.CodeInvalid {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

// FuzzValidate feeds arbitrary JSON to the checks the consumer applies to every message: an
// event that passes must turn into rows without error, overflow or an inconsistent day.
func FuzzValidate(f *testing.F) {
	ev := execEvent()
	seed, _ := json.Marshal(ev)
	f.Add(seed, "wasmwiz.events.execution.completed.acme")
	f.Add([]byte(`{"id":"e","type":"module.uploaded","tenant_id":"acme","module":{"name":"\u0000"}}`), "")
	f.Add([]byte(`{"id":"e","type":"execution.failed","tenant_id":"a","execution":{"execution_id":"aaaaaaaaaaaaaaaa","status":"killed","wall_ms":1e9,"memory_peak_bytes":1099511627776,"finished_at":"9999-12-31T23:59:59Z"}}`), "")
	f.Fuzz(func(t *testing.T, data []byte, subject string) {
		var ev schemas.Event
		if json.Unmarshal(data, &ev) != nil || accounting.ValidateEvent(&ev, subject) != nil {
			return
		}
		execs, audits, dups, err := Rows([]accounting.Entry{{Seq: 1, Event: ev}})
		if err != nil || dups != 0 || len(execs)+len(audits) != 1 {
			t.Fatalf("valid event gave %d execs, %d audits, %d dups, %v", len(execs), len(audits), dups, err)
		}
		for _, r := range execs {
			if r.BilledWallMS < 0 || r.MemoryMBMS < 0 || r.BilledWallMS > accounting.MaxWallMS || (r.BilledWallMS > 0 && r.MemoryMBMS/r.BilledWallMS > accounting.MaxBytes/schemas.MiB) {
				t.Fatalf("figures out of range: %+v", r)
			}
			if r.Day != r.FinishedAt.Format(DayFormat) || r.FinishedAt.Location() != time.UTC {
				t.Fatalf("day %s for %s", r.Day, r.FinishedAt)
			}
			tot := Rollup(execs)
			if len(tot) != 1 || tot[0].Executions != 1 {
				t.Fatalf("rollup %+v", tot)
			}
		}
	})
}

func TestDayRange(t *testing.T) {
	d := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		from, to    time.Time
		first, last string
	}{
		{d, d.AddDate(0, 0, 1), "2026-03-01", "2026-03-02"},
		{d.Add(time.Hour), d.Add(2 * time.Hour), "2026-03-01", "2026-03-02"},
		{d.Add(-time.Microsecond), d.Add(time.Microsecond), "2026-02-28", "2026-03-02"},
	} {
		first, last := DayRange(tc.from, tc.to)
		if first != tc.first || last != tc.last {
			t.Errorf("%s..%s: %s..%s, want %s..%s", tc.from, tc.to, first, last, tc.first, tc.last)
		}
	}
}
