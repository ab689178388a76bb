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
	pick := func() string {
		t.Helper()
		_, tq, ok := s.pick()
		if !ok {
			return ""
		}
		return tq.tier.Name
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
	s.done(q[schemas.TierBasic])
	if got := pick(); got != schemas.TierPro {
		t.Fatalf("after a basic slot freed: %q, want pro", got)
	}
	// Pro is done; it is still active, so basic may not take the last free slot back...
	s.done(q[schemas.TierPro])
	if ok, retry := s.pickable(); ok || retry <= 0 || retry > activeWindow {
		t.Fatalf("pickable = %v, %v; want false with a retry within %v", ok, retry, activeWindow)
	}
	if got := pick(); got != "" {
		t.Fatalf("basic took the slot kept for pro: %q", got)
	}
	// ...but any other slot is basic's, whatever the starvation count says.
	s.done(q[schemas.TierBasic])
	if got := pick(); got != schemas.TierBasic {
		t.Fatalf("with two slots free: %q, want basic", got)
	}
	// The next pro request finds its slot at once.
	s.push(q[schemas.TierPro], nil)
	if got := pick(); got != schemas.TierPro {
		t.Fatalf("pro with its kept slot: %q", got)
	}
	s.done(q[schemas.TierPro])
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
			s.pick()
			s.done(tq)
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
