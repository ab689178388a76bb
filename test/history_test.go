package test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// listREST walks every page of GET /v1/executions?query with key.
func listREST(t *testing.T, s *system, key, query string) []schemas.ExecutionSummary {
	t.Helper()
	var all []schemas.ExecutionSummary
	cursor := ""
	for page := 0; ; page++ {
		q, _ := url.ParseQuery(query)
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		r := s.do(t, http.MethodGet, "/v1/executions?"+q.Encode(), key, "", nil)
		if r.Status != 200 {
			t.Fatalf("list %s: %d %s", q.Encode(), r.Status, r.Body)
		}
		var l schemas.ExecutionList
		r.decode(t, &l)
		all = append(all, l.Executions...)
		if l.NextCursor == "" {
			return all
		}
		if page > 100 {
			t.Fatal("pagination does not end")
		}
		cursor = l.NextCursor
	}
}

// listNATS walks every page of executions.list over direct NATS.
func listNATS(t *testing.T, nc *nats.Conn, key string, req schemas.ExecutionListRequest) []schemas.ExecutionSummary {
	t.Helper()
	var all []schemas.ExecutionSummary
	for page := 0; ; page++ {
		body, _ := json.Marshal(req)
		status, data := natsCall(t, nc, schemas.OpExecutionsList, key, body)
		if status != "200" {
			t.Fatalf("executions.list: %s %s", status, data)
		}
		var l schemas.ExecutionList
		if err := json.Unmarshal(data, &l); err != nil {
			t.Fatal(err)
		}
		all = append(all, l.Executions...)
		if l.NextCursor == "" {
			return all
		}
		if page > 100 {
			t.Fatal("pagination does not end")
		}
		req.Cursor = l.NextCursor
	}
}

func summaryIDs(l []schemas.ExecutionSummary) []string {
	var out []string
	for _, s := range l {
		out = append(out, s.ID)
	}
	return out
}

// The execution history through the real binary: newest first over REST and NATS alike, pages
// that neither repeat nor skip, filters, another tenant's executions never listed, the CLI's
// table, and all of it again after a restart.
func TestDev_ExecutionHistory(t *testing.T) {
	dir := t.TempDir()
	s := startDev(t, dir)
	key := s.DevKey
	echo := s.upload(t, key, "echo", fixtures.Wasm("echo"))
	exit7 := s.upload(t, key, "exit7", fixtures.Wasm("exit7"))
	other := s.newTenant(t, "hist-other", "basic")
	otherEcho := s.upload(t, other, "echo", fixtures.Wasm("echo"))

	var mine []string // newest first
	for i := range 7 {
		mod := echo.ID
		if i%3 == 2 {
			mod = exit7.ID
		}
		e := s.run(t, key, schemas.ExecutionRequest{ModuleID: mod, Stdin: "h"})
		mine = slices.Insert(mine, 0, e.ID)
		s.run(t, other, schemas.ExecutionRequest{ModuleID: otherEcho.ID, Stdin: "o"})
	}
	_, async := s.execute(t, key, schemas.ExecutionRequest{ModuleID: echo.ID, Stdin: "later", Async: true})
	poll(t, s, key, async.ID)
	mine = slices.Insert(mine, 0, async.ID)

	check := func(when string) {
		t.Helper()
		got := listREST(t, s, key, "limit=3")
		if !slices.Equal(summaryIDs(got), mine) {
			t.Fatalf("%s: REST pages of 3 list\n%v\nwant\n%v", when, summaryIDs(got), mine)
		}
		for _, e := range got {
			if !e.Status.Final() || e.ExitCode == nil || e.ModuleName == "" || e.FinishedAt == nil {
				t.Errorf("%s: %+v is not a finished execution with its module's name", when, e)
			}
			if (e.ModuleID == exit7.ID) != (e.Status == schemas.StatusFailed && *e.ExitCode == 7) {
				t.Errorf("%s: %+v", when, e)
			}
		}
		failed := listREST(t, s, key, "status=failed")
		if len(failed) != 2 || failed[0].ModuleID != exit7.ID {
			t.Errorf("%s: status=failed lists %+v", when, failed)
		}
		if byModule := listREST(t, s, key, "module_id="+url.QueryEscape(exit7.ID)); !slices.Equal(summaryIDs(byModule), summaryIDs(failed)) {
			t.Errorf("%s: module filter %v, want %v", when, summaryIDs(byModule), summaryIDs(failed))
		}
		created := got[3].CreatedAt // the fourth newest and older
		older := listREST(t, s, key, "to="+url.QueryEscape(created.Add(1).Format("2006-01-02T15:04:05.999999999Z07:00")))
		if !slices.Equal(summaryIDs(older), mine[3:]) {
			t.Errorf("%s: to=%s lists %v, want %v", when, created, summaryIDs(older), mine[3:])
		}
		for _, e := range listREST(t, s, other, "") {
			if slices.Contains(mine, e.ID) {
				t.Fatalf("%s: tenant hist-other lists dev's execution %s", when, e.ID)
			}
		}
		if n := len(listREST(t, s, other, "")); n != 7 {
			t.Errorf("%s: hist-other lists %d executions, ran 7", when, n)
		}
		nc, err := s.connectNATS()
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		viaNATS := listNATS(t, nc, key, schemas.ExecutionListRequest{Limit: 2})
		if !slices.Equal(summaryIDs(viaNATS), mine) {
			t.Errorf("%s: NATS pages of 2 list %v, want %v", when, summaryIDs(viaNATS), mine)
		}
		// The other tenant's key over dev's NATS connection: the key says who the caller is.
		for _, e := range listNATS(t, nc, other, schemas.ExecutionListRequest{}) {
			if slices.Contains(mine, e.ID) {
				t.Fatalf("%s: over NATS hist-other lists dev's execution %s", when, e.ID)
			}
		}
		status, data := natsCall(t, nc, schemas.OpExecutionsList, key, []byte(`{"status":"done"}`))
		if status != "422" || !strings.Contains(string(data), `"code":"invalid"`) {
			t.Errorf("%s: bad status over NATS: %s %s", when, status, data)
		}
	}
	check("running")

	r := s.do(t, http.MethodGet, "/v1/executions?limit=101", key, "", nil)
	if code, _ := r.problem(t); r.Status != 422 || code != "invalid" {
		t.Errorf("limit=101: %d %s", r.Status, r.Body)
	}
	r = s.do(t, http.MethodGet, "/v1/executions?cursor=bm90IGEgY3Vyc29y", key, "", nil)
	if code, _ := r.problem(t); r.Status != 422 || code != "invalid" {
		t.Errorf("bad cursor: %d %s", r.Status, r.Body)
	}
	if r := s.do(t, http.MethodGet, "/v1/executions", "", "", nil); r.Status != 401 {
		t.Errorf("no key: %d", r.Status)
	}

	out, errOut, code := cli(t, "executions", "list", "--url", s.URL, "--key", key, "--limit", "4")
	lines := scanLines(out)
	if code != 0 || len(lines) != 5 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], mine[0]) || !strings.Contains(errOut, "--cursor") {
		t.Errorf("executions list: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = cli(t, "executions", "list", "--url", s.URL, "--key", key, "--all", "--json", "--limit", "3", "--status", "succeeded")
	if n := len(scanLines(out)); code != 0 || n != 6 {
		t.Errorf("executions list --all --json --status succeeded: exit %d, %d lines\n%s", code, n, out)
	}

	s.procs[0].stop(t)
	s = startDev(t, dir)
	check("after a restart")
}
