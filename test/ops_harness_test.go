package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// role is one wasmwiz role process that can be stopped and started again with the same
// arguments, with the URL its /metrics and /health are served on.
type role struct {
	name    string // gateway, executor, accounting, dev
	env     []string
	args    []string
	opsURL  string // http://host:port serving /metrics and /health/ready
	p       *proc
	stopped bool
}

func startRole(t *testing.T, name, opsAddr string, env []string, args ...string) *role {
	t.Helper()
	r := &role{name: name, env: env, args: args, opsURL: "http://" + opsAddr}
	r.p = start(t, env, args...)
	return r
}

// restart starts the role again after stop.
func (r *role) restart(t *testing.T) {
	t.Helper()
	r.p = start(t, r.env, r.args...)
}

// splitRoles is the system run as separate processes against one or more nats-servers.
type splitRoles struct {
	*system
	gateways, executors []*role
	accounting          *role
}

func (s *splitRoles) roles() []*role {
	out := append(append([]*role{}, s.gateways...), s.executors...)
	return append(out, s.accounting)
}

// startSplit bootstraps the streams and an admin key, then starts the roles as processes.
func startSplit(t *testing.T, natsURL string, gateways, executors int, extra ...string) *splitRoles {
	t.Helper()
	dir := t.TempDir()
	common := append([]string{"WASMWIZ_NATS_URL=" + natsURL, "WASMWIZ_REPLICAS=1"}, extra...)
	adminKey := bootstrap(t, common, dir)
	s := &splitRoles{system: &system{NATSURL: natsURL}}
	for i := range gateways {
		addr := freeAddr(t)
		s.gateways = append(s.gateways, startRole(t, "gateway", addr, append(common, "WASMWIZ_HTTP_ADDR="+addr), "gateway"))
		if i == 0 {
			s.URL = "http://" + addr
		}
	}
	for i := range executors {
		addr := freeAddr(t)
		s.executors = append(s.executors, startRole(t, "executor", addr, append(common,
			"WASMWIZ_CACHE_DIR="+filepath.Join(dir, fmt.Sprintf("cache%d", i)), "WASMWIZ_WORKERS=2", "WASMWIZ_METRICS_ADDR="+addr,
			fmt.Sprintf("WASMWIZ_NODE_ID=ex%d", i)), "executor"))
	}
	addr := freeAddr(t)
	s.accounting = startRole(t, "accounting", addr, append(common, "WASMWIZ_SQLITE_PATH="+filepath.Join(dir, "acct.db"), "DATABASE_URL=", "WASMWIZ_METRICS_ADDR="+addr), "accounting")
	for _, r := range s.roles() {
		waitReady(t, r.opsURL, r.p)
		s.procs = append(s.procs, r.p)
	}
	s.AdminKey = adminKey
	return s
}

// families is one scrape: metric families by name.
type families map[string]*dto.MetricFamily

func scrape(t testing.TB, url string) families {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return mfs
}

// labelNames lists the label names used by a family's series, sorted.
func (f families) labelNames(name string) []string {
	set := map[string]bool{}
	for _, m := range f[name].GetMetric() {
		for _, l := range m.GetLabel() {
			set[l.GetName()] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// sum adds up a counter or gauge family's values whose labels include all of match.
func (f families) sum(name string, match ...string) float64 {
	var v float64
	for _, m := range f[name].GetMetric() {
		ok := true
		for i := 0; i+1 < len(match); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == match[i] && l.GetValue() == match[i+1] {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return v
}

// eventually polls cond every 50ms until it holds or d passes (natstest.CheckFor for a cond
// that has no more to say than what).
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	natstest.CheckFor(t, d, 50*time.Millisecond, func() error {
		if !cond() {
			return errors.New(what)
		}
		return nil
	})
}

// driveTraffic exercises what the metrics describe: uploads (compiles), successes, a failure,
// a trap, a timeout, a kill (worker restart), cache hits, an async execution, client errors,
// a rate-limit rejection, a direct NATS API call and a usage query to accounting.
func driveTraffic(t *testing.T, s *system) {
	t.Helper()
	key := s.newTenant(t, "ops", "basic")
	freeKey := s.newTenant(t, "opsfree", "free")
	hello := s.upload(t, key, "hello", fixtures.Wasm("hello"))
	for range 2 {
		if e := s.run(t, key, schemas.ExecutionRequest{ModuleID: hello.ID}); e.Status != schemas.StatusSucceeded {
			t.Fatalf("hello: %+v", e)
		}
	}
	for _, c := range []struct {
		module  string
		timeout int64
		want    schemas.Status
	}{{"exit7", 0, schemas.StatusFailed}, {"trap", 0, schemas.StatusFailed}, {"loop", 300, schemas.StatusTimedOut}, {"expcalls", 300, schemas.StatusTimedOut}} {
		m := s.upload(t, key, c.module, fixtures.Wasm(c.module))
		if e := s.run(t, key, schemas.ExecutionRequest{ModuleID: m.ID, TimeoutMS: c.timeout}); e.Status != c.want {
			t.Fatalf("%s: %+v, want %s", c.module, e, c.want)
		}
	}
	r, a := s.execute(t, key, schemas.ExecutionRequest{ModuleID: hello.ID, Async: true})
	if r.Status != 202 {
		t.Fatalf("async: %d %s", r.Status, r.Body)
	}
	if e := poll(t, s, key, a.ID); e.Status != schemas.StatusSucceeded {
		t.Fatalf("async: %+v", e)
	}
	if r := s.do(t, http.MethodGet, "/v1/executions/ex_00000000000000000000000000000000", key, "", nil); r.Status != 404 {
		t.Errorf("unknown execution: %d", r.Status)
	}
	if r := s.do(t, http.MethodGet, "/v1/modules", "ww_wrong", "", nil); r.Status != 401 {
		t.Errorf("bad key: %d", r.Status)
	}
	// More executions than the free tier's per-minute allowance: a 429.
	free := s.upload(t, freeKey, "hello", fixtures.Wasm("hello"))
	limited := false
	for range 12 {
		if r, _ := s.execute(t, freeKey, schemas.ExecutionRequest{ModuleID: free.ID}); r.Status == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Errorf("12 executions a minute on the free tier were not rate limited")
	}
	nc, err := s.connectNATSAs("nats-admin.nk") // the usage query below is a role's subject
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if status, body := natsCall(t, nc, schemas.OpModulesList, key, nil); status != "200" {
		t.Errorf("nats modules.list: %s %s", status, body)
	}
	q, _ := json.Marshal(schemas.UsageRequest{TenantID: "ops"})
	if _, err := nc.Request(schemas.AccountingSubject(schemas.OpUsage), q, 10*time.Second); err != nil {
		t.Errorf("usage query: %v", err)
	}
}

// waitAccounted polls the accounting role's metrics until it has stored at least n executions.
func waitAccounted(t *testing.T, opsURL string, n float64) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("accounting has not stored %v executions", n), func() bool {
		return scrape(t, opsURL).sum("wasmwiz_accounting_rows_inserted_total", "table", "executions") >= n
	})
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
