package test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/accounting/storetest"
	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// An execution lost with its executor (kill -9 mid-run) runs again on the other executor and
// finishes within 10 s of the kill plus its own run time: the requests' AckWait is 5 s and a
// live node reports progress every second (it was the tier's wall time + 30 s: a minute for pro).
func TestFaults_ExecutorKilledMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("kills an executor process")
	}
	srv := natstest.RunJetStream(t)
	s := startSplit(t, srv.ClientURL(), 1, 2)
	key := s.newTenant(t, "faults", schemas.TierPro)
	loop := s.upload(t, key, "loop", fixtures.Wasm("loop"))
	const run = 3 * time.Second // the guest spins until its deadline

	r, e := s.execute(t, key, schemas.ExecutionRequest{ModuleID: loop.ID, TimeoutMS: run.Milliseconds(), Async: true})
	if r.Status != http.StatusAccepted {
		t.Fatalf("execute: %d %s", r.Status, r.Body)
	}
	kv, err := natstest.JetStream(t, srv).KeyValue(context.Background(), schemas.BucketResults)
	if err != nil {
		t.Fatal(err)
	}
	stored := func() *schemas.Result { return storedResult(kv, e.ID) }
	var runningOn string
	eventually(t, 30*time.Second, "the execution never ran", func() bool {
		if res := stored(); res != nil && res.Status == schemas.StatusRunning {
			runningOn = res.NodeID
		}
		return runningOn != ""
	})
	var victim *role
	for i, ex := range s.executors {
		if runningOn == []string{"ex0", "ex1"}[i] {
			victim = ex
		}
	}
	if victim == nil {
		t.Fatalf("running on %q, not one of this test's executors", runningOn)
	}
	if err := syscall.Kill(victim.p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-victim.p.done

	var final *schemas.Result
	eventually(t, 60*time.Second, "the execution never finished after its executor was killed", func() bool {
		final = stored()
		return final != nil && final.Status.Final()
	})
	after := final.FinishedAt.Sub(killed)
	t.Logf("killed %s mid-run; the execution finished on %s %v after the kill (status %s, run %.0f ms)",
		runningOn, final.NodeID, after.Round(time.Millisecond), final.Status, final.DurationMS)
	if final.NodeID == runningOn {
		t.Errorf("finished on the killed node %s", runningOn)
	}
	if bound := 10*time.Second + run; after > bound {
		t.Errorf("finished %v after the kill, want within %v (10 s + its run time)", after, bound)
	}
	if got := s.run(t, key, schemas.ExecutionRequest{ModuleID: loop.ID, TimeoutMS: 10}); !got.Status.Final() {
		t.Errorf("after the kill: %+v", got)
	}
}

// Accounting started while PostgreSQL is unreachable stays up, live and not ready, retrying
// with backoff (it exited with status 1 after ~14 ms), and becomes ready once the database
// answers. The database is "unreachable" behind a port nobody listens on until the test puts
// a TCP relay to the real PostgreSQL there.
func TestFaults_AccountingWaitsForPostgres(t *testing.T) {
	dbURL := storetest.NewSchema(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	realAddr, relayAddr := u.Host, freeAddr(t)
	u.Host = relayAddr
	srv := natstest.RunJetStream(t)
	// The streams, as a gateway makes them (accounting only waits for them).
	if err := streams.Ensure(context.Background(), natstest.JetStream(t, srv), streams.Options{}); err != nil {
		t.Fatal(err)
	}
	opsAddr := freeAddr(t)
	ac := start(t, []string{"WASMWIZ_NATS_URL=" + srv.ClientURL(), "DATABASE_URL=" + u.String(), "WASMWIZ_METRICS_ADDR=" + opsAddr}, "accounting")
	get := func(path string) int {
		resp, err := http.Get("http://" + opsAddr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	eventually(t, 60*time.Second, "accounting did not retry the database twice while serving live 200 / ready 503", func() bool {
		if !ac.alive() {
			t.Fatalf("accounting exited while the database was unreachable: %v\n%s", ac.err, lastLines(ac.output(), 20))
		}
		return strings.Count(ac.output(), "accounting store not available; retrying") >= 2 &&
			get("/health/live") == http.StatusOK && get("/health/ready") == http.StatusServiceUnavailable
	})
	if f := scrape(t, "http://"+opsAddr); f["wasmwiz_database_up"] == nil || f.sum("wasmwiz_database_up") != 0 {
		t.Errorf("wasmwiz_database_up while the database is unreachable: want exported as 0")
	}

	relay := newTCPRelay(t, relayAddr, realAddr)
	defer relay.cut()
	eventually(t, 60*time.Second, "accounting never became ready once the database answered", func() bool {
		if !ac.alive() {
			t.Fatalf("accounting exited: %v\n%s", ac.err, lastLines(ac.output(), 20))
		}
		return get("/health/ready") == http.StatusOK
	})
	if up := scrape(t, "http://"+opsAddr).sum("wasmwiz_database_up"); up != 1 {
		t.Errorf("wasmwiz_database_up %v once the database answers, want 1", up)
	}
}

// An execution whose event cannot be published on any delivery ran and would never be billed.
// It ends in the dead letters with its result stored; reconcile lists it as unpublished (exit
// 1); `wasmwiz dlq replay` puts it back with its execution id, the executor answers it from its
// result without running it again and publishes the event; then reconcile is clean (exit 0).
func TestFaults_UnpublishedEventIsVisibleAndReplayed(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for five deliveries (about 10 s)")
	}
	srv := natstest.RunJetStream(t)
	s := startSplit(t, srv.ClientURL(), 1, 1)
	key := s.newTenant(t, "faults", schemas.TierBasic)
	hello := s.upload(t, key, "hello", fixtures.Wasm("hello"))
	ctx := context.Background()
	js := natstest.JetStream(t, srv)
	if err := js.DeleteStream(ctx, schemas.StreamEvents); err != nil {
		t.Fatal(err)
	}
	e := s.run(t, key, schemas.ExecutionRequest{ModuleID: hello.ID})
	if e.Status != schemas.StatusSucceeded {
		t.Fatalf("execution: %+v", e)
	}
	dlq, err := js.Stream(ctx, schemas.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the request never reached the dead letters", func() bool {
		info, err := dlq.Info(ctx)
		return err == nil && info.State.Msgs == 1
	})
	// The dead-letter path tries the event once more, in vain while the stream is gone.
	eventually(t, 30*time.Second, "the executor did not try the dead letter's event", func() bool {
		return strings.Contains(s.executors[0].p.output(), "event of a dead-lettered execution not published")
	})
	cli := func(args ...string) (int, string) {
		out, err := exec.Command(bin(), append(args, "--nats-url", srv.ClientURL())...).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatalf("wasmwiz %v: %v", args, err)
		}
		return 0, string(out)
	}
	if code, out := cli("dlq", "list"); code != 0 || !strings.Contains(out, e.ID) || !strings.Contains(out, "1 dead letters") {
		t.Fatalf("dlq list: exit %d\n%s", code, out)
	}
	if code, out := cli("dlq", "show", "1"); code != 0 || !strings.Contains(out, `"execution_id": "`+e.ID+`"`) ||
		!strings.Contains(out, "publish event") || !strings.Contains(out, `"tier": "basic"`) {
		t.Fatalf("dlq show 1: exit %d\n%s", code, out)
	}
	if code, out := cli("dlq", "purge"); code != 2 {
		t.Fatalf("dlq purge without sequences or --all: exit %d, want 2\n%s", code, out)
	}

	// The events stream comes back (accounting, restarted, makes its consumer again).
	if err := streams.Ensure(ctx, js, streams.Options{}); err != nil {
		t.Fatal(err)
	}
	sigterm(t, s.accounting)
	s.accounting.restart(t)
	waitReady(t, s.accounting.opsURL, s.accounting.p)
	today, tomorrow := time.Now().UTC().Format(time.DateOnly), time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	reconcile := func() (int, string) {
		return cli("accounting", "reconcile", "--from", today, "--to", tomorrow, "--settle", "0s")
	}
	if code, out := reconcile(); code != 1 || !strings.Contains(out, "unpublished "+e.ID) {
		t.Fatalf("reconcile with a result and no event: exit %d, want 1 listing it\n%s", code, out)
	}

	if code, out := cli("dlq", "replay", "--all"); code != 0 || !strings.Contains(out, "replayed") {
		t.Fatalf("dlq replay: exit %d\n%s", code, out)
	}
	var out string
	eventually(t, 60*time.Second, "reconcile never came clean after the replay", func() bool {
		var code int
		code, out = reconcile()
		return code == 0
	})
	if !strings.Contains(out, "stored       1 usage rows") {
		t.Errorf("reconcile after the replay:\n%s", out)
	}
	if info, err := dlq.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Errorf("dead letters after the replay: %v %+v", err, info)
	}
	if ran := scrape(t, s.executors[0].opsURL).sum("wasmwiz_executions_total"); ran != 1 {
		t.Errorf("the guest ran %v times, want once (the replay is answered from its result)", ran)
	}
	if dl := scrape(t, s.executors[0].opsURL).sum("wasmwiz_dead_letters_total"); dl != 1 {
		t.Errorf("wasmwiz_dead_letters_total %v, want 1", dl)
	}
}

// tcpRelay forwards connections from its address to another: a dependency the test can make
// unreachable (cut: the listener and every relayed connection closed, so connecting is refused
// and connections in use break) and reachable again (open, on the same address), or partition
// (blackhole: connections stay open but nothing crosses, in either direction, and a new
// connection is taken but goes nowhere, as when a network drops packets; heal lets them through
// again).
type tcpRelay struct {
	addr, target string
	mu           sync.Mutex
	gate         *sync.Cond // signalled when hole clears
	hole         bool
	ln           net.Listener
	conns        map[net.Conn]bool
}

// newTCPRelay relays addr to target, open.
func newTCPRelay(t testing.TB, addr, target string) *tcpRelay {
	t.Helper()
	r := &tcpRelay{addr: addr, target: target, conns: map[net.Conn]bool{}}
	r.gate = sync.NewCond(&r.mu)
	if err := r.open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.cut)
	return r
}

func (r *tcpRelay) open() error {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.relay(c)
		}
	}()
	return nil
}

// pass waits while the relay is partitioned; false once it was cut or c closed meanwhile.
func (r *tcpRelay) pass(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.hole {
		r.gate.Wait()
	}
	return r.ln != nil && (c == nil || r.conns[c])
}

func (r *tcpRelay) relay(c net.Conn) {
	r.mu.Lock()
	r.conns[c] = true
	r.mu.Unlock()
	if !r.pass(c) {
		c.Close()
		return
	}
	d, err := net.Dial("tcp", r.target)
	if err != nil {
		c.Close()
		return
	}
	r.mu.Lock()
	if r.ln == nil || !r.conns[c] { // cut meanwhile
		r.mu.Unlock()
		c.Close()
		d.Close()
		return
	}
	r.conns[d] = true
	r.mu.Unlock()
	go func() { r.copy(d, c); d.Close() }()
	r.copy(c, d)
	c.Close()
	r.mu.Lock()
	delete(r.conns, c)
	delete(r.conns, d)
	r.mu.Unlock()
}

// copy forwards src to dst; a partition holds what was read until it heals.
func (r *tcpRelay) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !r.pass(src) {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut closes the listener and every relayed connection.
func (r *tcpRelay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
		delete(r.conns, c)
	}
	r.hole = false
	r.gate.Broadcast()
}

// blackhole partitions the relay: nothing crosses until heal.
func (r *tcpRelay) blackhole() {
	r.mu.Lock()
	r.hole = true
	r.mu.Unlock()
}

// heal ends a partition: what was held and what comes next crosses again.
func (r *tcpRelay) heal() {
	r.mu.Lock()
	r.hole = false
	r.gate.Broadcast()
	r.mu.Unlock()
}
