package accounting_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/accounting/postgres"
	"github.com/wasmwiz/wasmwiz/accounting/storetest"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
)

// proxy is a TCP proxy that can cut every connection and refuse new ones, which to a client
// looks like a database server going down and coming back.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setDown(true) })
	go p.serve()
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[u] = true, true
		p.mu.Unlock()
		go func() { io.Copy(u, c); u.Close(); c.Close() }()
		go func() { io.Copy(c, u); u.Close(); c.Close() }()
	}
}

func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// TestConsumer_PostgresOutage cuts the connection to PostgreSQL while events arrive: nothing
// is acked while the database is unreachable, and everything is stored exactly once after it
// comes back.
func TestConsumer_PostgresOutage(t *testing.T) {
	t.Parallel()
	dbURL := storetest.NewSchema(t)
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		t.Skipf("cannot proxy database url %q", dbURL)
	}
	p := newProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	store, err := postgres.Open(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })

	e := newEnv(t, store)
	r := e.start(t, nil)
	execs := storetest.Fixture(300)
	e.publishExecs(t, execs[:100], 0)
	natstest.Eventually(t, wait, func() bool { return e.settled(t) }, "first part not stored")

	p.setDown(true)
	floor := e.info(t).AckFloor.Stream
	e.publishExecs(t, execs[100:], 0)
	natstest.Eventually(t, wait, func() bool { return metric(t, e.reg, "wasmwiz_accounting_insert_errors_total") >= 3 }, "no failed inserts while down")
	natstest.Eventually(t, wait, func() bool { return !r.c.Ready() }, "ready while the database is down")
	if got := e.info(t).AckFloor.Stream; got != floor {
		t.Fatalf("ack floor moved from %d to %d while the database was down", floor, got)
	}
	if got := metric(t, e.reg, "wasmwiz_accounting_rejected_events_total"); got != 0 {
		t.Errorf("%v events rejected during an outage; they should wait for the database", got)
	}

	p.setDown(false)
	natstest.Eventually(t, wait, func() bool { return e.settled(t) }, "not stored after the database came back: %+v", e.info(t))
	natstest.Eventually(t, wait, r.c.Ready, "not ready after the database came back")
	if n := stored(t, store); n != 300 {
		t.Fatalf("stored %d, want 300", n)
	}
	checkAllUsage(t, store, execs)
}

// A replica that starts while PostgreSQL is down waits for it.
func TestOpenWithRetry_WaitsForPostgres(t *testing.T) {
	t.Parallel()
	dbURL := storetest.NewSchema(t)
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		t.Skipf("cannot proxy database url %q", dbURL)
	}
	p := newProxy(t, u.Host)
	p.setDown(true)
	u.Host = p.ln.Addr().String()
	var warned atomic.Int64
	log := slog.New(countingHandler{&warned})
	type result struct {
		s   accounting.Store
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := accounting.OpenWithRetry(context.Background(), u.String(), "", log)
		done <- result{s, err}
	}()
	natstest.Eventually(t, wait, func() bool { return warned.Load() >= 2 }, "no retries while the database is down")
	select {
	case r := <-done:
		t.Fatalf("OpenWithRetry returned while the database was down: %v", r.err)
	default:
	}
	p.setDown(false)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.s.Close()
		if err := r.s.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("OpenWithRetry did not return after the database came back")
	}
}

type countingHandler struct{ n *atomic.Int64 }

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }
