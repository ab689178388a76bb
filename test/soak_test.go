//go:build soak

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/accounting/storetest"
	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestSoak_AccountingExactlyOnce is the exactly-once proof of accounting: N executions (N ≥ 1000,
// $WASMWIZ_SOAK_N) of a tiny module while the accounting process is SIGKILLed and restarted four
// times and PostgreSQL is stopped and started once (accounting is killed and restarted once
// while PostgreSQL is down, so it starts without a database). Afterwards the usage rows, the
// distinct executions and N must be equal, with no duplicates, and `wasmwiz accounting
// reconcile` must report 0 missing and 0 duplicates.
//
// It needs the local PostgreSQL cluster and the right to stop it (root, pg_ctlcluster), and
// $WASMWIZ_TEST_DATABASE_URL; accounting works in a schema of its own. See README.md.
func TestSoak_AccountingExactlyOnce(t *testing.T) {
	if os.Getenv(storetest.EnvDatabaseURL) == "" {
		t.Fatalf("%s must name the PostgreSQL the soak test stops and starts", storetest.EnvDatabaseURL)
	}
	n := 1000
	if v := os.Getenv("WASMWIZ_SOAK_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 8 {
			t.Fatalf("WASMWIZ_SOAK_N=%q: want a number ≥ 8", v)
		}
	}
	pg := newPGControl(t)
	dbURL := storetest.NewSchema(t)

	srv := natstest.RunJetStream(t)
	dir := t.TempDir()
	common := []string{"WASMWIZ_NATS_URL=" + srv.ClientURL()}
	s := startCore(t, common, dir)
	s.NATSURL = srv.ClientURL()
	acctEnv := append(common, "DATABASE_URL="+dbURL, "WASMWIZ_METRICS_ADDR=")
	ac := start(t, acctEnv, "accounting")
	key := s.newTenant(t, "soak", schemas.TierUnlimited)
	m := s.upload(t, key, "hello", fixtures.Wasm("hello"))
	began := time.Now().UTC()

	// The load: N synchronous executions from 8 clients, in 8 phases. Each execution has an
	// Idempotency-Key, so a client retry after a lost answer cannot make a second execution.
	var (
		mu     sync.Mutex
		ids    = map[string]bool{}
		errs   []string
		kills  int
		action = []string{"kill", "pg-stop", "kill", "pg-start", "kill", "", "kill", ""}
	)
	var next atomic.Int64 // executions started
	js := natstest.JetStream(t, srv)
	kill := func() {
		// What the killed replica leaves behind: events delivered to it but not acked.
		state := "no consumer yet"
		if c, err := js.Consumer(context.Background(), schemas.StreamEvents, schemas.ConsumerAccounting); err == nil {
			if ci, err := c.Info(context.Background()); err == nil {
				state = fmt.Sprintf("delivered up to stream seq %d, %d unacked, %d pending", ci.Delivered.Stream, ci.NumAckPending, ci.NumPending)
			}
		}
		_ = syscall.Kill(-ac.cmd.Process.Pid, syscall.SIGKILL)
		<-ac.done
		kills++
		t.Logf("soak: SIGKILL %d of accounting after %d executions: %s", kills, next.Load(), state)
		ac = start(t, acctEnv, "accounting")
	}
	phases := len(action)
	for phase := range phases {
		end := int64(n * (phase + 1) / phases)
		half := (next.Load() + end) / 2
		chaos := make(chan struct{})
		go func() { // acts mid-phase, while events are being consumed
			defer close(chaos)
			for next.Load() < half {
				time.Sleep(time.Millisecond)
			}
			switch action[phase] {
			case "kill":
				kill()
			case "pg-stop":
				pg.run(t, "stop")
				t.Logf("soak: PostgreSQL stopped after %d executions", next.Load())
			case "pg-start":
				pg.run(t, "start")
				t.Logf("soak: PostgreSQL started after %d executions", next.Load())
			}
		}()
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= end {
						next.Add(-1) // leave the counter at end for the next phase
						return
					}
					id, err := executeWithRetry(s, key, m.ID, fmt.Sprintf("soak-%d", i))
					mu.Lock()
					if err != nil {
						errs = append(errs, err.Error())
					} else {
						ids[id] = true
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		next.Store(end)
		<-chaos
		// Every process restarted stays up, even one started while PostgreSQL was down.
		if !ac.alive() {
			t.Fatalf("accounting exited after phase %d (%s): %v\n%s", phase, action[phase], ac.err, lastLines(ac.output(), 40))
		}
	}
	loadDone := time.Now()
	if len(errs) > 0 {
		t.Fatalf("%d executions failed, e.g. %s", len(errs), errs[0])
	}
	if len(ids) != n {
		t.Fatalf("%d distinct execution ids for %d executions", len(ids), n)
	}

	// Accounting catches up: usage through the gateway reaches N.
	from, to := began.Add(-time.Minute), time.Now().UTC().Add(time.Minute)
	q := "/v1/usage?group_by=module&from=" + from.Format(time.RFC3339Nano) + "&to=" + to.Format(time.RFC3339Nano)
	var u schemas.UsageResponse
	natstest.CheckFor(t, 5*time.Minute, 10*time.Millisecond, func() error {
		if !ac.alive() {
			t.Fatalf("accounting exited: %v\n%s", ac.err, lastLines(ac.output(), 40))
		}
		r := s.do(t, http.MethodGet, q, key, "", nil)
		if r.Status != 200 {
			return fmt.Errorf("usage: %d %s", r.Status, r.Body)
		}
		r.decode(t, &u)
		if u.Total.Executions < int64(n) {
			return fmt.Errorf("usage reached %d of %d executions (%+v)", u.Total.Executions, n, u.Total)
		}
		return nil
	})
	caughtUp := time.Now()

	// The rows themselves, straight from PostgreSQL.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, distinct, rollup int64
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT execution_id) FROM executions WHERE tenant_id = 'soak'`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT coalesce(sum(executions), 0) FROM usage_daily WHERE tenant_id = 'soak'`).Scan(&rollup); err != nil {
		t.Fatal(err)
	}
	stored, err := pgx.CollectRows(must(conn.Query(ctx, `SELECT execution_id FROM executions WHERE tenant_id = 'soak'`)), pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var missing, extra int
	for _, id := range stored {
		if !ids[id] {
			extra++
		}
	}
	for id := range ids {
		if !slices.Contains(stored, id) {
			missing++
		}
	}

	// The events stream: every execution published (perhaps more than once).
	cons, err := js.OrderedConsumer(ctx, schemas.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"wasmwiz.events.execution.*.soak"}})
	if err != nil {
		t.Fatal(err)
	}
	events, eventIDs := 0, map[string]bool{}
	for events < n || len(eventIDs) < n {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			break
		}
		var ev schemas.Event
		if json.Unmarshal(msg.Data(), &ev) == nil && ev.Execution != nil {
			events++
			eventIDs[ev.Execution.ExecutionID] = true
		}
		if md, _ := msg.Metadata(); md != nil && md.NumPending == 0 {
			break
		}
	}

	// And the operator's view.
	out, err := exec.Command(bin(), "accounting", "reconcile", "--nats-url", srv.ClientURL(), "--tenant", "soak",
		"--from", from.Format(time.RFC3339Nano), "--to", to.Format(time.RFC3339Nano), "--json").Output()
	var rep struct {
		Stored           int64
		EventExecutions  int `json:"event_executions"`
		Missing          []string
		Duplicates       []string
		Unexpected       []string
		RollupMismatches []json.RawMessage `json:"rollup_mismatches"`
	}
	if jerr := json.Unmarshal(out, &rep); jerr != nil || err != nil {
		t.Fatalf("reconcile: %v %v\n%s", err, jerr, out)
	}

	t.Logf("soak: N=%d executions in %s (%.0f/s), accounting SIGKILLed %d times, PostgreSQL stopped and started once; caught up %s after the load",
		n, loadDone.Sub(began).Round(time.Millisecond), float64(n)/loadDone.Sub(began).Seconds(), kills, caughtUp.Sub(loadDone).Round(time.Millisecond))
	t.Logf("soak: usage rows=%d distinct=%d duplicates=%d rollup=%d usage API=%d; vs client ids missing=%d extra=%d; events=%d distinct=%d",
		rows, distinct, rows-distinct, rollup, u.Total.Executions, missing, extra, events, len(eventIDs))
	t.Logf("soak: reconcile stored=%d event_executions=%d missing=%d duplicates=%d unexpected=%d rollup_mismatches=%d",
		rep.Stored, rep.EventExecutions, len(rep.Missing), len(rep.Duplicates), len(rep.Unexpected), len(rep.RollupMismatches))

	if kills < 3 {
		t.Errorf("accounting was killed %d times, want ≥ 3", kills)
	}
	if rows != int64(n) || distinct != int64(n) || rollup != int64(n) || u.Total.Executions != int64(n) || missing != 0 || extra != 0 {
		t.Errorf("want rows == distinct == rollup == usage == N = %d and no missing or extra rows", n)
	}
	if len(eventIDs) != n {
		t.Errorf("the events stream holds %d distinct executions, want %d", len(eventIDs), n)
	}
	if rep.Stored != int64(n) || rep.EventExecutions != n || len(rep.Missing)+len(rep.Duplicates)+len(rep.Unexpected)+len(rep.RollupMismatches) != 0 {
		t.Errorf("reconcile: %s", out)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// executeWithRetry runs one execution synchronously; a transport error or a 5xx is retried with
// the same Idempotency-Key, which returns the same execution instead of running another.
func executeWithRetry(s *system, key, moduleID, idem string) (string, error) {
	body, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: moduleID})
	var last string
	for attempt := range 5 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 200 * time.Millisecond) // back off before a retry
		}
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/executions", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", idem)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		var e schemas.Execution
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		switch {
		case resp.StatusCode == 200 && err == nil && e.Status == schemas.StatusSucceeded:
			return e.ID, nil
		case resp.StatusCode >= 500 || resp.StatusCode == 202:
			last = fmt.Sprintf("%s: %d", idem, resp.StatusCode)
			continue
		default:
			return "", fmt.Errorf("%s: %d %+v", idem, resp.StatusCode, e)
		}
	}
	return "", fmt.Errorf("%s: gave up: %s", idem, last)
}

// pgControl stops and starts the local PostgreSQL cluster, and makes sure it runs again when
// the test ends, whatever happened.
type pgControl struct{ version string }

func newPGControl(t *testing.T) *pgControl {
	t.Helper()
	entries, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(entries) != 1 {
		t.Fatalf("want one PostgreSQL version under /etc/postgresql: %v", err)
	}
	if _, err := exec.LookPath("pg_ctlcluster"); err != nil {
		t.Fatal(err)
	}
	pg := &pgControl{version: entries[0].Name()}
	t.Cleanup(func() { pg.ensureRunning(t) })
	return pg
}

func (pg *pgControl) run(t *testing.T, action string) {
	out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", pg.version, "main", action).CombinedOutput()
	if err != nil {
		t.Errorf("pg_ctlcluster %s: %v\n%s", action, err, out)
	}
}

func (pg *pgControl) ensureRunning(t *testing.T) {
	out, _ := exec.Command("pg_lsclusters", "-h").Output()
	if strings.Contains(string(out), "online") {
		return
	}
	pg.run(t, "start")
}
