package streams_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// The events stream's duplicate window covers a redelivered execution's second publish of its
// event with room to spare: that comes within the AckWait of the request's tier.
func TestEventsDuplicateWindow(t *testing.T) {
	for _, tier := range schemas.DefaultTiers() {
		if w := streams.AckWait(tier); streams.EventsDuplicateWindow < 5*w {
			t.Errorf("tier %s: AckWait %v, events duplicate window %v: want at least 5 × AckWait", tier.Name, w, streams.EventsDuplicateWindow)
		}
	}
	srv := natstest.RunJetStream(t)
	js := natstest.JetStream(t, srv)
	ctx := context.Background()
	if err := streams.Ensure(ctx, js, streams.Options{}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Duplicates; got != streams.EventsDuplicateWindow {
		t.Errorf("events stream duplicate window %v, want %v", got, streams.EventsDuplicateWindow)
	}
}

// The results TTL set at bootstrap stays when roles ensure the streams without one.
func TestEnsure_ResultsTTL(t *testing.T) {
	srv := natstest.RunJetStream(t)
	js := natstest.JetStream(t, srv)
	ctx := context.Background()
	ttl := func() time.Duration {
		kv, err := js.KeyValue(ctx, schemas.BucketResults)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.TTL()
	}
	for _, step := range []struct {
		set, want time.Duration
	}{{0, streams.DefaultResultsTTL}, {time.Hour, time.Hour}, {0, time.Hour}, {2 * time.Hour, 2 * time.Hour}} {
		if err := streams.Ensure(ctx, js, streams.Options{ResultsTTL: step.set}); err != nil {
			t.Fatal(err)
		}
		if got := ttl(); got != step.want {
			t.Errorf("ensure with ResultsTTL %v: bucket TTL %v, want %v", step.set, got, step.want)
		}
	}
}

// Wait creates nothing: it says what is missing until Ensure (the gateway's) has made
// everything, then returns; and it gives up when its context ends.
func TestWait(t *testing.T) {
	srv := natstest.RunJetStream(t)
	js := natstest.JetStream(t, srv)
	ctx := context.Background()
	all := streams.ExecutorLookups(streams.TierNames(schemas.DefaultTiers()))

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	var told []string
	if err := streams.Wait(short, js, all, func(m string) { told = append(told, m) }); err == nil {
		t.Fatal("Wait returned with no streams")
	}
	if len(told) != 1 || !strings.Contains(told[0], "stream "+schemas.StreamEvents) {
		t.Errorf("Wait said %q, want once that stream %s is missing", told, schemas.StreamEvents)
	}
	if names := js.StreamNames(ctx); names.Err() == nil {
		for n := range names.Name() {
			t.Errorf("Wait made stream %s", n)
		}
	}

	done := make(chan error, 1)
	go func() { done <- streams.Wait(ctx, js, all, nil) }()
	select {
	case err := <-done:
		t.Fatalf("Wait returned before Ensure: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := streams.Ensure(ctx, js, streams.Options{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not return after Ensure")
	}
}
