package accounting

import (
	"math"
	"strings"
	"testing"
	"time"

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

func TestValidateEvent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*schemas.Event)
		subject string
		ok      bool
	}{
		{"valid", func(*schemas.Event) {}, "", true},
		{"valid with subject", func(*schemas.Event) {}, "wasmwiz.events.execution.completed.acme", true},
		{"subject of another tenant", func(*schemas.Event) {}, "wasmwiz.events.execution.completed.globex", false},
		{"subject of another type", func(*schemas.Event) {}, "wasmwiz.events.execution.failed.acme", false},
		{"no id", func(e *schemas.Event) { e.ID = "" }, "", false},
		{"bad tenant", func(e *schemas.Event) { e.TenantID = "ACME" }, "", false},
		{"no execution", func(e *schemas.Event) { e.Execution = nil }, "", false},
		{"bad execution id", func(e *schemas.Event) { e.Execution.ExecutionID = "x" }, "", false},
		{"running", func(e *schemas.Event) { e.Execution.Status = schemas.StatusRunning }, "", false},
		{"killed", func(e *schemas.Event) { e.Execution.Status = schemas.StatusKilled }, "", true},
		{"negative wall", func(e *schemas.Event) { e.Execution.WallMS = -1 }, "", false},
		{"NaN wall", func(e *schemas.Event) { e.Execution.WallMS = math.NaN() }, "", false},
		{"huge memory", func(e *schemas.Event) { e.Execution.MemoryPeakBytes = math.MaxInt64 }, "", false},
		{"negative stdout", func(e *schemas.Event) { e.Execution.StdoutBytes = -1 }, "", false},
		{"no times", func(e *schemas.Event) { e.Time = time.Time{}; e.Execution.FinishedAt = time.Time{} }, "", false},
		{"event time only", func(e *schemas.Event) { e.Execution.FinishedAt = time.Time{} }, "", true},
		{"year 20000", func(e *schemas.Event) { e.Execution.FinishedAt = time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC) }, "", false},
		{"NUL in key id", func(e *schemas.Event) { e.Execution.KeyID = "a\x00b" }, "", false},
		{"bad utf8 in node", func(e *schemas.Event) { e.Execution.NodeID = "\xff" }, "", false},
		{"long module id", func(e *schemas.Event) { e.Execution.ModuleID = strings.Repeat("m", 201) }, "", false},
		{"module event", func(e *schemas.Event) {
			e.Type, e.Execution, e.Module = schemas.EventModuleUploaded, nil, &schemas.ModuleEvent{ModuleID: "m", Name: "x.wasm"}
		}, "wasmwiz.events.module.uploaded.acme", true},
		{"module event with NUL", func(e *schemas.Event) {
			e.Type, e.Execution, e.Module = schemas.EventModuleUploaded, nil, &schemas.ModuleEvent{ModuleID: "m", Name: "x\x00.wasm"}
		}, "", false},
	} {
		ev := execEvent()
		tc.mod(&ev)
		err := ValidateEvent(&ev, tc.subject)
		if (err == nil) != tc.ok {
			t.Errorf("%s: ValidateEvent = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestHasNULEscape(t *testing.T) {
	for in, want := range map[string]bool{
		`"a\u0000"`:       true,
		`"a\\u0000"`:      false,
		`"a\\\u0000"`:     true,
		`"\u0001\u0000`:   true,
		`"u0000"`:         false,
		`"\\u0000\u0000"`: true,
	} {
		if got := hasNULEscape([]byte(in)); got != want {
			t.Errorf("%s: %v, want %v", in, got, want)
		}
	}
}
