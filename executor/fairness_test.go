package executor

import (
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestScheduler_KeepsLastSlotForActiveHigherTier: a lower tier whose guests run long may fill
// every slot of an idle node, but once a higher tier is active it can hold at most all slots
// but one, so the higher tier's requests never wait for a lower tier's guest to end; the slot
// is given back to the lower tier when the higher one has been quiet for activeWindow.
func TestScheduler_KeepsLastSlotForActiveHigherTier(t *testing.T) {
	s := newScheduler(schemas.DefaultTiers(), 4)
	clock := time.Unix(1_000_000, 0)
	s.now = func() time.Time { return clock }
	q := map[string]*tierQueue{}
	for _, tq := range s.queues {
		q[tq.tier.Name] = tq
	}
	started := map[string][]*queued{}
	pick := func() string {
		t.Helper()
		it, tq, ok := s.pick()
		if !ok {
			return ""
		}
		started[tq.tier.Name] = append(started[tq.tier.Name], it)
		return tq.tier.Name
	}
	done := func(tier string) {
		it := started[tier][0]
		started[tier] = started[tier][1:]
		s.done(q[tier], it)
	}
	for range 10 {
		s.push(q[schemas.TierBasic], nil)
	}
	// Nothing else is active: basic may take all four slots.
	for i := range 4 {
		if got := pick(); got != schemas.TierBasic {
			t.Fatalf("pick %d on an idle node: %q, want basic", i, got)
		}
	}
	// A pro request arrives while all four run; the first slot to free is pro's.
	s.push(q[schemas.TierPro], nil)
	done(schemas.TierBasic)
	if got := pick(); got != schemas.TierPro {
		t.Fatalf("after a basic slot freed: %q, want pro", got)
	}
	// Pro is done; it is still active, so basic may not take the last free slot back...
	done(schemas.TierPro)
	if ok, retry := s.pickable(); ok || retry <= 0 || retry > activeWindow {
		t.Fatalf("pickable = %v, %v; want false with a retry within %v", ok, retry, activeWindow)
	}
	if got := pick(); got != "" {
		t.Fatalf("basic took the slot kept for pro: %q", got)
	}
	// ...but any other slot is basic's, whatever the starvation count says.
	done(schemas.TierBasic)
	if got := pick(); got != schemas.TierBasic {
		t.Fatalf("with two slots free: %q, want basic", got)
	}
	// The next pro request finds its slot at once.
	s.push(q[schemas.TierPro], nil)
	if got := pick(); got != schemas.TierPro {
		t.Fatalf("pro with its kept slot: %q", got)
	}
	done(schemas.TierPro)
	// Once pro has been quiet for activeWindow, the last slot is basic's again.
	clock = clock.Add(activeWindow + time.Millisecond)
	if ok, _ := s.pickable(); !ok {
		t.Fatal("not pickable after pro went quiet")
	}
	if got := pick(); got != schemas.TierBasic {
		t.Fatalf("after pro went quiet: %q, want basic", got)
	}

	// One slot: nothing is kept (a lower tier would never run).
	s = newScheduler(schemas.DefaultTiers(), 1)
	s.now = func() time.Time { return clock }
	for _, tq := range s.queues {
		if tq.tier.Name == schemas.TierPro {
			s.push(tq, nil)
			it, _, _ := s.pick()
			s.done(tq, it)
		}
	}
	for _, tq := range s.queues {
		if tq.tier.Name == schemas.TierFree {
			s.push(tq, nil)
		}
	}
	if got := func() string {
		_, tq, ok := s.pick()
		if !ok {
			return ""
		}
		return tq.tier.Name
	}(); got != schemas.TierFree {
		t.Fatalf("one slot, free after pro: %q", got)
	}
}

// TestScheduler_LongRunningBound: short executions may fill every slot, but while LongRunning
// executions have run past longAfter nothing more starts, except a tier above all of them.
func TestScheduler_LongRunningBound(t *testing.T) {
	s := newScheduler(schemas.DefaultTiers(), 6)
	s.longMax = 2
	clock := time.Unix(1_000_000, 0)
	s.now = func() time.Time { return clock }
	q := map[string]*tierQueue{}
	for _, tq := range s.queues {
		q[tq.tier.Name] = tq
	}
	for range 10 {
		s.push(q[schemas.TierBasic], nil)
	}
	var running []*queued
	for i := range 3 { // young: not bound
		it, _, ok := s.pick()
		if !ok {
			t.Fatalf("pick %d of short executions refused", i)
		}
		running = append(running, it)
	}
	clock = clock.Add(longAfter) // all three are long now
	if ok, retry := s.pickable(); ok || retry != 0 {
		t.Fatalf("pickable = %v, %v with three long executions; want false, waiting for one to end", ok, retry)
	}
	if _, _, ok := s.pick(); ok {
		t.Fatal("started a fourth while three ran long")
	}
	s.push(q[schemas.TierPro], nil)
	if _, tq, ok := s.pick(); !ok || tq.tier.Name != schemas.TierPro {
		t.Fatal("pro, above every long execution, did not start")
	}
	s.done(q[schemas.TierBasic], running[0])
	if _, _, ok := s.pick(); ok {
		t.Fatal("started with two long executions still running")
	}
	s.done(q[schemas.TierBasic], running[1])
	if _, tq, ok := s.pick(); !ok || tq.tier.Name != schemas.TierBasic {
		t.Fatal("basic did not start once fewer than two ran long")
	}
}
