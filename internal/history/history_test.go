package history_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/history"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

const (
	modA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	modB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

type fixture struct {
	js      jetstream.JetStream
	lister  *history.Lister
	results jetstream.KeyValue
}

func setup(t *testing.T) *fixture {
	t.Helper()
	srv := natstest.RunJetStream(t)
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := streams.Ensure(ctx, js, streams.Options{}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, schemas.StreamHistory)
	if err != nil {
		t.Fatal(err)
	}
	results, err := js.KeyValue(ctx, schemas.BucketResults)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{js: js, results: results, lister: &history.Lister{NC: nc, Stream: st, Results: results}}
}

func id(tenant string, i int) string { return fmt.Sprintf("ex_%s%022d", tenant[:2], i) }

// record publishes the queued record of execution i of tenant and, unless status is queued, its
// final record (as the gateway and the executor do).
func (f *fixture) record(t *testing.T, tenant string, i int, created time.Time, module string, status schemas.Status) {
	t.Helper()
	ctx := context.Background()
	s := &schemas.ExecutionSummary{ID: id(tenant, i), Status: schemas.StatusQueued, ModuleID: module, ModuleName: "m", CreatedAt: created}
	if err := history.Publish(ctx, f.js, tenant, s); err != nil {
		t.Fatal(err)
	}
	if status == schemas.StatusQueued {
		return
	}
	fin := created.Add(time.Second)
	r := &schemas.Result{ID: s.ID, TenantID: tenant, ModuleID: module, Status: status, ExitCode: 0, CreatedAt: created, FinishedAt: &fin, DurationMS: 3}
	if status != schemas.StatusSucceeded {
		r.ExitCode = 1
	}
	if err := history.Publish(ctx, f.js, tenant, schemas.SummaryOf(r, "")); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) all(t *testing.T, tenant string, q history.Query) []schemas.ExecutionSummary {
	t.Helper()
	var out []schemas.ExecutionSummary
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		l, err := f.lister.List(context.Background(), tenant, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Executions) > q.Limit {
			t.Fatalf("page of %d, limit %d", len(l.Executions), q.Limit)
		}
		out = append(out, l.Executions...)
		if l.NextCursor == "" {
			return out
		}
		c, err := schemas.ParseHistoryCursor(l.NextCursor)
		if err != nil {
			t.Fatal(err)
		}
		q.Cursor = &c
	}
}

func ids(list []schemas.ExecutionSummary) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.ID)
	}
	return out
}

// Executions over several minutes, two tenants: every page is newest first, pages neither
// repeat nor skip, filters select exactly, and a tenant never sees another's.
func TestList_PagesFiltersTenants(t *testing.T) {
	f := setup(t)
	base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Minute)
	statuses := []schemas.Status{schemas.StatusSucceeded, schemas.StatusFailed, schemas.StatusQueued, schemas.StatusTimedOut}
	type want struct {
		id      string
		created time.Time
		module  string
		status  schemas.Status
	}
	var acme []want
	for i := range 37 {
		// Spread over 7 minutes, several in the same minute and two at the same instant.
		created := base.Add(time.Duration(i/6)*time.Minute + time.Duration(i%6)*7*time.Second)
		if i == 20 {
			created = acme[19].created
		}
		mod := modA
		if i%3 == 0 {
			mod = modB
		}
		st := statuses[i%len(statuses)]
		f.record(t, "acme", i, created, mod, st)
		acme = append(acme, want{id("acme", i), created, mod, st})
		f.record(t, "other", i, created.Add(time.Second), modA, schemas.StatusSucceeded)
	}
	slices.SortFunc(acme, func(a, b want) int {
		if c := b.created.Compare(a.created); c != 0 {
			return c
		}
		if a.id > b.id {
			return -1
		}
		return 1
	})
	expect := func(keep func(want) bool) []string {
		var out []string
		for _, w := range acme {
			if keep(w) {
				out = append(out, w.id)
			}
		}
		return out
	}
	every := func(want) bool { return true }
	for _, limit := range []int{1, 4, 6, 100} {
		got := f.all(t, "acme", history.Query{Limit: limit})
		if !slices.Equal(ids(got), expect(every)) {
			t.Fatalf("limit %d: pages gave\n%v\nwant\n%v", limit, ids(got), expect(every))
		}
	}
	got := f.all(t, "acme", history.Query{Limit: 5})
	for i, s := range got {
		if s.Status != acme[i].status || s.ModuleID != acme[i].module || !s.CreatedAt.Equal(acme[i].created) || s.ModuleName != "m" {
			t.Fatalf("%s: %+v, want %+v", s.ID, s, acme[i])
		}
		if s.Status.Final() != (s.ExitCode != nil) {
			t.Errorf("%s: status %s with exit code %v", s.ID, s.Status, s.ExitCode)
		}
	}
	for _, s := range f.all(t, "other", history.Query{Limit: 10}) {
		if s.ID[:5] != "ex_ot" {
			t.Fatalf("tenant other lists %s", s.ID)
		}
	}
	if n := len(f.all(t, "nobody", history.Query{Limit: 10})); n != 0 {
		t.Errorf("a tenant without executions lists %d", n)
	}

	from, to := acme[len(acme)-1].created.Add(time.Minute+10*time.Second), acme[0].created.Add(-time.Minute)
	cases := []struct {
		name string
		q    history.Query
		keep func(want) bool
	}{
		{"status failed,timed_out", history.Query{Statuses: []schemas.Status{schemas.StatusFailed, schemas.StatusTimedOut}},
			func(w want) bool { return w.status == schemas.StatusFailed || w.status == schemas.StatusTimedOut }},
		{"status queued", history.Query{Statuses: []schemas.Status{schemas.StatusQueued}}, func(w want) bool { return w.status == schemas.StatusQueued }},
		{"module", history.Query{ModuleID: modB}, func(w want) bool { return w.module == modB }},
		{"from to", history.Query{From: from, To: to}, func(w want) bool { return !w.created.Before(from) && w.created.Before(to) }},
		{"all at once", history.Query{ModuleID: modA, Statuses: []schemas.Status{schemas.StatusSucceeded}, From: from},
			func(w want) bool {
				return w.module == modA && w.status == schemas.StatusSucceeded && !w.created.Before(from)
			}},
	}
	for _, c := range cases {
		c.q.Limit = 3
		if got, want := ids(f.all(t, "acme", c.q)), expect(c.keep); !slices.Equal(got, want) || len(want) == 0 {
			t.Errorf("%s: got %v, want %v", c.name, got, want)
		}
	}

	// A scan budget smaller than the history ends pages early with a cursor that goes on: the
	// walk still gives everything once.
	if got := f.all(t, "acme", history.Query{Limit: 100, ScanBudget: 5}); !slices.Equal(ids(got), expect(every)) {
		t.Errorf("scan budget 5: %v", ids(got))
	}
}

// An execution whose history has not recorded an end is shown as its result says now; one whose
// result is gone stays as recorded.
func TestList_RefreshesFromResults(t *testing.T) {
	f := setup(t)
	created := time.Now().UTC().Add(-time.Minute)
	f.record(t, "acme", 1, created, modA, schemas.StatusQueued)
	f.record(t, "acme", 2, created.Add(time.Second), modA, schemas.StatusQueued)
	started := created.Add(time.Second)
	b, _ := json.Marshal(schemas.Result{ID: id("acme", 1), TenantID: "acme", ModuleID: modA, Status: schemas.StatusRunning, ExitCode: -1, CreatedAt: created, StartedAt: &started})
	if _, err := f.results.Put(context.Background(), id("acme", 1), b); err != nil {
		t.Fatal(err)
	}
	l, err := f.lister.List(context.Background(), "acme", history.Query{Limit: 10, Statuses: []schemas.Status{schemas.StatusRunning}})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Executions) != 1 || l.Executions[0].ID != id("acme", 1) || l.Executions[0].ModuleName != "m" || l.Executions[0].StartedAt == nil {
		t.Fatalf("running filter: %+v", l.Executions)
	}
	l, err = f.lister.List(context.Background(), "acme", history.Query{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(l.Executions); !slices.Equal(got, []string{id("acme", 2), id("acme", 1)}) || l.Executions[0].Status != schemas.StatusQueued {
		t.Fatalf("list: %+v", l.Executions)
	}
}

func TestParseQuery(t *testing.T) {
	ok := []schemas.ExecutionListRequest{
		{}, {Limit: 100, Status: "failed,timed_out", ModuleID: modA, From: "2026-12-01T00:00:00Z", To: "2026-12-02T00:00:00.5+01:00"},
		{Cursor: schemas.HistoryCursor{CreatedAt: time.Now(), ID: "ex_0123456789abcdefghjkmnpqrs"}.Encode()},
	}
	for _, r := range ok {
		if _, err := history.ParseQuery(&r); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	bad := []schemas.ExecutionListRequest{
		{Limit: -1}, {Limit: 101}, {Status: "done"}, {Status: "failed,,x"}, {ModuleID: "abc"}, {From: "yesterday"},
		{From: "2026-12-02T00:00:00Z", To: "2026-12-01T00:00:00Z"}, {Cursor: "not a cursor"},
	}
	for _, r := range bad {
		_, err := history.ParseQuery(&r)
		var qe *history.QueryError
		if err == nil || !errorsAs(err, &qe) {
			t.Errorf("%+v: accepted (%v)", r, err)
		}
	}
	q, _ := history.ParseQuery(&schemas.ExecutionListRequest{})
	if q.Limit != 20 {
		t.Errorf("default limit %d", q.Limit)
	}
}

func errorsAs(err error, target **history.QueryError) bool {
	e, ok := err.(*history.QueryError)
	*target = e
	return ok
}

// BenchmarkList reads a page of 20 of a tenant holding 12,000
// executions over 60 minutes (200 a minute), beside another tenant as busy: one stream-info
// request and one batched direct get per minute read.
func BenchmarkList(b *testing.B) {
	for _, tc := range []struct {
		name string
		q    history.Query
	}{
		{"newest20", history.Query{Limit: 20}},
		{"failed20", history.Query{Limit: 20, Statuses: []schemas.Status{schemas.StatusFailed}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := benchSetup(b)
			b.ResetTimer()
			for b.Loop() {
				l, err := f.lister.List(context.Background(), "acme", tc.q)
				if err != nil || len(l.Executions) != 20 {
					b.Fatalf("%d executions, %v", len(l.Executions), err)
				}
			}
		})
	}
}

func benchSetup(b *testing.B) *fixture {
	b.Helper()
	srv := natstest.RunJetStream(b)
	nc := natstest.Connect(b, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := streams.Ensure(ctx, js, streams.Options{}); err != nil {
		b.Fatal(err)
	}
	st, _ := js.Stream(ctx, schemas.StreamHistory)
	results, _ := js.KeyValue(ctx, schemas.BucketResults)
	base := time.Now().UTC().Add(-2 * time.Hour)
	for _, tenant := range []string{"acme", "other"} {
		for i := range 12_000 {
			created := base.Add(time.Duration(i) * 300 * time.Millisecond)
			st := schemas.StatusSucceeded
			if i%10 == 0 {
				st = schemas.StatusFailed
			}
			code := 0
			s := &schemas.ExecutionSummary{ID: id(tenant, i), Status: st, ExitCode: &code, ModuleID: modA, CreatedAt: created}
			m, _ := history.Msg(tenant, s)
			if _, err := js.PublishMsgAsync(m); err != nil {
				b.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishing the history took over a minute")
	}
	return &fixture{js: js, results: results, lister: &history.Lister{NC: nc, Stream: st, Results: results}}
}

// Records stored in batches (BatchMsgs: a node ending several executions of a tenant at once)
// list like records stored one by one, beside them in the same minutes, and a minute whose
// stream count is of messages, not records, is read whole.
func TestList_Batches(t *testing.T) {
	f := setup(t)
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Minute)
	var want []string
	for m := range 3 { // three minutes: a batch of 5, then one record alone, in each
		created := base.Add(time.Duration(m) * time.Minute)
		var batch []*schemas.ExecutionSummary
		for i := range 5 {
			s := &schemas.ExecutionSummary{ID: id("acme", m*10+i), Status: schemas.StatusSucceeded, ModuleID: modA, CreatedAt: created.Add(time.Duration(i) * time.Second)}
			batch = append(batch, s)
			want = append(want, s.ID)
		}
		f.publishBatch(t, schemas.HistorySubject("acme", created), batch)
		f.record(t, "acme", m*10+9, created.Add(30*time.Second), modA, schemas.StatusSucceeded)
		want = append(want, id("acme", m*10+9))
	}
	got := ids(f.all(t, "acme", history.Query{Limit: 4}))
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("listed %v, want %v", got, want)
	}
	// A record stored twice (once alone, once in a batch: a redelivery) is listed once.
	s := &schemas.ExecutionSummary{ID: id("acme", 0), Status: schemas.StatusSucceeded, ModuleID: modA, CreatedAt: base}
	f.publishBatch(t, schemas.HistorySubject("acme", base), []*schemas.ExecutionSummary{s})
	if got := f.all(t, "acme", history.Query{Limit: 100}); len(got) != len(want) {
		t.Errorf("after a copy: %d executions listed, want %d", len(got), len(want))
	}
}

// publishBatch stores recs as a process storing them together does (history.BatchMsgs).
func (f *fixture) publishBatch(t *testing.T, subject string, recs []*schemas.ExecutionSummary) {
	t.Helper()
	msgs, err := history.BatchMsgs(subject, recs)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if _, err := f.js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}
