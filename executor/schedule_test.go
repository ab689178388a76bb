package executor

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

func (n *Node) queued(tier string) int {
	n.sched.mu.Lock()
	defer n.sched.mu.Unlock()
	for _, q := range n.sched.queues {
		if q.tier.Name == tier {
			return len(q.items)
		}
	}
	return 0
}

func (p *pool) busyWorkers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy
}

// TestNode_Priority fills the queue with free and pro requests while every worker is busy:
// pro starts first, free still runs.
func TestNode_Priority(t *testing.T) {
	e := startEnv(t, nil) // 2 workers
	loop, hello := e.putModule(fixtures.Wasm("loop")), e.putModule(fixtures.Wasm("hello"))
	var blockers []*nats.Subscription
	for range 2 {
		req := newRequest(schemas.TierBasic, loop)
		req.TimeoutMS = 1500
		blockers = append(blockers, e.publish(req, ""))
	}
	natstest.CheckFor(t, 30*time.Second, poll, state(func() bool { return e.node.pool.busyWorkers() == 2 }, func() string { return "blockers not running" }))

	type sent struct {
		tier string
		sub  *nats.Subscription
	}
	var all []sent
	for _, tier := range []string{schemas.TierFree, schemas.TierFree, schemas.TierFree, schemas.TierFree,
		schemas.TierPro, schemas.TierPro, schemas.TierPro, schemas.TierPro} {
		req := newRequest(tier, hello)
		all = append(all, sent{tier, e.publish(req, "")})
	}
	// Every one is fetched (the prefetch holds prefetchPerWorker × workers per tier) and waits.
	natstest.CheckFor(t, 10*time.Second, poll, state(func() bool {
		return e.node.queued(schemas.TierFree) == 4 && e.node.queued(schemas.TierPro) == 4
	}, func() string {
		return fmt.Sprintf("requests not fetched: free %d pro %d", e.node.queued(schemas.TierFree), e.node.queued(schemas.TierPro))
	}))

	for _, b := range blockers {
		if res := e.wait(b, 30*time.Second); res.Status != schemas.StatusTimedOut {
			t.Fatalf("blocker: %s", res.Status)
		}
	}
	type started struct {
		tier string
		at   time.Time
	}
	var order []started
	for _, s := range all {
		res := e.wait(s.sub, 30*time.Second)
		if res.Status != schemas.StatusSucceeded {
			t.Fatalf("%s: %s %q", s.tier, res.Status, res.Error)
		}
		order = append(order, started{s.tier, *res.StartedAt})
	}
	sort.Slice(order, func(i, j int) bool { return order[i].at.Before(order[j].at) })
	var tiers []string
	rank := map[string]int{}
	for i, o := range order {
		tiers = append(tiers, o.tier)
		rank[o.tier] += i
	}
	t.Logf("start order: %v", tiers)
	if tiers[0] != schemas.TierPro || tiers[1] != schemas.TierPro {
		t.Errorf("start order %v: the two free slots did not go to pro", tiers)
	}
	if rank[schemas.TierPro] >= rank[schemas.TierFree] {
		t.Errorf("start order %v: pro not ahead of free", tiers)
	}
}

func TestScheduler_Pick(t *testing.T) {
	s := newScheduler(schemas.DefaultTiers(), 100)
	q := map[string]*tierQueue{}
	for _, tq := range s.queues {
		q[tq.tier.Name] = tq
	}
	for range 10 {
		for _, tier := range []string{schemas.TierFree, schemas.TierBasic, schemas.TierPro} {
			s.push(q[tier], nil)
		}
	}
	var got []string
	for range 10 {
		_, tq, ok := s.pick()
		if !ok {
			t.Fatal("nothing to pick")
		}
		got = append(got, tq.tier.Name[:1])
	}
	// pro first; basic and free each served after being passed over starveAfter times.
	want := []string{"p", "p", "p", "b", "f", "p", "p", "b", "f", "p"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pick order %v, want %v", got, want)
		}
	}
	// A lone tier is simply served.
	s = newScheduler(schemas.DefaultTiers(), 100)
	for _, tq := range s.queues {
		if tq.tier.Name == schemas.TierFree {
			s.push(tq, nil)
		}
	}
	if _, tq, ok := s.pick(); !ok || tq.tier.Name != schemas.TierFree {
		t.Fatalf("lone free not picked")
	}
	if _, _, ok := s.pick(); ok {
		t.Fatal("picked from empty queues")
	}
}

// TestNode_Drain stops a node while it runs one execution and holds two it has not started:
// Run returns once the running one is finished, the held ones go back to the stream at once,
// and another node completes them.
func TestNode_Drain(t *testing.T) {
	e := startEnv(t, func(c *Config) { c.Workers = 1; c.NodeID = "first" })
	stop, done, runErr := e.stop, e.done, e.runErr
	loop, hello := e.putModule(fixtures.Wasm("loop")), e.putModule(fixtures.Wasm("hello"))
	req := newRequest(schemas.TierFree, loop)
	req.TimeoutMS = 1000
	running := e.publish(req, "")
	natstest.CheckFor(t, 30*time.Second, poll, state(func() bool { return e.node.pool.busyWorkers() == 1 }, func() string { return "loop not running" }))
	var waiting []*nats.Subscription
	for range 2 {
		waiting = append(waiting, e.publish(newRequest(schemas.TierFree, hello), ""))
	}
	natstest.CheckFor(t, 10*time.Second, poll, state(func() bool { return e.node.queued(schemas.TierFree) == 2 }, func() string { return "not fetched" }))

	start := time.Now()
	stop()
	select {
	case <-done:
		if *runErr != nil {
			t.Fatalf("Run: %v", *runErr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	t.Logf("drained in %v", time.Since(start))
	// The running one finishes on the draining node (timed out; on a starved machine the
	// supervisor may have had to kill it instead, which is still finishing it there).
	if res := e.wait(running, 5*time.Second); (res.Status != schemas.StatusTimedOut && res.Status != schemas.StatusKilled) || res.NodeID != "first" {
		t.Errorf("running execution: %s on %s", res.Status, res.NodeID)
	}
	// Both are served by the next node well before their ack wait (35 s) would have expired:
	// the one the drained node held was given back (Nak), not left to time out.
	e.startNode(func(c *Config) { c.NodeID = "second" })
	for _, w := range waiting {
		if res := e.wait(w, 15*time.Second); res.Status != schemas.StatusSucceeded || res.NodeID != "second" {
			t.Errorf("after drain: %s on %s", res.Status, res.NodeID)
		}
	}
}
