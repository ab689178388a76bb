package accounting_test

import (
	"context"
	"testing"

	"github.com/wasmwiz/wasmwiz/accounting/postgres"
	"github.com/wasmwiz/wasmwiz/accounting/storetest"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
)

// TestConsumer_PostgresOutage cuts the connection to PostgreSQL while events arrive: nothing
// is acked while the database is unreachable, and everything is stored exactly once after it
// comes back.
func TestConsumer_PostgresOutage(t *testing.T) {
	t.Parallel()
	dbURL, p := storetest.NewProxiedSchema(t)
	store, err := postgres.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })

	e := newEnv(t, store)
	r := e.start(t, nil)
	execs := storetest.Fixture(300)
	e.publishExecs(t, execs[:100], 0)
	natstest.CheckFor(t, wait, poll, e.settled(t))

	p.SetDown(true)
	floor := e.info(t).AckFloor.Stream
	e.publishExecs(t, execs[100:], 0)
	natstest.CheckFor(t, wait, poll, atLeast(t, e.reg, "wasmwiz_accounting_insert_errors_total", 3))
	natstest.CheckFor(t, wait, poll, ready(r.c, false))
	if got := e.info(t).AckFloor.Stream; got != floor {
		t.Fatalf("ack floor moved from %d to %d while the database was down", floor, got)
	}
	if got := metric(t, e.reg, "wasmwiz_accounting_rejected_events_total"); got != 0 {
		t.Errorf("%v events rejected during an outage; they should wait for the database", got)
	}

	p.SetDown(false)
	natstest.CheckFor(t, wait, poll, e.settled(t))
	natstest.CheckFor(t, wait, poll, ready(r.c, true))
	if n := stored(t, store); n != 300 {
		t.Fatalf("stored %d, want 300", n)
	}
	storetest.CheckAllUsage(t, store, execs)
}
