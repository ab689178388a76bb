package test

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

func TestDev_RateLimits(t *testing.T) {
	s := startDev(t, t.TempDir())
	free := s.newTenant(t, "limited", "free")
	m := s.upload(t, free, "hello", fixtures.Wasm("hello"))
	tier := schemas.DefaultTiers()[schemas.TierFree]

	for i := range tier.ExecPerMinute {
		r, e := s.execute(t, free, schemas.ExecutionRequest{ModuleID: m.ID})
		if r.Status != 200 || e.Status != schemas.StatusSucceeded {
			t.Fatalf("execution %d: %d %s", i, r.Status, r.Body)
		}
		if got := r.Header.Get("RateLimit-Limit"); got != strconv.Itoa(tier.ExecPerMinute) {
			t.Errorf("RateLimit-Limit %q", got)
		}
		if got := r.Header.Get("RateLimit-Remaining"); got != strconv.Itoa(tier.ExecPerMinute-i-1) {
			t.Errorf("execution %d: RateLimit-Remaining %q, want %d", i, got, tier.ExecPerMinute-i-1)
		}
		if reset, err := strconv.Atoi(r.Header.Get("RateLimit-Reset")); err != nil || reset < 1 || reset > 60 {
			t.Errorf("RateLimit-Reset %q", r.Header.Get("RateLimit-Reset"))
		}
	}
	r, _ := s.execute(t, free, schemas.ExecutionRequest{ModuleID: m.ID})
	code, detail := r.problem(t)
	if r.Status != 429 || code != "rate_limited" || !strings.Contains(detail, "per minute") {
		t.Fatalf("over the limit: %d %s", r.Status, r.Body)
	}
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	if r.Header.Get("RateLimit-Remaining") != "0" {
		t.Errorf("RateLimit-Remaining on 429: %q", r.Header.Get("RateLimit-Remaining"))
	}
	// Reads do not count.
	if r := s.do(t, http.MethodGet, "/v1/modules", free, "", nil); r.Status != 200 {
		t.Errorf("read after the limit: %d", r.Status)
	}
	// Another tenant is not affected.
	if e := s.run(t, s.DevKey, schemas.ExecutionRequest{ModuleBase64: b64(fixtures.Wasm("hello"))}); e.Status != schemas.StatusSucceeded {
		t.Errorf("dev tenant: %+v", e)
	}
	metrics := s.do(t, http.MethodGet, "/metrics", "", "", nil)
	if !strings.Contains(string(metrics.Body), `wasmwiz_ratelimit_rejections_total{limit="per_minute",tier="free"} 1`) {
		t.Errorf("rejection not counted in /metrics")
	}
}

func TestDev_InFlightLimit(t *testing.T) {
	s := startDev(t, t.TempDir())
	basic := s.newTenant(t, "busy", "basic")
	loop := s.upload(t, basic, "loop", fixtures.Wasm("loop"))
	hello := s.upload(t, basic, "hello", fixtures.Wasm("hello"))
	inFlight := schemas.DefaultTiers()[schemas.TierBasic].InFlight
	var ids []string
	for i := range inFlight {
		r, e := s.execute(t, basic, schemas.ExecutionRequest{ModuleID: loop.ID, TimeoutMS: 1500, Async: true})
		if r.Status != 202 {
			t.Fatalf("async %d: %d %s", i, r.Status, r.Body)
		}
		ids = append(ids, e.ID)
	}
	r, _ := s.execute(t, basic, schemas.ExecutionRequest{ModuleID: hello.ID, Async: true})
	code, detail := r.problem(t)
	if r.Status != 429 || code != "rate_limited" || !strings.Contains(detail, "in flight") || r.Header.Get("Retry-After") == "" {
		t.Fatalf("over the in-flight cap: %d %s", r.Status, r.Body)
	}
	for _, id := range ids {
		if e := poll(t, s, basic, id); e.Status != schemas.StatusTimedOut {
			t.Errorf("%s: %s", id, e.Status)
		}
	}
	if e := s.run(t, basic, schemas.ExecutionRequest{ModuleID: hello.ID}); e.Status != schemas.StatusSucceeded {
		t.Errorf("after the queue drained: %+v", e)
	}
}

// Three gateways (the dev process's and two `wasmwiz gateway` processes on its NATS) hammer one
// tenant's per-minute limit at once: exactly the limit is admitted.
func TestGateways_LimitExactUnderRace(t *testing.T) {
	// A tiers file (read by every role) gives free room in flight, so only the rate limit refuses.
	tiersFile := filepath.Join(t.TempDir(), "tiers.json")
	if err := os.WriteFile(tiersFile, []byte(`{"free": {"in_flight": 100}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startDevEnv(t, t.TempDir(), "WASMWIZ_TIERS_FILE="+tiersFile)
	urls := []string{s.URL}
	for range 2 {
		addr := freeAddr(t)
		p := start(t, append(s.natsRoleEnv("gateway"), "WASMWIZ_HTTP_ADDR="+addr, "WASMWIZ_TIERS_FILE="+tiersFile), "gateway")
		waitReady(t, "http://"+addr, p)
		urls = append(urls, "http://"+addr)
	}
	free := s.newTenant(t, "racer", "free")
	m := s.upload(t, free, "hello", fixtures.Wasm("hello"))
	body := mustJSON(schemas.ExecutionRequest{ModuleID: m.ID, Async: true})
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			g := &system{URL: urls[i%len(urls)]}
			r := g.do(t, http.MethodPost, "/v1/executions", free, "application/json", body)
			mu.Lock()
			statuses[r.Status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	limit := schemas.DefaultTiers()[schemas.TierFree].ExecPerMinute
	if statuses[202] != limit || statuses[429] != 30-limit {
		t.Fatalf("statuses %v, want %d accepted and %d refused", statuses, limit, 30-limit)
	}
	var rejectedPerMinute int
	for _, u := range urls {
		body := string((&system{URL: u}).do(t, http.MethodGet, "/metrics", "", "", nil).Body)
		rejectedPerMinute += counter(body, `wasmwiz_ratelimit_rejections_total{limit="per_minute",tier="free"}`)
	}
	if rejectedPerMinute != 30-limit {
		t.Errorf("per-minute rejections %d across gateways, want %d (statuses %v)", rejectedPerMinute, 30-limit, statuses)
	}
}

func counter(metrics, series string) int {
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
