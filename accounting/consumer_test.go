package accounting_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/accounting/storetest"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

const wait = 20 * time.Second

// eachStore runs test against a SQLite store and, when a test database is configured, a
// PostgreSQL store.
func eachStore(t *testing.T, test func(t *testing.T, newStore func(testing.TB) accounting.Store)) {
	names := make([]string, 0, len(storetest.Factories))
	for name := range storetest.Factories {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, storetest.Factories[name])
		})
	}
}

// recordingStore wraps a Store: it counts attempts and what was inserted, and injects faults:
// failing is a database that is down (Insert and Ping fail); failuresLeft counts transient
// Insert errors; lostCommits counts inserts that commit but report an error (the reply was
// lost); poison is an execution id the database refuses while accepting others; block holds
// Insert until it is closed.
type recordingStore struct {
	accounting.Store
	failing      atomic.Bool
	failuresLeft atomic.Int64
	lostCommits  atomic.Int64
	poison       atomic.Value // string
	attempts     atomic.Int64

	mu         sync.Mutex
	inserted   int
	duplicates int
	entered    chan struct{} // receives once per Insert when block is set
	block      chan struct{}
}

func (s *recordingStore) Insert(ctx context.Context, entries []accounting.Entry) (accounting.InsertResult, error) {
	s.attempts.Add(1)
	s.mu.Lock()
	block, entered := s.block, s.entered
	s.mu.Unlock()
	if block != nil {
		entered <- struct{}{}
		<-block
	}
	if s.failing.Load() {
		return accounting.InsertResult{}, errors.New("injected failure: database down")
	}
	if s.failuresLeft.Add(-1) >= 0 {
		return accounting.InsertResult{}, errors.New("injected failure")
	}
	if p, _ := s.poison.Load().(string); p != "" {
		for _, e := range entries {
			if e.Event.Execution != nil && e.Event.Execution.ExecutionID == p {
				return accounting.InsertResult{}, errors.New("injected failure: value refused")
			}
		}
	}
	res, err := s.Store.Insert(ctx, entries)
	if err == nil {
		s.mu.Lock()
		s.inserted += res.Executions
		s.duplicates += res.Duplicates
		s.mu.Unlock()
		if s.lostCommits.Add(-1) >= 0 {
			return accounting.InsertResult{}, errors.New("injected failure: connection lost during commit")
		}
	}
	return res, err
}

func (s *recordingStore) Ping(ctx context.Context) error {
	if s.failing.Load() {
		return errors.New("injected failure: database down")
	}
	return s.Store.Ping(ctx)
}

func (s *recordingStore) counts() (inserted, duplicates int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inserted, s.duplicates
}

type env struct {
	srv   *server.Server
	nc    *nats.Conn // the test's own: the gateway's and executors' side
	js    jetstream.JetStream
	store *recordingStore
	reg   *prometheus.Registry
}

func newEnv(t *testing.T, store accounting.Store) *env {
	t.Helper()
	s := natstest.RunJetStreamRoles(t, "accounting") // the consumer may do only what deployed accounting may
	nc := natstest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: s, nc: nc, js: js, store: &recordingStore{Store: store}, reg: prometheus.NewRegistry()}
}

type running struct {
	c       *accounting.Consumer
	cancel  context.CancelFunc
	stopped chan struct{} // closed when Run has returned
	err     error
}

func (e *env) start(t *testing.T, mod func(*accounting.Config)) *running {
	t.Helper()
	cfg := accounting.Config{
		Store:      e.store,
		BatchSize:  64,
		BatchWait:  50 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registerer: e.reg,
	}
	if mod != nil {
		mod(&cfg)
	}
	// What the gateway does at start: accounting only waits for the streams.
	if err := streams.Ensure(context.Background(), e.js, streams.Options{Replicas: cfg.Replicas, Tiers: cfg.Tiers}); err != nil {
		t.Fatal(err)
	}
	c, err := accounting.New(cfg, natstest.ConnectRole(t, e.srv, "accounting"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, cancel: cancel, stopped: make(chan struct{})}
	go func() { r.err = c.Run(ctx); close(r.stopped) }()
	t.Cleanup(func() { r.stop(t) })
	natstest.CheckFor(t, wait, poll, ready(c, true))
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.stopped:
		if r.err != nil {
			t.Errorf("Run: %v", r.err)
		}
	case <-time.After(wait):
		t.Fatalf("Run did not return after cancel")
	}
}

func (e *env) publish(t *testing.T, ev schemas.Event, msgID string) {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.js.Publish(context.Background(), schemas.EventSubject(ev.Type, ev.TenantID), data, jetstream.WithMsgID(msgID))
	if err != nil {
		t.Fatalf("publish %s: %v", ev.ID, err)
	}
}

func (e *env) publishExecs(t *testing.T, execs []storetest.Exec, n int) {
	t.Helper()
	for _, x := range execs {
		ev := x.Event(n)
		e.publish(t, ev, ev.ID)
	}
}

// stored is the number of executions the store holds, by usage query.
func stored(t *testing.T, s accounting.Store) int64 {
	t.Helper()
	var n int64
	for _, tenant := range []string{"acme", "globex", "initech"} {
		resp := storetest.MustUsage(t, s, schemas.UsageRequest{TenantID: tenant, From: storetest.Day0.AddDate(0, 0, -1), To: storetest.Day0.AddDate(0, 0, 6)})
		n += resp.Total.Executions
	}
	return n
}

func (e *env) info(t *testing.T) *jetstream.ConsumerInfo {
	t.Helper()
	cons, err := e.js.Consumer(context.Background(), schemas.StreamEvents, schemas.ConsumerAccounting)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// settled reports whether every event has been delivered and acked (or terminated).
// poll is how often the tests' natstest.CheckFor looks again.
const poll = 10 * time.Millisecond

// settled checks that the accounting consumer has nothing pending, nothing awaiting an ack and
// nothing redelivered.
func (e *env) settled(t *testing.T) func() error {
	return func() error {
		info := e.info(t)
		if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
			return fmt.Errorf("not settled: %d pending, %d awaiting an ack, %d redelivered, ack floor %d",
				info.NumPending, info.NumAckPending, info.NumRedelivered, info.AckFloor.Stream)
		}
		return nil
	}
}

// ready checks that c's readiness is want.
func ready(c *accounting.Consumer, want bool) func() error {
	return func() error {
		if got := c.Ready(); got != want {
			return fmt.Errorf("consumer Ready() = %v, want %v", got, want)
		}
		return nil
	}
}

// atLeast checks that metric name has reached n.
func atLeast(t *testing.T, reg *prometheus.Registry, name string, n float64) func() error {
	return func() error {
		if v := metric(t, reg, name); v < n {
			return fmt.Errorf("%s = %v, want at least %v", name, v, n)
		}
		return nil
	}
}

// attemptsAtLeast checks that the store has been asked to insert at least n times.
func (e *env) attemptsAtLeast(n int64) func() error {
	return func() error {
		if got := e.store.attempts.Load(); got < n {
			return fmt.Errorf("%d insert attempts, want at least %d", got, n)
		}
		return nil
	}
}

// storedExactly checks that s holds n executions.
func storedExactly(t *testing.T, s accounting.Store, n int64) func() error {
	return func() error {
		if got := stored(t, s); got != n {
			return fmt.Errorf("%d executions stored, want %d", got, n)
		}
		return nil
	}
}

// metric sums a counter's or gauge's values, or a histogram's sample counts, over all labels.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func TestConsumer_StoresEachExecutionOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore func(testing.TB) accounting.Store) {
		e := newEnv(t, newStore(t))
		e.start(t, nil)
		execs := storetest.Fixture(300)
		e.publishExecs(t, execs, 0)
		// Republished with new event ids (and so new Nats-Msg-Ids): the stream keeps them, the
		// store must drop them.
		e.publishExecs(t, execs[100:150], 1)
		// Republished with the same Nats-Msg-Id: the stream's duplicate window drops them.
		e.publishExecs(t, execs[:20], 0)
		// Audit events, one of them twice under the same id but different msg ids.
		mod := schemas.Event{ID: "ev-mod-1", Type: schemas.EventModuleUploaded, Version: 1, Time: time.Now(), TenantID: "acme",
			Module: &schemas.ModuleEvent{ModuleID: "sha256:" + fmt.Sprintf("%064x", 7), Name: "a.wasm", Size: 10}}
		e.publish(t, mod, "m1")
		e.publish(t, mod, "m2")

		natstest.CheckFor(t, wait, poll, e.settled(t))
		if n := stored(t, e.store); n != 300 {
			t.Fatalf("stored %d executions, want 300", n)
		}
		storetest.CheckAllUsage(t, e.store, execs)
		if got := metric(t, e.reg, "wasmwiz_accounting_duplicates_skipped_total"); got != 51 {
			t.Errorf("duplicates skipped = %v, want 51 (50 executions, 1 event)", got)
		}
		if got := metric(t, e.reg, "wasmwiz_accounting_rows_inserted_total"); got != 301 {
			t.Errorf("rows inserted = %v, want 301", got)
		}
		if got := metric(t, e.reg, "wasmwiz_accounting_lag_seconds"); got != 352 {
			t.Errorf("lag observations = %v, want 352", got)
		}
		if metric(t, e.reg, "wasmwiz_accounting_batch_size") == 0 || metric(t, e.reg, "wasmwiz_accounting_insert_errors_total") != 0 {
			t.Errorf("batch metrics wrong")
		}
	})
}

func TestConsumer_InvalidEventsAreTerminated(t *testing.T) {
	e := newEnv(t, storetest.OpenSQLite(t))
	e.start(t, nil)
	execs := storetest.Fixture(10)
	e.publishExecs(t, execs[:5], 0)
	ctx := context.Background()
	if _, err := e.js.Publish(ctx, schemas.EventSubject(schemas.EventExecutionCompleted, "acme"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	wrongTenant := execs[5].Event(0) // acme's event on globex's subject
	data, _ := json.Marshal(wrongTenant)
	if _, err := e.js.Publish(ctx, schemas.EventSubject(wrongTenant.Type, "globex"), data); err != nil {
		t.Fatal(err)
	}
	noExec := execs[6].Event(0)
	noExec.Execution = nil
	e.publish(t, noExec, "no-exec")
	badStatus := execs[7].Event(0)
	badStatus.Execution.Status = schemas.StatusRunning
	e.publish(t, badStatus, "bad-status")
	e.publishExecs(t, execs[8:], 0)

	natstest.CheckFor(t, wait, poll, e.settled(t))
	if got := metric(t, e.reg, "wasmwiz_accounting_invalid_events_total"); got != 4 {
		t.Errorf("invalid events = %v, want 4", got)
	}
	want := append(append([]storetest.Exec{}, execs[:5]...), execs[8:]...)
	if n := stored(t, e.store); n != int64(len(want)) {
		t.Fatalf("stored %d, want %d", n, len(want))
	}
	storetest.CheckAllUsage(t, e.store, want)
}

func TestConsumer_StoreDown_RetriesWithoutAcking(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore func(testing.TB) accounting.Store) {
		e := newEnv(t, newStore(t))
		e.store.failing.Store(true)
		r := e.start(t, nil)
		execs := storetest.Fixture(120)
		e.publishExecs(t, execs, 0)

		natstest.CheckFor(t, wait, poll, e.attemptsAtLeast(4))
		natstest.CheckFor(t, wait, poll, ready(r.c, false))
		info := e.info(t)
		if info.AckFloor.Stream != 0 {
			t.Fatalf("acked up to %d while the store was failing", info.AckFloor.Stream)
		}
		if info.NumAckPending == 0 {
			t.Fatalf("no events held while the store was failing: %+v", info)
		}
		if n := stored(t, e.store); n != 0 {
			t.Fatalf("stored %d while failing", n)
		}
		if metric(t, e.reg, "wasmwiz_accounting_insert_errors_total") < 4 {
			t.Errorf("insert errors not counted")
		}

		// The database comes back, then fails twice more on the way.
		e.store.failuresLeft.Store(2)
		e.store.failing.Store(false)
		natstest.CheckFor(t, wait, poll, e.settled(t))
		if info := e.info(t); info.AckFloor.Stream != 120 {
			t.Errorf("ack floor %d, want 120", info.AckFloor.Stream)
		}
		if n := stored(t, e.store); n != 120 {
			t.Fatalf("stored %d, want 120", n)
		}
		if ins, dups := e.store.counts(); ins != 120 || dups != 0 {
			t.Errorf("inserted %d with %d duplicates, want 120 and 0", ins, dups)
		}
		storetest.CheckAllUsage(t, e.store, execs)
		natstest.CheckFor(t, wait, poll, ready(r.c, true))
	})
}

func TestConsumer_Restart_ContinuesWhereItLeftOff(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore func(testing.TB) accounting.Store) {
		e := newEnv(t, newStore(t))
		execs := storetest.Fixture(200)
		r := e.start(t, nil)
		e.publishExecs(t, execs[:80], 0)
		natstest.CheckFor(t, wait, poll, e.settled(t))
		r.stop(t)

		e.publishExecs(t, execs[80:], 0) // while no consumer runs
		if n := stored(t, e.store); n != 80 {
			t.Fatalf("stored %d while stopped, want 80", n)
		}
		e.start(t, nil)
		natstest.CheckFor(t, wait, poll, e.settled(t))
		if ins, dups := e.store.counts(); ins != 200 || dups != 0 {
			t.Errorf("inserted %d with %d duplicates, want 200 and 0 (nothing redelivered)", ins, dups)
		}
		storetest.CheckAllUsage(t, e.store, execs)
	})
}

func TestConsumer_Shutdown_CommitsBatchInFlight(t *testing.T) {
	e := newEnv(t, storetest.OpenSQLite(t))
	r := e.start(t, nil)
	block := make(chan struct{})
	e.store.mu.Lock()
	e.store.entered, e.store.block = make(chan struct{}, 1), block
	e.store.mu.Unlock()
	execs := storetest.Fixture(10)
	e.publishExecs(t, execs, 0)
	select {
	case <-e.store.entered:
	case <-time.After(wait):
		t.Fatal("no insert started")
	}
	r.cancel()
	select {
	case <-r.stopped:
		t.Fatal("Run returned while a batch was being stored")
	default:
	}
	e.store.mu.Lock()
	e.store.block = nil
	e.store.mu.Unlock()
	close(block)
	r.stop(t)
	if n := stored(t, e.store); n != 10 {
		t.Fatalf("stored %d, want 10", n)
	}
	// The acks reached the server before Run returned (flushed); the consumer applies them on a
	// queue of its own, a moment later.
	natstest.CheckFor(t, wait, poll, func() error {
		if info := e.info(t); info.AckFloor.Stream != 10 || info.NumAckPending != 0 {
			return fmt.Errorf("after shutdown: ack floor %d, %d awaiting an ack; want the 10 stored events acked", info.AckFloor.Stream, info.NumAckPending)
		}
		return nil
	})
}

func TestConsumer_Shutdown_NaksWhatItCouldNotStore(t *testing.T) {
	e := newEnv(t, storetest.OpenSQLite(t))
	e.store.failing.Store(true)
	r := e.start(t, nil)
	execs := storetest.Fixture(30)
	e.publishExecs(t, execs, 0)
	natstest.CheckFor(t, wait, poll, e.attemptsAtLeast(2))
	r.stop(t)
	if info := e.info(t); info.AckFloor.Stream != 0 {
		t.Fatalf("acked up to %d without storing", info.AckFloor.Stream)
	}
	e.store.failing.Store(false)
	e.start(t, nil)
	natstest.CheckFor(t, wait, poll, e.settled(t))
	if ins, dups := e.store.counts(); ins != 30 || dups != 0 {
		t.Errorf("inserted %d with %d duplicates, want 30 and 0", ins, dups)
	}
}

func TestConsumer_Usage(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore func(testing.TB) accounting.Store) {
		e := newEnv(t, newStore(t))
		e.start(t, nil)
		execs := storetest.Fixture(90)
		e.publishExecs(t, execs, 0)
		natstest.CheckFor(t, wait, poll, e.settled(t))

		subject := schemas.AccountingSubject(schemas.OpUsage)
		for _, by := range []string{schemas.UsageByDay, schemas.UsageByModule, schemas.UsageByKey} {
			req := schemas.UsageRequest{TenantID: "globex", From: storetest.Day0, To: storetest.Day0.AddDate(0, 0, 3), GroupBy: by}
			body, _ := json.Marshal(req)
			msg, err := e.nc.Request(subject, body, 5*time.Second)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
				t.Fatalf("error %s: %s", code, msg.Data)
			}
			var got schemas.UsageResponse
			if err := json.Unmarshal(msg.Data, &got); err != nil {
				t.Fatal(err)
			}
			want := storetest.Expect(req, execs)
			if fmt.Sprint(got.Rows, got.Total) != fmt.Sprint(want.Rows, want.Total) || !got.From.Equal(req.From) || !got.To.Equal(req.To) || got.GroupBy != by {
				t.Errorf("by %s: got %+v, want %+v", by, got, want)
			}
			if got.Total.Executions == 0 {
				t.Errorf("by %s: empty usage", by)
			}
			// The wire shape of issue 6: rows are flat objects with snake_case fields.
			var raw struct {
				GroupBy string           `json:"group_by"`
				Rows    []map[string]any `json:"rows"`
				Total   map[string]any   `json:"total"`
			}
			if err := json.Unmarshal(msg.Data, &raw); err != nil {
				t.Fatal(err)
			}
			for _, field := range []string{"key", "executions", "succeeded", "failed", "timed_out", "wall_ms", "memory_mb_ms", "bytes_in", "bytes_out"} {
				if _, ok := raw.Rows[0][field]; !ok {
					t.Errorf("row has no %q: %s", field, msg.Data)
				}
				if _, ok := raw.Total[field]; !ok && field != "key" {
					t.Errorf("total has no %q: %s", field, msg.Data)
				}
			}
			if raw.GroupBy != by {
				t.Errorf("group_by %q", raw.GroupBy)
			}
		}

		for _, tc := range []struct {
			body, code string
			errCode    schemas.Code
		}{
			{`{"tenant_id":"globex","group_by":"hour"}`, "422", schemas.CodeInvalid},
			{`{"tenant_id":"globex","from":"2026-03-02T00:00:00Z","to":"2026-03-01T00:00:00Z"}`, "422", schemas.CodeInvalid},
			{`{"group_by":"day"}`, "422", schemas.CodeInvalid},
			{`not json`, "400", schemas.CodeBadRequest},
		} {
			msg, err := e.nc.Request(subject, []byte(tc.body), 5*time.Second)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			if code := msg.Header.Get(micro.ErrorCodeHeader); code != tc.code {
				t.Errorf("%s: error code %q, want %q", tc.body, code, tc.code)
			}
			var se schemas.Error
			if err := json.Unmarshal(msg.Data, &se); err != nil || se.Code != tc.errCode || se.Message == "" || msg.Header.Get(micro.ErrorHeader) != se.Message {
				t.Errorf("%s: body %s (%v), want a schemas.Error with code %s", tc.body, msg.Data, err, tc.errCode)
			}
		}

		// Reconcile, two pages.
		var ids []string
		req := schemas.ReconcileRequest{From: storetest.Day0, To: storetest.Day0.AddDate(0, 0, 4), Limit: 50}
		for page := 0; page < 2; page++ {
			body, _ := json.Marshal(req)
			msg, err := e.nc.Request(schemas.AccountingSubject(schemas.OpReconcile), body, 5*time.Second)
			if err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			var resp schemas.ReconcileResponse
			if err := json.Unmarshal(msg.Data, &resp); err != nil || msg.Header.Get(micro.ErrorCodeHeader) != "" {
				t.Fatalf("reconcile: %s (%v)", msg.Data, err)
			}
			if page == 0 && (resp.Count != 90 || len(resp.ExecutionIDs) != 50 || resp.Next == "" || len(resp.RollupMismatches) != 0) {
				t.Errorf("first page: count %d, %d ids, next %q, mismatches %v", resp.Count, len(resp.ExecutionIDs), resp.Next, resp.RollupMismatches)
			}
			if page == 1 && (len(resp.ExecutionIDs) != 40 || resp.Next != "") {
				t.Errorf("last page: %d ids, next %q", len(resp.ExecutionIDs), resp.Next)
			}
			ids = append(ids, resp.ExecutionIDs...)
			req.After = resp.Next
		}
		for i, x := range execs {
			if i >= len(ids) || ids[i] != x.ID { // the fixture's ids are already in order
				t.Fatalf("reconcile ids differ at %d", i)
			}
		}

		// The service is discoverable as wasmwiz-accounting.
		msg, err := e.nc.Request("$SRV.PING."+accounting.ServiceName, nil, 5*time.Second)
		if err != nil {
			t.Fatalf("ping: %v", err)
		}
		var ping micro.Ping
		if err := json.Unmarshal(msg.Data, &ping); err != nil || ping.Name != accounting.ServiceName {
			t.Errorf("ping: %s (%v)", msg.Data, err)
		}
	})
}

func TestNew_Validates(t *testing.T) {
	s := natstest.RunJetStream(t)
	nc := natstest.Connect(t, s)
	if _, err := accounting.New(accounting.Config{}, nc); err == nil {
		t.Error("New without a store succeeded")
	}
	if _, err := accounting.New(accounting.Config{Store: storetest.OpenSQLite(t), BatchWait: 10 * time.Second}, nc); err == nil {
		t.Error("New with BatchWait above AckWait/4 succeeded")
	}
	if _, err := accounting.New(accounting.Config{Store: storetest.OpenSQLite(t)}, nil); err == nil {
		t.Error("New without a connection succeeded")
	}
}

func TestConsumer_CommitReplyLost_StoredOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore func(testing.TB) accounting.Store) {
		e := newEnv(t, newStore(t))
		e.store.lostCommits.Store(3)
		e.start(t, nil)
		execs := storetest.Fixture(150)
		e.publishExecs(t, execs, 0)
		natstest.CheckFor(t, wait, poll, e.settled(t))
		if ins, dups := e.store.counts(); ins != 150 || dups == 0 {
			t.Errorf("inserted %d with %d duplicates, want 150 and some (the retried commits)", ins, dups)
		}
		if n := stored(t, e.store); n != 150 {
			t.Fatalf("stored %d, want 150", n)
		}
		storetest.CheckAllUsage(t, e.store, execs)
	})
}

func TestConsumer_RejectedEvent_DoesNotBlockTheStream(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore func(testing.TB) accounting.Store) {
		e := newEnv(t, newStore(t))
		execs := storetest.Fixture(100)
		e.store.poison.Store(execs[37].ID)
		e.start(t, func(c *accounting.Config) { c.RejectedRetry = 300 * time.Millisecond })
		e.publishExecs(t, execs, 0)

		natstest.CheckFor(t, wait, poll, storedExactly(t, e.store, 99))
		natstest.CheckFor(t, wait, poll, atLeast(t, e.reg, "wasmwiz_accounting_rejected_events_total", 2))
		if info := e.info(t); info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0 {
			t.Fatalf("the refused event was acked: %+v", info)
		}
		e.store.poison.Store("")
		natstest.CheckFor(t, wait, poll, e.settled(t))
		if ins, _ := e.store.counts(); ins != 100 {
			t.Errorf("inserted %d, want 100", ins)
		}
		storetest.CheckAllUsage(t, e.store, execs)
	})
}

func TestConsumer_Replicas_ShareTheWork(t *testing.T) {
	eachStore(t, func(t *testing.T, newStore func(testing.TB) accounting.Store) {
		e := newEnv(t, newStore(t))
		for range 3 {
			e.start(t, func(c *accounting.Config) { c.BatchSize = 16 })
		}
		execs := storetest.Fixture(400)
		e.publishExecs(t, execs, 0)
		e.publishExecs(t, execs[:100], 1)
		natstest.CheckFor(t, wait, poll, e.settled(t))
		if ins, dups := e.store.counts(); ins != 400 || dups != 100 {
			t.Errorf("inserted %d with %d duplicates, want 400 and 100", ins, dups)
		}
		storetest.CheckAllUsage(t, e.store, execs)
	})
}
