package history

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// The history records of one tenant's minute that come while a message of it is on its way go
// together in the next message: 1 + 1 messages for 1 + 20 records here, each record's Wait
// ending once its own message is stored, and every record listed. A record alone goes at once.
func TestBatches_TenantMinuteTogether(t *testing.T) {
	s, js := historyServer(t)
	ctx := context.Background()
	st, err := js.Stream(ctx, schemas.StreamHistory)
	if err != nil {
		t.Fatal(err)
	}
	stored := func() uint64 {
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	created := time.Now().UTC().Truncate(time.Minute)
	rec := func(i int) *schemas.ExecutionSummary {
		return &schemas.ExecutionSummary{ID: fmt.Sprintf("ex_%026d", i), Status: schemas.StatusSucceeded, CreatedAt: created.Add(time.Duration(i) * time.Millisecond)}
	}
	var h Batches

	// Alone: published at once.
	if err := h.Record(js, "acme", rec(0)).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if n := stored(); n != 1 {
		t.Fatalf("%d messages for one record, want 1", n)
	}

	// A message of the subject on its way (held here): the next 20 records wait, then go in one.
	subject := schemas.HistorySubject("acme", created)
	hold := &queue{tenant: "acme"}
	h.mu.Lock()
	h.subjects[subject] = hold
	h.mu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 1; i <= 20; i++ {
		p := h.Record(js, "acme", rec(i))
		wg.Go(func() { errs <- p.Wait(ctx) })
	}
	if n := stored(); n != 1 {
		t.Fatalf("%d messages while one is on its way, want the records to wait", n)
	}
	go h.publish(js, subject, hold) // the message on its way is stored: the waiting go
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := stored(); n != 2 {
		t.Errorf("%d messages for 21 records, want 2", n)
	}
	h.mu.Lock()
	left := len(h.subjects)
	h.mu.Unlock()
	if left != 0 {
		t.Errorf("%d subjects left busy", left)
	}

	if n := listed(t, s, "acme"); n != 21 {
		t.Errorf("%d executions listed, want 21", n)
	}
}

// Records that come together past maxRecordsBytes go in several messages, none over it (a
// tenant's long error texts or module names could otherwise make one message bigger than the
// server takes), and all are listed.
func TestBatches_SplitByBytes(t *testing.T) {
	s, js := historyServer(t)
	ctx := context.Background()
	created := time.Now().UTC().Truncate(time.Minute)
	var recs []*schemas.ExecutionSummary
	for i := range 100 {
		recs = append(recs, &schemas.ExecutionSummary{ID: fmt.Sprintf("ex_%026d", i), Status: schemas.StatusFailed,
			Error: strings.Repeat("x", 4000), CreatedAt: created})
	}
	subject := schemas.HistorySubject("acme", created)
	if err := publishRecords(js, "acme", subject, recs); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, schemas.StreamHistory)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if least := uint64(100 * 4000 / maxRecordsBytes); info.State.Msgs <= least || info.State.Msgs >= 100 {
		t.Errorf("%d messages for 100 records of 4 KB, want a few over %d", info.State.Msgs, least)
	}
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Data) > maxRecordsBytes {
			t.Errorf("message %d holds %d bytes, over %d", seq, len(m.Data), maxRecordsBytes)
		}
	}
	if n := listed(t, s, "acme"); n != 100 {
		t.Errorf("%d executions listed, want 100", n)
	}
}

// listed is how many executions of tenant the first page of 100 lists.
func listed(t *testing.T, s *server.Server, tenant string) int {
	t.Helper()
	ctx := context.Background()
	js := natstest.JetStream(t, s)
	st, err := js.Stream(ctx, schemas.StreamHistory)
	if err != nil {
		t.Fatal(err)
	}
	results, err := js.KeyValue(ctx, schemas.BucketResults)
	if err != nil {
		t.Fatal(err)
	}
	l := &Lister{NC: natstest.Connect(t, s), Stream: st, Results: results}
	list, err := l.List(ctx, tenant, Query{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return len(list.Executions)
}

// historyServer is an embedded server with WasmWiz's streams, and JetStream on it.
func historyServer(t *testing.T) (*server.Server, jetstream.JetStream) {
	t.Helper()
	s := natstest.RunJetStream(t)
	js := natstest.JetStream(t, s)
	if err := streams.Ensure(context.Background(), js, streams.Options{}); err != nil {
		t.Fatal(err)
	}
	return s, js
}
