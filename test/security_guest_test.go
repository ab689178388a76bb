package test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Hole 14: every guest got the same random bytes (wazero's fixed random_get), so a Go guest's
// crypto/rand keys were everybody's. Now each execution's bytes are its own unless the request
// gives a seed, over REST and direct NATS alike; the clock stays fixed unless the request asks
// for the real one, and any other clock is a 422.
func TestSecurity_RandomSeedPerExecution(t *testing.T) {
	s := startDev(t, t.TempDir())
	nc := s.natsConn(t)
	key := s.newTenant(t, "dice", "basic")
	m := s.upload(t, key, "clock", fixtures.Wasm("clock"))

	// run answers the clock fixture's output, "<wall clock, 16 hex> <8 random bytes, 16 hex>",
	// over REST or NATS.
	run := func(overNATS bool, req schemas.ExecutionRequest) (wall, random string) {
		t.Helper()
		req.ModuleID = m.ID
		var e schemas.Execution
		if overNATS {
			msg := natsMsg(t, nc, schemas.OpExecutionsCreate, key, mustJSON(req))
			if err := json.Unmarshal(msg.Data, &e); err != nil || natsStatus(msg) != 200 {
				t.Fatalf("NATS: %d %s", natsStatus(msg), msg.Data)
			}
		} else {
			e = *s.runWait(t, key, req)
		}
		f := strings.Fields(e.Stdout)
		if e.Status != schemas.StatusSucceeded || len(f) != 2 {
			t.Fatalf("clock: %s %q %q", e.Status, e.Stdout, e.Error)
		}
		return f[0], f[1]
	}

	wallREST, a := run(false, schemas.ExecutionRequest{})
	wallNATS, b := run(true, schemas.ExecutionRequest{})
	_, c := run(false, schemas.ExecutionRequest{})
	if a == b || b == c || a == c {
		t.Errorf("random bytes of three executions: %s %s %s, want three different", a, b, c)
	}
	if wallREST != wallNATS {
		t.Errorf("fixed clock read %s then %s", wallREST, wallNATS)
	}

	seed := int64(20261202)
	_, sa := run(false, schemas.ExecutionRequest{Seed: &seed})
	_, sb := run(true, schemas.ExecutionRequest{Seed: &seed, Clock: schemas.ClockFixed})
	if sa != sb || sa == a || sa == b {
		t.Errorf("seed %d gave %s over REST and %s over NATS (unseeded %s, %s): want the same", seed, sa, sb, a, b)
	}

	before := time.Now().UnixNano()
	wall, _ := run(true, schemas.ExecutionRequest{Clock: schemas.ClockReal})
	if n, err := strconv.ParseUint(wall, 16, 64); err != nil || int64(n) < before || int64(n) > time.Now().UnixNano() {
		t.Errorf("real clock read %s (%v), want the host's time", wall, err)
	}

	bad := mustJSON(schemas.ExecutionRequest{ModuleID: m.ID, Clock: "sundial"})
	if r := s.do(t, http.MethodPost, "/v1/executions", key, "application/json", bad); r.Status != 422 {
		t.Errorf("REST, clock sundial: %d %s, want 422", r.Status, r.Body)
	}
	if msg := natsMsg(t, nc, schemas.OpExecutionsCreate, key, bad); natsStatus(msg) != 422 || natsProblemCode(t, msg) != "invalid" {
		t.Errorf("NATS, clock sundial: %d %s, want 422 invalid", natsStatus(msg), msg.Data)
	}
}

// Hole 13: a guest growing a funcref table (Go heap in the worker, outside wazero's linear
// memory limit) held ~800 MB on a 512 MiB tier and was billed 64 KiB. Now what a guest makes its
// worker hold counts against the tier's memory: on the free tier (128 MiB) the table grower is
// killed for its memory well before its deadline and billed more than the tier's memory, and the
// node goes on serving.
func TestSecurity_TableGrowthMemoryCapped(t *testing.T) {
	s := startDev(t, t.TempDir())
	key := s.newTenant(t, "tables", "free")
	free := schemas.DefaultTiers()[schemas.TierFree]
	m := s.upload(t, key, "tablegrow", fixtures.Wasm("tablegrow"))
	e := s.runWait(t, key, schemas.ExecutionRequest{ModuleID: m.ID})
	t.Logf("tablegrow on the free tier: %s %q after %.0f ms, billed %d MiB", e.Status, e.Error, e.DurationMS, e.MemoryPeakBytes>>20)
	if e.Status != schemas.StatusKilled || !strings.HasPrefix(e.Error, "memory limit exceeded") {
		t.Errorf("tablegrow: %s %q, want killed, memory limit exceeded", e.Status, e.Error)
	}
	if e.MemoryPeakBytes <= int64(free.MemoryMB)*schemas.MiB || e.DurationMS >= float64(free.WallTime.Milliseconds()) {
		t.Errorf("billed %d MiB for %.0f ms, want more than the tier's %d MiB, before its %v deadline",
			e.MemoryPeakBytes>>20, e.DurationMS, free.MemoryMB, free.WallTime)
	}
	hello := s.upload(t, key, "hello", fixtures.Wasm("hello"))
	if e := s.run(t, key, schemas.ExecutionRequest{ModuleID: hello.ID}); e.Status != schemas.StatusSucceeded {
		t.Errorf("hello afterwards: %+v", e)
	}
}
