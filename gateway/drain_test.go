package gateway

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
)

// A draining gateway keeps serving for DrainDelay with /health/ready at 503, then stops.
func TestGateway_DrainDelay(t *testing.T) {
	srv := natstest.RunJetStream(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Listener: ln, DrainDelay: 2 * time.Second, DrainTimeout: 5 * time.Second}, natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	url := "http://" + ln.Addr().String() + "/health/ready"
	natstest.CheckFor(t, 10*time.Second, poll, state(func() bool {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil // no executor here, so not ready; but it answers
	}, func() string { return "gateway never answered" }))
	cancel()
	natstest.CheckFor(t, time.Second, poll, state(func() bool { return g.draining.Load() }, func() string { return "not draining" }))
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("during the drain delay the gateway must still answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("ready while draining: %d", resp.StatusCode)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the drain")
	}
}
