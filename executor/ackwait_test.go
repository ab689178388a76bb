package executor

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// A guest that runs longer than the requests' AckWait is not redelivered while it runs: the
// node reports progress for it every second.
func TestNode_LongGuest_NotRedelivered(t *testing.T) {
	e := startEnv(t, nil)
	wait := streams.AckWait(schemas.DefaultTiers()[schemas.TierPro])
	req := newRequest(schemas.TierPro, e.putModule(fixtures.Wasm("loop")))
	req.TimeoutMS = (wait + 3*time.Second).Milliseconds()
	res := e.execute(req)
	if !res.Status.Final() || res.DurationMS < float64(wait.Milliseconds()) {
		t.Fatalf("loop for %d ms: %s after %.0f ms", req.TimeoutMS, res.Status, res.DurationMS)
	}
	info, err := e.js.Consumer(context.Background(), schemas.ExecStream(schemas.TierPro), schemas.ExecConsumer(schemas.TierPro))
	if err != nil {
		t.Fatal(err)
	}
	if d := info.CachedInfo().Delivered.Consumer; d != 1 {
		t.Errorf("the request was delivered %d times while its guest ran for %.0f ms (AckWait %v), want once", d, res.DurationMS, wait)
	}
	if evs := e.events(req.ExecutionID); len(evs) != 1 {
		t.Errorf("%d events, want 1", len(evs))
	}
}

// A request redelivered while a node still runs it (its progress reports were lost, as across
// a consumer leader change: here the consumer is made again under the running execution) is
// not run a second time: the node given the new delivery waits for the run and finishes with
// its result.
func TestNode_Redelivered_WhileRunning_WaitsForTheRun(t *testing.T) {
	e := startEnv(t, nil)
	first, stopFirst, firstDone := e.node, e.stop, e.done
	second := e.startNode(func(c *Config) { c.NodeID = "second-" + t.Name() })
	ctx := context.Background()
	req := newRequest(schemas.TierPro, e.putModule(fixtures.Wasm("loop")))
	req.TimeoutMS = 4000
	sub := e.publish(req, "")
	natstest.CheckFor(t, 10*time.Second, poll, state(func() bool {
		return e.storedStatus(req.ExecutionID) == schemas.StatusRunning
	}, func() string { return "the execution never showed as running" }))

	if err := e.js.DeleteConsumer(ctx, schemas.ExecStream(schemas.TierPro), schemas.ExecConsumer(schemas.TierPro)); err != nil {
		t.Fatal(err)
	}
	if err := streams.Ensure(ctx, e.js, streams.Options{Tiers: testTiers()}); err != nil {
		t.Fatal(err)
	}
	res := e.wait(sub, 60*time.Second)
	if !res.Status.Final() {
		t.Fatalf("reply %+v", res)
	}
	// The new delivery is acked once the run ends: the work queue empties.
	natstest.CheckFor(t, 20*time.Second, poll, state(func() bool {
		s, err := e.js.Stream(ctx, schemas.ExecStream(schemas.TierPro))
		return err == nil && s.CachedInfo().State.Msgs == 0
	}, func() string { return "the redelivered request was never acked" }))
	// Both nodes drain (a second run, had one started, would finish first), then count runs.
	stopFirst()
	e.stop()
	<-firstDone
	<-e.done
	ran := 0.0
	for _, n := range []*Node{first, second} {
		ran += testutil.ToFloat64(n.m.executions.WithLabelValues(schemas.TierPro, string(res.Status)))
	}
	if ran != 1 {
		t.Errorf("the guest ran %v times, want once", ran)
	}
	info, err := e.js.Consumer(ctx, schemas.ExecStream(schemas.TierPro), schemas.ExecConsumer(schemas.TierPro))
	if err != nil {
		t.Fatal(err)
	}
	if d := info.CachedInfo().Delivered.Consumer; d != 1 {
		t.Errorf("the new consumer delivered the request %d times, want 1", d)
	}
	if evs := e.events(req.ExecutionID); len(evs) != 1 {
		t.Errorf("%d events, want 1", len(evs))
	}
}

// storedStatus is the status in the results KV, or "" when there is none.
func (e *env) storedStatus(id string) schemas.Status {
	entry, err := e.results.Get(context.Background(), id)
	if err != nil {
		return ""
	}
	var res schemas.Result
	if json.Unmarshal(entry.Value(), &res) != nil {
		return ""
	}
	return res.Status
}
