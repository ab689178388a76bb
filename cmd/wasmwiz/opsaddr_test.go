package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Two executors on one host: the second finds the default ops address taken and serves on a
// free port, logging where; an address set by hand that is taken stays an error.
func TestServeOps_DefaultAddressTaken(t *testing.T) {
	// Take the default address, unless something on this host has it already.
	if ln, err := net.Listen("tcp", defaultExecutorOpsAddr); err == nil {
		t.Cleanup(func() { ln.Close() })
	}
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := serveOps(ctx, defaultExecutorOpsAddr, prometheus.NewRegistry(), func() bool { return true }, log); err != nil {
		t.Fatalf("default address taken: %v", err)
	}
	var addr string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m["msg"] == "ops endpoint listening" {
			addr, _ = m["addr"].(string)
		}
	}
	if addr == "" || addr == defaultExecutorOpsAddr || !strings.Contains(logs.String(), `"default_addr":"`+defaultExecutorOpsAddr+`"`) {
		t.Fatalf("no line naming the free port taken instead of %s:\n%s", defaultExecutorOpsAddr, logs.String())
	}
	resp, err := http.Get("http://" + addr + "/health/live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/health/live on %s: %s", addr, resp.Status)
	}

	// An address chosen by hand is never moved.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if err := serveOps(ctx, taken.Addr().String(), prometheus.NewRegistry(), func() bool { return true }, log); err == nil {
		t.Fatalf("serving on the taken address %s chosen by hand: no error", taken.Addr())
	}
}
