package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// drainLoad is a client load spread over several gateways. Every logical request carries an
// Idempotency-Key and is retried through the next gateway after a network error, as a client
// of a rolling deployment should; an answer of 200 or 202 means the execution was accepted.
type drainLoad struct {
	gateways []string
	key      string
	reqs     []schemas.ExecutionRequest

	mu        sync.Mutex
	accepted  map[string]schemas.Status // execution id -> status in the answer
	sent      atomic.Int64
	retries   atomic.Int64
	refused   map[int]int // status -> count, for answers other than 200/202
	stop      chan struct{}
	wg        sync.WaitGroup
	next      atomic.Int64
	clientErr atomic.Value
}

func (l *drainLoad) run(clients int) {
	for c := range clients {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				l.submit(fmt.Sprintf("drain-%d-%d", c, i), l.reqs[i%len(l.reqs)])
			}
		})
	}
}

func (l *drainLoad) submit(idemKey string, req schemas.ExecutionRequest) {
	body, _ := json.Marshal(req)
	l.sent.Add(1)
	for attempt := 0; attempt < 200; attempt++ {
		if attempt > 0 {
			l.retries.Add(1)
			time.Sleep(20 * time.Millisecond) // back-off between retries of a client request, not a wait in the test
		}
		url := l.gateways[int(l.next.Add(1))%len(l.gateways)]
		hreq, _ := http.NewRequest(http.MethodPost, url+"/v1/executions", bytes.NewReader(body))
		hreq.Header.Set("Authorization", "Bearer "+l.key)
		hreq.Header.Set("Content-Type", "application/json")
		hreq.Header.Set("Idempotency-Key", idemKey)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		resp, err := http.DefaultClient.Do(hreq.WithContext(ctx))
		if err != nil {
			cancel()
			continue // gateway down or draining: the same key through the next one
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		switch resp.StatusCode {
		case 200, 202:
			var e schemas.Execution
			if err := json.Unmarshal(b, &e); err != nil || e.ID == "" {
				l.clientErr.Store(fmt.Sprintf("%d with body %s", resp.StatusCode, b))
				return
			}
			l.mu.Lock()
			l.accepted[e.ID] = e.Status
			l.mu.Unlock()
			return
		case 503:
			continue // e.g. a gateway whose NATS connection is closing
		default:
			l.mu.Lock()
			l.refused[resp.StatusCode]++
			l.mu.Unlock()
			return
		}
	}
	l.clientErr.Store("a request found no gateway in 200 attempts")
}

func (l *drainLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

// sigterm stops a role with SIGTERM and checks that it reports not ready from then on and exits 0.
// "From then on" is from the moment the role says it drains (every role logs "draining" once it
// has stopped reporting ready): a probe sent after that line was written must not get a 200.
// How soon after the signal that happens is the scheduler's business on a loaded machine, so it
// is bounded only generously (drainNotice).
func sigterm(t *testing.T, r *role) {
	t.Helper()
	before := len(r.p.output())
	if err := r.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	notReady := false
	var drainingSeen time.Time // when this loop first saw the "draining" line
	const drainNotice = 30 * time.Second
	for r.p.alive() {
		draining := strings.Contains(r.p.output()[before:], "draining")
		if draining && drainingSeen.IsZero() {
			drainingSeen = time.Now()
		}
		if !draining && time.Since(start) > drainNotice {
			t.Fatalf("%s did not say it drains within %v of SIGTERM\n%s", r.name, drainNotice, lastLines(r.p.output(), 20))
		}
		if resp, err := http.Get(r.opsURL + "/health/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 && draining {
				t.Errorf("%s %s reports ready %v after SIGTERM, after it said it drains", r.name, r.opsURL, time.Since(start))
			}
			if resp.StatusCode == 503 {
				notReady = true
			}
			if resp, err := http.Get(r.opsURL + "/health/live"); err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 && r.p.alive() {
					t.Errorf("%s: /health/live %d while draining", r.name, resp.StatusCode)
				}
			}
		}
		select {
		case <-r.p.done:
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("%s did not exit within 60s of SIGTERM", r.name)
		}
	}
	// An executor's ops endpoint stays up while it drains and answers 503 to readiness (and 200
	// to liveness). A gateway's health is on its API listener, which closes at once. An executor
	// with nothing in flight drains in a few milliseconds, between two probes (20 ms apart): the
	// 503 is required of one that drained for longer than a few probes.
	if drained := time.Since(drainingSeen); r.name == "executor" && !notReady && !drainingSeen.IsZero() && drained > 100*time.Millisecond {
		t.Errorf("executor never answered 503 on /health/ready while draining (%v)", drained.Round(time.Millisecond))
	}
	if r.p.err != nil {
		t.Errorf("%s exited with %v after SIGTERM, want 0\n%s", r.name, r.p.err, lastLines(r.p.output(), 20))
	}
	finishedWhileDraining := 0
	if out := r.p.output(); strings.Contains(out, "draining") {
		finishedWhileDraining = strings.Count(out[strings.LastIndex(out, "draining"):], "execution finished")
	}
	t.Logf("%s drained and exited 0 in %v (executions finished while draining: %d)", r.name, time.Since(start).Round(time.Millisecond), finishedWhileDraining)
}

// TestOps_RollingRestart restarts two executors and then two gateways, one at a time, with
// SIGTERM, under a steady load of synchronous and asynchronous executions, and proves that
// every execution a gateway accepted (200 or 202) reaches a final status.
func TestOps_RollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("rolling restart in -short mode")
	}
	srv := natstest.RunJetStream(t)
	s := startSplit(t, srv.ClientURL(), 2, 2)
	key := s.newTenant(t, "load", schemas.TierUnlimited)
	hello := s.upload(t, key, "hello", fixtures.Wasm("hello"))
	loop := s.upload(t, key, "loop", fixtures.Wasm("loop"))

	l := &drainLoad{
		key:      key,
		accepted: map[string]schemas.Status{},
		refused:  map[int]int{},
		stop:     make(chan struct{}),
		reqs: []schemas.ExecutionRequest{
			{ModuleID: hello.ID},
			{ModuleID: loop.ID, TimeoutMS: 150, Async: true}, // holds a worker for 150ms
			{ModuleID: hello.ID, Async: true},
			{ModuleID: loop.ID, TimeoutMS: 150},
		},
	}
	for _, g := range s.gateways {
		l.gateways = append(l.gateways, g.opsURL)
	}
	l.run(6)
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(l.stop)
			l.wg.Wait()
		}
	}
	defer stopLoad()

	waitAccepted := func(n int) {
		eventually(t, 60*time.Second, fmt.Sprintf("%d executions accepted", n), func() bool { return l.count() >= n })
	}
	waitAccepted(20)
	for _, r := range append(append([]*role{}, s.executors...), s.gateways...) {
		before := l.count()
		sigterm(t, r)
		r.restart(t)
		waitReady(t, r.opsURL, r.p)
		waitAccepted(before + 10) // load goes on through the restarted process's peers and itself
	}
	stopLoad()
	if v := l.clientErr.Load(); v != nil {
		t.Fatalf("client: %v", v)
	}

	// Every accepted execution reaches a final status.
	final := map[schemas.Status]int{}
	ids := sortedKeys(l.accepted)
	for _, id := range ids {
		st := l.accepted[id]
		if !st.Final() {
			st = poll(t, s.system, key, id).Status
		}
		final[st]++
	}
	completed := 0
	for _, n := range final {
		completed += n
	}
	t.Logf("requests %d (retries through another gateway %d), accepted %d, completed %d %v, refused %v",
		l.sent.Load(), l.retries.Load(), len(ids), completed, final, l.refused)
	if completed != len(ids) {
		t.Errorf("accepted %d, completed %d", len(ids), completed)
	}
	if len(l.refused) > 0 {
		t.Errorf("answers other than 200/202/503: %v", l.refused)
	}
	if final[schemas.StatusSucceeded] == 0 || final[schemas.StatusTimedOut] == 0 {
		t.Errorf("load did not run as designed: %v", final)
	}
}
