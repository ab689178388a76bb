package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

func limiterTiers() map[string]schemas.Tier {
	tiers := schemas.DefaultTiers()
	t := tiers[schemas.TierFree]
	t.ExecPerMinute, t.ExecPerDay = 10, 25
	tiers[schemas.TierFree] = t
	return tiers
}

func newTestLimiters(t *testing.T, n int) ([]*Limiter, schemas.Tier) {
	t.Helper()
	srv := natstest.RunJetStream(t)
	tiers := limiterTiers()
	var ls []*Limiter
	for i := range n {
		js := natstest.JetStream(t, srv)
		if i == 0 {
			if err := streams.Ensure(context.Background(), js, streams.Options{Tiers: tiers}); err != nil {
				t.Fatal(err)
			}
		}
		ls = append(ls, NewLimiter(js))
	}
	return ls, tiers[schemas.TierFree]
}

// Three gateways' limiters race for one tenant's per-minute limit: exactly the limit is admitted.
func TestLimiter_ExactAcrossGateways(t *testing.T) {
	ls, free := newTestLimiters(t, 3)
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for _, l := range ls {
		for range 8 {
			wg.Go(func() {
				for range 5 {
					d, err := l.Admit(context.Background(), "acme", free)
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						admitted.Add(1)
					} else {
						refused.Add(1)
						if d.RetryAfter <= 0 || d.RetryAfter > time.Minute {
							t.Errorf("retry after %v", d.RetryAfter)
						}
					}
				}
			})
		}
	}
	wg.Wait()
	if admitted.Load() != int64(free.ExecPerMinute) || refused.Load() != 120-int64(free.ExecPerMinute) {
		t.Fatalf("admitted %d refused %d, want %d admitted", admitted.Load(), refused.Load(), free.ExecPerMinute)
	}
	// Another tenant has its own quota.
	if d, err := ls[0].Admit(context.Background(), "other", free); err != nil || !d.Allowed {
		t.Fatalf("other tenant: %+v %v", d, err)
	}
}

// A refusal by the minute window gives back what the day window admitted, so refused requests
// never eat the daily quota; Release gives back an admission the gateway could not use.
func TestLimiter_RefusalUsesNoQuota(t *testing.T) {
	ls, free := newTestLimiters(t, 1)
	l, ctx := ls[0], context.Background()
	for range free.ExecPerMinute {
		if d, _ := l.Admit(ctx, "acme", free); !d.Allowed {
			t.Fatal("refused below the limit")
		}
	}
	for range 5 {
		d, err := l.Admit(ctx, "acme", free)
		if err != nil || d.Allowed || d.Window != schemas.WindowMinute {
			t.Fatalf("over the minute limit: %+v %v", d, err)
		}
	}
	day, err := l.stream(ctx, free.Name, schemas.WindowDay)
	if err != nil {
		t.Fatal(err)
	}
	subj := schemas.RateLimitSubject(free.Name, schemas.WindowDay, "acme")
	info, err := day.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects[subj]; got != uint64(free.ExecPerMinute) {
		t.Fatalf("day window counts %d, want %d (refusals must not count)", got, free.ExecPerMinute)
	}
	d := &Decision{Allowed: true, Window: schemas.WindowMinute, Limit: free.ExecPerMinute}
	if err := l.Status(ctx, "acme", free, d); err != nil || d.Remaining != 0 || d.Reset <= 0 || d.Reset > time.Minute {
		t.Fatalf("status at the limit: %+v %v", d, err)
	}
}

// With its store gone the limiter refuses: it never lets traffic through unchecked.
func TestLimiter_FailsClosed(t *testing.T) {
	srv := natstest.RunJetStream(t)
	nc := natstest.Connect(t, srv)
	js, _ := jetstream.New(nc)
	tiers := limiterTiers()
	if err := streams.Ensure(context.Background(), js, streams.Options{Tiers: tiers}); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), schemas.RateLimitStream(schemas.TierFree, schemas.WindowMinute)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := NewLimiter(js).Admit(ctx, "acme", tiers[schemas.TierFree])
	if se := schemas.AsError(err); se.Code != schemas.CodeUnavailable {
		t.Fatalf("admit without its stream: %v, want unavailable", err)
	}
}

// benchLimiter is a limiter on a fresh server whose pro tier has limits too high to reach.
func benchLimiter(b *testing.B) (*Limiter, schemas.Tier) {
	b.Helper()
	srv := natstest.RunJetStream(b)
	js := natstest.JetStream(b, srv)
	tiers := schemas.DefaultTiers()
	pro := tiers[schemas.TierPro]
	pro.ExecPerMinute, pro.ExecPerDay = 1<<30, 1<<30
	tiers[schemas.TierPro] = pro
	if err := streams.Ensure(context.Background(), js, streams.Options{Tiers: tiers}); err != nil {
		b.Fatal(err)
	}
	return NewLimiter(js), pro
}

// BenchmarkLimiter_Admit is the limiter's own cost per admitted request (both windows).
func BenchmarkLimiter_Admit(b *testing.B) {
	l, pro := benchLimiter(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d, err := l.Admit(context.Background(), "bench", pro); err != nil || !d.Allowed {
				b.Fatal(d, err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "admits/s")
}

// Status reads a tenant's count at most once per statusFresh on a gateway and counts its own
// admissions and releases in between: Remaining goes down by one per admission without a read,
// and a read after the window of freshness sees what other gateways admitted meanwhile.
func TestLimiter_StatusCountsBetweenReads(t *testing.T) {
	ls, free := newTestLimiters(t, 2)
	ctx := context.Background()
	a, b := ls[0], ls[1]
	a.fresh, b.fresh = time.Hour, time.Hour // however slow the machine, the reads below stay fresh
	remaining := func(l *Limiter) int {
		t.Helper()
		d, err := l.Admit(ctx, "acme", free)
		if err != nil || !d.Allowed {
			t.Fatalf("admit: %+v %v", d, err)
		}
		if err := l.Status(ctx, "acme", free, d); err != nil {
			t.Fatal(err)
		}
		return d.Remaining
	}
	if got := remaining(a); got != free.ExecPerMinute-1 {
		t.Fatalf("first: remaining %d, want %d", got, free.ExecPerMinute-1)
	}
	if got := remaining(b); got != free.ExecPerMinute-2 { // b reads: it sees a's admission
		t.Fatalf("b: remaining %d, want %d", got, free.ExecPerMinute-2)
	}
	// Within statusFresh, a counts its own admission on its last read and does not see b's.
	if got := remaining(a); got != free.ExecPerMinute-2 {
		t.Fatalf("a, fresh: remaining %d, want %d (its read plus its own admission)", got, free.ExecPerMinute-2)
	}
	// A released admission is given back to the count too.
	d, err := a.Admit(ctx, "acme", free)
	if err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	a.Release(ctx, free.Name, d)
	if got := remaining(a); got != free.ExecPerMinute-3 {
		t.Fatalf("a after a release: remaining %d, want %d", got, free.ExecPerMinute-3)
	}
	// Past its freshness, a reads again and sees everything: a's four and b's one.
	a.fresh = 0
	if got := remaining(a); got != free.ExecPerMinute-5 {
		t.Fatalf("a, read again: remaining %d, want %d", got, free.ExecPerMinute-5)
	}
}

// While a window's stream has no leader (here: none at all) admission is tried again, as the
// queue's publish is, and admits once the stream takes the count; it answered 503 at once.
func TestAdmit_RidesOutNoLeader(t *testing.T) {
	srv := natstest.RunJetStream(t)
	js := natstest.JetStream(t, srv)
	ctx := context.Background()
	tiers := limiterTiers()
	if err := streams.Ensure(ctx, js, streams.Options{Tiers: tiers}); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, schemas.RateLimitStream(schemas.TierFree, schemas.WindowMinute)); err != nil {
		t.Fatal(err)
	}
	g := &Server{limiter: NewLimiter(js), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	p := &Principal{TenantID: "acme", Tier: tiers[schemas.TierFree]}
	done := make(chan error, 1)
	go func() {
		d, err := g.admit(ctx, p)
		if err == nil && !d.Allowed {
			err = errors.New("refused")
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("admission ended while a window's stream was gone: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := streams.Ensure(ctx, js, streams.Options{Tiers: tiers}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("admission once the stream is back: %v", err)
		}
	case <-time.After(storeRetryFor):
		t.Fatal("admission never returned")
	}
}
