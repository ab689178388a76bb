package executor

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// countingHandler counts the records of each level and message prefix it passes on.
type countingHandler struct {
	slog.Handler
	mu     *sync.Mutex
	counts map[string]int // "LEVEL message"
}

func newCountingLogger(tb testing.TB) (*slog.Logger, func(level slog.Level, prefix string) int) {
	h := &countingHandler{Handler: testLogger(tb).Handler(), mu: &sync.Mutex{}, counts: map[string]int{}}
	count := func(level slog.Level, prefix string) int {
		h.mu.Lock()
		defer h.mu.Unlock()
		n := 0
		for k, c := range h.counts {
			if strings.HasPrefix(k, level.String()+" "+prefix) {
				n += c
			}
		}
		return n
	}
	return slog.New(h), count
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.counts[r.Level.String()+" "+r.Message]++
	h.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h *countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithAttrs(attrs), mu: h.mu, counts: h.counts}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithGroup(name), mu: h.mu, counts: h.counts}
}

// A consumer without a leader answers pulls with "no responders" at once, as a deleted one
// does. The node must back off on every such failure (it used to back off only when Fetch
// itself failed, and spun on failed batches: ~110,000 WARN lines in 10 s on a cluster), log
// the failure once rather than per pull, and fetch again when the consumer is back.
func TestNode_Fetch_BacksOffWhileConsumerIsGone(t *testing.T) {
	logger, count := newCountingLogger(t)
	e := startEnv(t, func(c *Config) { c.Logger = logger })
	ctx := context.Background()
	failures := func() int { return int(testutil.ToFloat64(e.node.m.fetchFailures.WithLabelValues("free"))) }

	if err := e.js.DeleteConsumer(ctx, schemas.ExecStream("free"), schemas.ExecConsumer("free")); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 10*time.Second, poll, state(func() bool { return failures() >= 1 }, func() string { return "no failed pull counted" }))
	start, from := time.Now(), failures()

	// The waits after failures in a row are at least 50, 100, 200, 400 and 800 ms (half of
	// 100 ms doubling; see jitter), so six more failures take at least 1.55 s.
	const more = 6
	natstest.CheckFor(t, 30*time.Second, poll, state(func() bool { return failures() >= from+more }, func() string { return "pulls stopped failing" }))
	if took, least := time.Since(start), 1550*time.Millisecond; took < least {
		t.Errorf("%d failed pulls in %v: the node does not back off (at least %v)", failures()-from, took, least)
	}
	if got := count(slog.LevelWarn, "fetch"); got != 1 {
		t.Errorf("%d WARN lines about fetching for %d failed pulls, want 1 (rate-limited)", got, failures())
	}

	// The consumer comes back (as a new leader would): the node pulls from it again.
	if err := streams.Ensure(ctx, e.js, streams.Options{Tiers: testTiers()}); err != nil {
		t.Fatal(err)
	}
	mod := e.putModule(fixtures.Wasm("echo"))
	req := newRequest("free", mod)
	req.Stdin = []byte("back")
	if res := e.wait(e.publish(req, ""), fetchBackoffMax+30*time.Second); res.Status != schemas.StatusSucceeded || string(res.Stdout) != "back" {
		t.Fatalf("after the consumer came back: %+v", res)
	}
	natstest.CheckFor(t, 5*time.Second, poll, state(func() bool { return count(slog.LevelInfo, "fetching again") == 1 }, func() string { return "no line saying the node fetches again" }))
}
