package test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"

	_ "modernc.org/sqlite" // to lose a row on purpose
)

// sseEvent is one Server-Sent Events message.
type sseEvent struct {
	ID    uint64
	Event string
	Data  schemas.Event
}

// sseStream reads GET /v1/events until the test ends.
type sseStream struct {
	events chan sseEvent
	errc   chan error
}

// openEvents opens the event stream with query q (and headers) and waits until the gateway has
// sent the opening comment, that is until its consumer exists.
func (s *system) openEvents(t *testing.T, key string, q url.Values, headers ...string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v1/events?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+key)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET /v1/events?%s: %d %s", q.Encode(), resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(first, ":") {
		t.Fatalf("event stream starts with %q, %v", first, err)
	}
	st := &sseStream{events: make(chan sseEvent, 1000), errc: make(chan error, 1)}
	go func() {
		defer resp.Body.Close()
		var ev sseEvent
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				st.errc <- err
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if ev.Event != "" {
					st.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "id: "):
				ev.ID, _ = strconv.ParseUint(line[4:], 10, 64)
			case strings.HasPrefix(line, "event: "):
				ev.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(line[6:]), &ev.Data); err != nil {
					st.errc <- err
					return
				}
			}
		}
	}()
	return st
}

// until reads events until one satisfies stop, and returns all read (stop's included).
func (st *sseStream) until(t *testing.T, stop func(sseEvent) bool) []sseEvent {
	t.Helper()
	var got []sseEvent
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev := <-st.events:
			got = append(got, ev)
			if stop(ev) {
				return got
			}
		case err := <-st.errc:
			t.Fatalf("event stream ended after %d events: %v", len(got), err)
		case <-timeout:
			t.Fatalf("no matching event within 60s; got %d events", len(got))
		}
	}
}

// adminKey creates a key through the admin API.
func (s *system) adminKey(t *testing.T, req schemas.CreateKeyRequest) schemas.CreatedKey {
	t.Helper()
	b, _ := json.Marshal(req)
	r := s.do(t, http.MethodPost, "/v1/admin/keys", s.AdminKey, "application/json", b)
	if r.Status != 201 {
		t.Fatalf("create key: %d %s", r.Status, r.Body)
	}
	var k schemas.CreatedKey
	r.decode(t, &k)
	return k
}

func isExecution(id string) func(sseEvent) bool {
	return func(ev sseEvent) bool { return ev.Data.Execution != nil && ev.Data.Execution.ExecutionID == id }
}

// TestUsageEvents_Roles drives usage and events through the real processes: usage is 503
// while no accounting runs, then counts each execution once; each tenant's event stream holds
// its own events only and resumes from a sequence; the CLI's events tail and accounting
// reconcile read the same stream.
func TestUsageEvents_Roles(t *testing.T) {
	srv := natstest.RunJetStream(t)
	dir := t.TempDir()
	common := []string{"WASMWIZ_NATS_URL=" + srv.ClientURL()}
	s := startCore(t, common, dir)
	s.NATSURL = srv.ClientURL()
	acme := s.newTenant(t, "acme", "pro")
	beta := s.newTenant(t, "beta", "pro")

	// No accounting yet: usage is unavailable, over REST and NATS.
	r := s.do(t, http.MethodGet, "/v1/usage", acme, "", nil)
	if code, _ := r.problem(t); r.Status != 503 || code != "unavailable" {
		t.Fatalf("usage without accounting: %d %s", r.Status, r.Body)
	}
	nc := natstest.Connect(t, srv)
	if status, data := natsCall(t, nc, schemas.OpUsage, acme, nil); status != "503" {
		t.Fatalf("NATS usage without accounting: %s %s", status, data)
	}
	for _, bad := range []struct {
		key, query string
		status     int
	}{
		{acme, "group_by=week", 422},
		{acme, "from=yesterday", 422},
		{acme, "from=2026-01-02&to=2026-01-01", 503}, // checked by accounting, which is not there yet
		{acme, "tenant=beta", 403},
		{s.AdminKey, "tenant=nobody", 404},
	} {
		if r := s.do(t, http.MethodGet, "/v1/usage?"+bad.query, bad.key, "", nil); r.Status != bad.status {
			t.Errorf("GET /v1/usage?%s: %d %s, want %d", bad.query, r.Status, r.Body, bad.status)
		}
	}
	for _, bad := range []struct {
		query  string
		status int
	}{
		{"since_seq=1&since=2026-01-01T00:00:00Z", 422},
		{"type=execution.exploded", 422},
		{"since=last-tuesday", 422},
		{"tenant=beta", 403},
	} {
		if r := s.do(t, http.MethodGet, "/v1/events?"+bad.query, acme, "", nil); r.Status != bad.status {
			t.Errorf("GET /v1/events?%s: %d %s, want %d", bad.query, r.Status, r.Body, bad.status)
		}
	}
	if r := s.do(t, http.MethodGet, "/v1/events", "", "", nil); r.Status != 401 {
		t.Errorf("GET /v1/events without a key: %d", r.Status)
	}

	// A key without the usage:read scope reads neither; a revoked key's stream ends.
	runOnly := s.adminKey(t, schemas.CreateKeyRequest{TenantID: "acme", Scopes: []string{schemas.ScopeExecute}})
	for _, path := range []string{"/v1/usage", "/v1/events"} {
		if r := s.do(t, http.MethodGet, path, runOnly.Key, "", nil); r.Status != 403 {
			t.Errorf("GET %s with an execute-only key: %d %s", path, r.Status, r.Body)
		}
	}
	doomed := s.adminKey(t, schemas.CreateKeyRequest{TenantID: "acme"})
	doomedEvents := s.openEvents(t, doomed.Key, nil)
	if r := s.do(t, http.MethodDelete, "/v1/admin/keys/"+doomed.Record.ID, s.AdminKey, "", nil); r.Status != 204 {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	for ended := false; !ended; { // it may still see its own key.revoked event, then it ends
		select {
		case <-doomedEvents.errc:
			ended = true
		case ev := <-doomedEvents.events:
			if ev.Event != schemas.EventKeyRevoked {
				t.Fatalf("a revoked key's stream delivered %+v", ev)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the event stream of a revoked key is still open after 30s")
		}
	}

	acmeEvents := s.openEvents(t, acme, nil)
	betaEvents := s.openEvents(t, beta, nil)
	acmeExecOnly := s.openEvents(t, acme, url.Values{"type": {schemas.EventExecutionCompleted}})
	adminOnBeta := s.openEvents(t, s.AdminKey, url.Values{"tenant": {"beta"}})

	hello := fixtures.Wasm("hello")
	ma := s.upload(t, acme, "hello", hello)
	var acmeIDs []string
	for range 3 {
		acmeIDs = append(acmeIDs, s.run(t, acme, schemas.ExecutionRequest{ModuleID: ma.ID}).ID)
	}
	mb := s.upload(t, beta, "hello", hello)
	var betaIDs []string
	for range 2 {
		betaIDs = append(betaIDs, s.run(t, beta, schemas.ExecutionRequest{ModuleID: mb.ID, Stdin: "x"}).ID)
	}
	// The last one, after beta's events are in the stream.
	acmeIDs = append(acmeIDs, s.run(t, acme, schemas.ExecutionRequest{ModuleID: ma.ID}).ID)

	got := acmeEvents.until(t, isExecution(acmeIDs[3]))
	var types []string
	for _, ev := range got {
		if ev.Data.TenantID != "acme" {
			t.Fatalf("acme's stream carries an event of tenant %q: %+v", ev.Data.TenantID, ev)
		}
		if ev.Event != ev.Data.Type {
			t.Errorf("SSE event %q carries type %q", ev.Event, ev.Data.Type)
		}
		types = append(types, ev.Event)
	}
	want := "module.uploaded execution.completed execution.completed execution.completed execution.completed"
	if strings.Join(types, " ") != want {
		t.Fatalf("acme's events: %v, want %s", types, want)
	}
	for i, ev := range got[1:] {
		if ev.Data.Execution.ExecutionID != acmeIDs[i] {
			t.Errorf("acme event %d is execution %s, want %s", i, ev.Data.Execution.ExecutionID, acmeIDs[i])
		}
	}
	for _, st := range []*sseStream{betaEvents, adminOnBeta} {
		for _, ev := range st.until(t, isExecution(betaIDs[1])) {
			if ev.Data.TenantID != "beta" {
				t.Fatalf("beta's stream carries an event of tenant %q", ev.Data.TenantID)
			}
		}
	}
	for _, ev := range acmeExecOnly.until(t, isExecution(acmeIDs[3])) {
		if ev.Event != schemas.EventExecutionCompleted || ev.Data.TenantID != "acme" {
			t.Fatalf("type-filtered stream carries %s of %s", ev.Event, ev.Data.TenantID)
		}
	}

	// Resuming: from a sequence, and from Last-Event-ID (which wins over since_seq).
	second := got[2]
	resumed := s.openEvents(t, acme, url.Values{"since_seq": {strconv.FormatUint(second.ID, 10)}})
	if r := resumed.until(t, func(sseEvent) bool { return true }); r[0].ID != second.ID || r[0].Data.ID != second.Data.ID {
		t.Errorf("since_seq=%d starts with %d %s", second.ID, r[0].ID, r[0].Data.ID)
	}
	resumed = s.openEvents(t, acme, url.Values{"since_seq": {"1"}}, "Last-Event-ID", strconv.FormatUint(second.ID, 10))
	if r := resumed.until(t, func(sseEvent) bool { return true }); r[0].ID != got[3].ID {
		t.Errorf("Last-Event-ID %d resumes at %d, want %d", second.ID, r[0].ID, got[3].ID)
	}
	resumed = s.openEvents(t, acme, url.Values{"since": {got[0].Data.Time.Format(time.RFC3339Nano)}})
	if r := resumed.until(t, func(sseEvent) bool { return true }); r[0].ID != got[0].ID {
		t.Errorf("since resumes at %d, want %d", r[0].ID, got[0].ID)
	}

	// Accounting comes up, reads the stream from the start and answers.
	ac := start(t, append(common, "WASMWIZ_SQLITE_PATH="+filepath.Join(dir, "acct.db"), "DATABASE_URL=", "WASMWIZ_METRICS_ADDR="+freeAddr(t)), "accounting")
	var u schemas.UsageResponse
	natstest.CheckFor(t, 60*time.Second, 10*time.Millisecond, func() error {
		if !ac.alive() {
			t.Fatalf("accounting exited: %v\n%s", ac.err, ac.output())
		}
		r := s.do(t, http.MethodGet, "/v1/usage?group_by=module", acme, "", nil)
		if r.Status != 200 {
			return fmt.Errorf("acme's usage: %d %s", r.Status, r.Body)
		}
		r.decode(t, &u)
		if u.Total.Executions != 4 {
			return fmt.Errorf("acme's usage: %d executions, want 4", u.Total.Executions)
		}
		return nil
	})
	if len(u.Rows) != 1 || u.Rows[0].Key != ma.ID || u.Total.Succeeded != 4 || u.Total.BytesOut != 4*int64(len("hello, world\n")) {
		t.Errorf("acme's usage by module: %+v", u)
	}
	natstest.CheckFor(t, 60*time.Second, 10*time.Millisecond, func() error {
		r := s.do(t, http.MethodGet, "/v1/usage?tenant=beta&group_by=key", s.AdminKey, "", nil)
		if r.Status != 200 {
			return fmt.Errorf("beta's usage (asked by an admin): %d %s", r.Status, r.Body)
		}
		r.decode(t, &u)
		if u.Total.Executions != 2 {
			return fmt.Errorf("beta's usage (asked by an admin): %d executions, want 2", u.Total.Executions)
		}
		return nil
	})
	if u.GroupBy != "key" || len(u.Rows) != 1 || u.Total.BytesIn != 2 {
		t.Errorf("beta's usage by key: %+v", u)
	}
	body, _ := json.Marshal(schemas.UsageRequest{GroupBy: "day"})
	status, data := natsCall(t, nc, schemas.OpUsage, beta, body)
	if status != "200" || json.Unmarshal(data, &u) != nil || u.Total.Executions != 2 || len(u.Rows) != 1 || u.Rows[0].Key != time.Now().UTC().Format(time.DateOnly) {
		t.Errorf("NATS usage: %s %s", status, data)
	}
	if r := s.do(t, http.MethodGet, "/v1/usage?from=2026-01-02&to=2026-01-01", acme, "", nil); r.Status != 422 {
		t.Errorf("usage with from after to: %d %s", r.Status, r.Body)
	}
	cli := exec.Command(bin(), "usage", "--url", s.URL, "--group-by", "module", "--json")
	cli.Env = append(cli.Environ(), "WASMWIZ_KEY="+acme)
	if out, err := cli.Output(); err != nil || json.Unmarshal(out, &u) != nil || u.Total.Executions != 4 || u.GroupBy != "module" {
		t.Errorf("wasmwiz usage --json: %v\n%s", err, out)
	}
	cli = exec.Command(bin(), "usage", "--url", s.URL, "--from", "2026-01-02", "--to", "2026-01-01")
	cli.Env = append(cli.Environ(), "WASMWIZ_KEY="+acme)
	if out, err := cli.CombinedOutput(); err == nil || !strings.Contains(string(out), "422 invalid") {
		t.Errorf("wasmwiz usage with from after to: %v\n%s", err, out)
	}

	// The CLI: a snapshot of beta's events, reconcile over today, and a live tail.
	out, err := exec.Command(bin(), "events", "tail", "--nats-url", srv.ClientURL(), "--tenant", "beta", "--follow=false").Output()
	if err != nil {
		t.Fatalf("events tail: %v", err)
	}
	lines := scanLines(string(out))
	if len(lines) != 5 { // tenant.created, key.created, module.uploaded, 2 × execution.completed
		t.Fatalf("events tail --tenant beta printed %d lines, want 5:\n%s", len(lines), out)
	}
	for _, l := range lines {
		var ev struct {
			StreamSeq uint64 `json:"stream_seq"`
			schemas.Event
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.TenantID != "beta" || ev.StreamSeq == 0 {
			t.Errorf("events tail line %s: %v", l, err)
		}
	}
	today := time.Now().UTC().Format(time.DateOnly)
	tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	rec := exec.Command(bin(), "accounting", "reconcile", "--nats-url", srv.ClientURL(), "--from", today, "--to", tomorrow)
	out, err = rec.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "missing      0\n") || !strings.Contains(string(out), "duplicates   0\n") ||
		!strings.Contains(string(out), "events       6 execution events, 6 distinct executions") || !strings.Contains(string(out), "stored       6 usage rows") {
		t.Errorf("reconcile: %v\n%s", err, out)
	}

	// Reconcile notices a lost row: delete one behind accounting's back.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "acct.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if res, err := db.Exec(`DELETE FROM executions WHERE execution_id = ?`, betaIDs[0]); err != nil {
		t.Fatal(err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("deleted %d rows", n)
	}
	out, err = exec.Command(bin(), "accounting", "reconcile", "--nats-url", srv.ClientURL(), "--from", today, "--to", tomorrow).CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 || !strings.Contains(string(out), "missing      1\n") ||
		!strings.Contains(string(out), "  missing "+betaIDs[0]) || !strings.Contains(string(out), "rollup       1 mismatches") {
		t.Errorf("reconcile after a lost row: %v\n%s", err, out)
	}

	// A tenant holds at most 32 streams on a gateway; closing one frees its place.
	gamma := s.newTenant(t, "gamma", "basic")
	openRaw := func() (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+gamma)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, cancel
	}
	var cancels []context.CancelFunc
	for i := range 32 {
		resp, cancel := openRaw()
		if resp.StatusCode != 200 {
			t.Fatalf("event stream %d: %d", i+1, resp.StatusCode)
		}
		cancels = append(cancels, cancel)
	}
	if resp, _ := openRaw(); resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("event stream 33: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	cancels[0]()
	natstest.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		resp, cancel := openRaw()
		defer cancel()
		if resp.StatusCode != 200 {
			return fmt.Errorf("a closed event stream did not free its place: %d", resp.StatusCode)
		}
		return nil
	})

	tail := start(t, common, "events", "tail", "--tenant", "acme", "--type", "execution.*")
	// The tail starts with new events; run executions until one shows up (the first may
	// precede the tail's consumer).
	var last string
	natstest.CheckFor(t, 60*time.Second, 10*time.Millisecond, func() error {
		if last != "" && strings.Contains(tail.output(), last) {
			return nil
		}
		last = s.run(t, acme, schemas.ExecutionRequest{ModuleID: ma.ID}).ID
		return fmt.Errorf("events tail has not printed execution %s:\n%s", last, lastLines(tail.output(), 5))
	})
	if strings.Contains(tail.output(), `"tenant_id":"beta"`) || strings.Contains(tail.output(), "module.uploaded") {
		t.Errorf("events tail --tenant acme --type execution.* printed:\n%s", tail.output())
	}
	tail.stop(t)
	if tail.err != nil {
		t.Errorf("events tail did not exit cleanly on SIGTERM: %v", tail.err)
	}
}
