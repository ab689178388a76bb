package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// loadReport is the JSON report of `wasmwiz load --json`.
type loadReport struct {
	Requests, Errors int64
	Outcomes         map[string]int64
	Retried          map[string]int64
}

// loadRecord is one line of `wasmwiz load --record`.
type loadRecord struct {
	ID             string `json:"id"`
	IdempotencyKey string `json:"idempotency_key"`
	HTTPStatus     int    `json:"http_status"`
	Attempts       int    `json:"attempts"`
	URL            string `json:"url"`
}

// runLoadCmd runs `wasmwiz load args… --json` and returns its report.
func runLoadCmd(t *testing.T, args ...string) *loadReport {
	t.Helper()
	cmd := exec.Command(bin(), append([]string{"load", "--json"}, args...)...)
	cmd.Dir = t.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wasmwiz load: %v\n%s\n%s", err, out, stderr.String())
	}
	var rep loadReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return &rep
}

func readRecords(t *testing.T, path string) []loadRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []loadRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r loadRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("record line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// `wasmwiz load --async --record`: every request is accepted with a 202 and an Idempotency-Key
// of its own, recorded with its key, and polled to its final status (the outcome counted).
func TestLoadCommand_AsyncRecord(t *testing.T) {
	s := startDev(t, t.TempDir())
	key := s.newTenant(t, "loadasync", schemas.TierUnlimited)
	m := s.upload(t, key, "hello", fixtures.Wasm("hello"))
	record := filepath.Join(t.TempDir(), "accepted.jsonl")
	const n = 40
	rep := runLoadCmd(t, "--url", s.URL, "--key", key, "--module", m.ID, "--requests", fmt.Sprint(n),
		"--concurrency", "8", "--async", "--idempotency-keys", "--record", record)
	if rep.Requests != n || rep.Errors != 0 || rep.Outcomes["200"] != n {
		t.Fatalf("report %+v, want %d succeeded executions", rep, n)
	}
	recs := readRecords(t, record)
	ids, keys := map[string]bool{}, map[string]bool{}
	for _, r := range recs {
		ids[r.ID], keys[r.IdempotencyKey] = true, true
		if r.HTTPStatus != http.StatusAccepted || r.Attempts != 1 || r.URL != s.URL || r.IdempotencyKey == "" {
			t.Errorf("record %+v: want a 202 on the first attempt, with a key", r)
		}
	}
	if len(recs) != n || len(ids) != n || len(keys) != n {
		t.Fatalf("%d records, %d ids, %d keys; want %d of each", len(recs), len(ids), len(keys), n)
	}
	// The outcomes were the executions' final statuses: each is final now, and succeeded.
	for id := range ids {
		var e schemas.Execution
		if r := s.do(t, http.MethodGet, "/v1/executions/"+id, key, "", nil); r.Status != 200 {
			t.Fatalf("GET %s: %d %s", id, r.Status, r.Body)
		} else if r.decode(t, &e); e.Status != schemas.StatusSucceeded {
			t.Errorf("%s: %s", id, e.Status)
		}
	}
}

// flakyGateway stands in front of a gateway: every third execution request reaches the gateway
// (which runs it) but its answer is lost (the connection is closed); every third other one is
// answered 503 without reaching it.
type flakyGateway struct {
	target         string
	n, lost, r503s atomic.Int64
}

func (f *flakyGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	i := f.n.Add(1)
	if r.Method == http.MethodPost && i%3 == 2 {
		f.r503s.Add(1)
		http.Error(w, `{"code":"unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, f.target+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if r.Method == http.MethodPost && i%3 == 0 {
		f.lost.Add(1)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(b)
}

// `wasmwiz load` with several --url: a request that got no answer (its answer lost after the
// gateway ran it, or a gateway that is down) or a 503 is sent again with the same
// Idempotency-Key on the next URL, and is answered with the same execution, which ran once.
func TestLoadCommand_RetriesOnAnotherGateway(t *testing.T) {
	s := startDev(t, t.TempDir())
	key := s.newTenant(t, "loadretry", schemas.TierUnlimited)
	m := s.upload(t, key, "hello", fixtures.Wasm("hello"))
	flaky := &flakyGateway{target: s.URL}
	front := httptest.NewServer(flaky)
	defer front.Close()
	down := "http://" + freeAddr(t) // nothing listens there
	record := filepath.Join(t.TempDir(), "accepted.jsonl")
	before := s.executionsRun(t)
	const n = 30
	rep := runLoadCmd(t, "--url", front.URL+","+down, "--url", s.URL, "--key", key, "--module", m.ID,
		"--requests", fmt.Sprint(n), "--concurrency", "3", "--record", record)
	if rep.Requests != n || rep.Errors != 0 || rep.Outcomes["200"] != n {
		t.Fatalf("report %+v, want %d succeeded executions", rep, n)
	}
	if flaky.lost.Load() == 0 || flaky.r503s.Load() == 0 || rep.Retried["503"] == 0 || rep.Retried["error:transport"] == 0 {
		t.Fatalf("the front lost %d answers and sent %d 503s; the load retried %v: the test did not test retries",
			flaky.lost.Load(), flaky.r503s.Load(), rep.Retried)
	}
	recs := readRecords(t, record)
	ids, retried := map[string]bool{}, 0
	for _, r := range recs {
		ids[r.ID] = true
		if r.Attempts > 1 {
			retried++
		}
		if r.URL == down {
			t.Errorf("accepted by a URL where nothing listens: %+v", r)
		}
	}
	if len(recs) != n || len(ids) != n || retried == 0 {
		t.Fatalf("%d records, %d distinct ids, %d retried; want %d records of distinct ids, some retried", len(recs), len(ids), retried, n)
	}
	// Every answer lost after its execution ran was retried with its key: nothing ran twice.
	if ran := s.executionsRun(t) - before; ran != n {
		t.Errorf("%d executions ran for %d requests (%d answers lost on the way)", ran, n, flaky.lost.Load())
	}
	if !strings.HasPrefix(recs[0].IdempotencyKey, "load-") {
		t.Errorf("idempotency key %q", recs[0].IdempotencyKey)
	}
}
