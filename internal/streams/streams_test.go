package streams_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

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
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
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
