package executor

import (
	"math"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// scheduler holds the requests a node has fetched but not started, one queue per tier.
//
// Priority: a free slot goes to the highest-priority tier with waiting work, except that a
// tier passed over starveAfter times in a row while it had work waiting is served next (the
// highest such tier first). Under a full backlog on every tier, pro gets about three dispatches
// in five and basic and free one each; a lone lower tier waits at most starveAfter dispatches.
//
// Dispatches are not time: a lower tier's guests may run for its whole wall time while a
// higher tier's finish in a millisecond, so counting dispatches alone lets a lower tier take
// back every slot that frees and hold all of them. So, with two slots or more, a tier never
// takes the node's last free slot while a higher tier is active (has work waiting or running,
// or had a request within activeWindow): lower tiers together hold at most all slots but one,
// and the higher tier's next request finds that one free.
type scheduler struct {
	mu     sync.Mutex
	queues []*tierQueue // by priority, highest first
	limit  int          // fetched-but-not-started requests per tier
	slots  int          // execution slots (workers)
	// started holds the requests holding slots (from pick to done), with when each was picked;
	// while longMax of them are older than longAfter, nothing more starts (0: no such bound).
	started map[*queued]startedAt
	longMax int
	wake    chan struct{}
	now     func() time.Time
}

type tierQueue struct {
	tier    schemas.Tier
	cons    jetstream.Consumer
	items   []*queued
	skips   int
	running int           // started, not done
	last    time.Time     // when a request last arrived
	space   chan struct{} // signaled when an item leaves the queue
}

type queued struct {
	msg      jetstream.Msg
	at       time.Time
	progress time.Time
	pre      *prepared // decoded, checked and looked up while it waits (nil: not yet)
}

func newScheduler(tiers map[string]schemas.Tier, limit int) *scheduler {
	s := &scheduler{limit: max(1, limit), slots: max(1, limit), wake: make(chan struct{}, 1), now: time.Now, started: map[*queued]startedAt{}}
	for _, t := range tiers {
		s.queues = append(s.queues, &tierQueue{tier: t, space: make(chan struct{}, 1)})
	}
	sort.Slice(s.queues, func(i, j int) bool {
		a, b := s.queues[i].tier, s.queues[j].tier
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		return a.Name < b.Name
	})
	return s
}

func (s *scheduler) room(q *tierQueue) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit - len(q.items)
}

func (s *scheduler) push(q *tierQueue, msg jetstream.Msg) { s.add(q, msg, nil) }

// add queues msg with its preparation already under way (pre may be nil).
func (s *scheduler) add(q *tierQueue, msg jetstream.Msg, pre *prepared) {
	now := time.Now()
	s.mu.Lock()
	q.items = append(q.items, &queued{msg: msg, at: now, progress: now, pre: pre})
	q.last = s.now()
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *scheduler) waiting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.queues {
		if len(q.items) > 0 {
			return true
		}
	}
	return false
}

// pickable reports whether pick, given a free slot, would take something. When it would not
// only because the last slot is kept for an active higher tier, retry says when that tier
// goes quiet if nothing else happens.
func (s *scheduler) pickable() (ok bool, retry time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, q := range s.queues {
		if len(q.items) == 0 || s.longBlocks(q, now) {
			continue // a long one finishing wakes the dispatcher
		}
		keep, until := s.keptFrom(q, now)
		if !keep {
			return true, 0
		}
		if retry == 0 || until < retry {
			retry = until
		}
	}
	return false, retry
}

// keptFrom reports whether the next free slot is kept from q: it is the last one and a tier of
// higher priority is active; until is how long that stays so if nothing else happens.
func (s *scheduler) keptFrom(q *tierQueue, now time.Time) (keep bool, until time.Duration) {
	if s.slots < 2 || len(s.started) < s.slots-1 {
		return false, 0
	}
	for _, h := range s.queues {
		if h.tier.Priority <= q.tier.Priority {
			continue
		}
		if len(h.items) > 0 || h.running > 0 {
			return true, activeWindow
		}
		if left := activeWindow - now.Sub(h.last); !h.last.IsZero() && left > 0 {
			keep, until = true, max(until, left)
		}
	}
	return keep, until
}

// longAfter is how long an execution runs before it counts as long (see Config.LongRunning).
const longAfter = 10 * time.Millisecond

type startedAt struct {
	at       time.Time
	priority int
}

// longBlocks reports whether q may not start anything because longMax executions are long
// already. A tier of higher priority than every long one may still start: the bound protects
// long guests' wall time, not lower tiers' hold on the node.
func (s *scheduler) longBlocks(q *tierQueue, now time.Time) bool {
	if s.longMax <= 0 || len(s.started) < s.longMax {
		return false
	}
	long, top := 0, math.MinInt
	for _, st := range s.started {
		if now.Sub(st.at) >= longAfter {
			long++
			top = max(top, st.priority)
		}
	}
	return long >= s.longMax && q.tier.Priority <= top
}

// done gives back the slot of a request of q that pick started.
func (s *scheduler) done(q *tierQueue, it *queued) {
	s.mu.Lock()
	q.running--
	delete(s.started, it)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pick takes the next request to start; see scheduler for the rule.
func (s *scheduler) pick() (*queued, *tierQueue, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var chosen *tierQueue
	for _, q := range s.queues {
		if len(q.items) > 0 && q.skips >= starveAfter && !s.longBlocks(q, now) {
			if keep, _ := s.keptFrom(q, now); !keep {
				chosen = q
				break
			}
		}
	}
	if chosen == nil {
		for _, q := range s.queues {
			if len(q.items) > 0 && !s.longBlocks(q, now) {
				if keep, _ := s.keptFrom(q, now); !keep {
					chosen = q
					break
				}
			}
		}
	}
	if chosen == nil {
		return nil, nil, false
	}
	chosen.running++
	for _, q := range s.queues {
		if q != chosen && len(q.items) > 0 {
			q.skips++
		}
	}
	chosen.skips = 0
	it := chosen.items[0]
	s.started[it] = startedAt{now, chosen.tier.Priority}
	chosen.items[0] = nil
	chosen.items = chosen.items[1:]
	select {
	case chosen.space <- struct{}{}:
	default:
	}
	return it, chosen, true
}

// stale returns the messages that have waited longer than d since their last progress report,
// and marks them reported.
func (s *scheduler) stale(d time.Duration) []jetstream.Msg {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []jetstream.Msg
	for _, q := range s.queues {
		for _, it := range q.items {
			if now.Sub(it.progress) >= d {
				it.progress = now
				out = append(out, it.msg)
			}
		}
	}
	return out
}

// takeAll empties every queue.
func (s *scheduler) takeAll() []*queued {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*queued
	for _, q := range s.queues {
		out = append(out, q.items...)
		q.items = nil
	}
	return out
}
