package test

// Regression tests for the execution-path holes of issue 12 (1, 7, 10, 11) and the HTTP
// weaknesses found with them: one test per finding, named after it, over REST and direct NATS
// where both apply. Each failed on 4f46e0d.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// startDevTiers runs dev mode with a tiers file laid over the defaults.
func startDevTiers(t *testing.T, tiersJSON string) *system {
	t.Helper()
	tiersFile := filepath.Join(t.TempDir(), "tiers.json")
	if err := os.WriteFile(tiersFile, []byte(tiersJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	return startDevEnv(t, t.TempDir(), "WASMWIZ_TIERS_FILE="+tiersFile)
}

// natsMsg is one direct NATS API request; it returns the whole reply (headers included).
func natsMsg(t testing.TB, nc *nats.Conn, op, key string, body []byte, headers ...string) *nats.Msg {
	t.Helper()
	msg := nats.NewMsg(schemas.APISubject(op))
	msg.Data = body
	if key != "" {
		msg.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		msg.Header.Set(headers[i], headers[i+1])
	}
	resp, err := nc.RequestMsg(msg, 60*time.Second)
	if err != nil {
		t.Fatalf("nats %s: %v", op, err)
	}
	return resp
}

// natsStatus is a reply's status: the micro error code, or 200.
func natsStatus(m *nats.Msg) int {
	if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
		n, _ := strconv.Atoi(code)
		return n
	}
	return 200
}

func natsProblemCode(t testing.TB, m *nats.Msg) string {
	t.Helper()
	var p struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal(m.Data, &p); err != nil {
		t.Fatalf("NATS error body is not problem JSON: %s", m.Data)
	}
	return p.Code
}

func (s *system) natsConn(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := s.connectNATS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Hole 1: a request refused by the rate limit claimed its Idempotency-Key, and sending it again
// ran it as a "replay", without the rate limit (424 executions in 10 s on a 10/min tier). Now a
// refused request claims nothing, so it is refused again; a replay of an admitted execution
// still answers with that execution and uses no quota.
func TestSecurity_IdempotencyReplaySkipsRateLimit(t *testing.T) {
	const perMinute = 3
	s := startDevTiers(t, fmt.Sprintf(`{"free": {"exec_per_minute": %d}}`, perMinute))
	nc := s.natsConn(t)

	for _, transport := range []string{"rest", "nats"} {
		t.Run(transport, func(t *testing.T) {
			key := s.newTenant(t, "replayer-"+transport, "free")
			m := s.upload(t, key, "hello", fixtures.Wasm("hello"))
			body := mustJSON(schemas.ExecutionRequest{ModuleID: m.ID})
			// exec sends the body with an Idempotency-Key (none when idem is "") and returns
			// the status, the Retry-After header and the execution id.
			exec := func(idem string) (int, string, string) {
				var hdr []string
				if idem != "" {
					hdr = []string{"Idempotency-Key", idem}
				}
				if transport == "rest" {
					r := s.do(t, http.MethodPost, "/v1/executions", key, "application/json", body, hdr...)
					var e schemas.Execution
					_ = json.Unmarshal(r.Body, &e)
					return r.Status, r.Header.Get("Retry-After"), e.ID
				}
				msg := natsMsg(t, nc, schemas.OpExecutionsCreate, key, body, hdr...)
				var e schemas.Execution
				_ = json.Unmarshal(msg.Data, &e)
				return natsStatus(msg), msg.Header.Get("Retry-After"), e.ID
			}

			status, _, admittedID := exec("admitted")
			if status != 200 || admittedID == "" {
				t.Fatalf("first execution: %d", status)
			}
			for i := 1; i < perMinute; i++ {
				if status, _, _ := exec(""); status != 200 {
					t.Fatalf("execution %d within the limit: %d", i, status)
				}
			}
			// Over the limit: refused, and refused again however often it is sent.
			for i := range 5 {
				status, retryAfter, id := exec("refused")
				if status != 429 {
					t.Fatalf("attempt %d of a refused request with the same Idempotency-Key: %d (execution %q), want 429", i, status, id)
				}
				if ra, err := strconv.Atoi(retryAfter); err != nil || ra < 1 || ra > 60 {
					t.Errorf("attempt %d: Retry-After %q", i, retryAfter)
				}
			}
			// The admitted execution's replay still answers with it, without quota.
			if status, _, id := exec("admitted"); status != 200 || id != admittedID {
				t.Errorf("replay of the admitted execution: %d %s, want 200 %s", status, id, admittedID)
			}
		})
	}
	// Only the admitted executions ran: perMinute per tenant.
	if n := s.executionsRun(t); n != 2*perMinute {
		t.Errorf("executors ran %d executions, want %d", n, 2*perMinute)
	}
}

// Hole 7: ~14,000 tiny env entries cost seconds of worker CPU before the guest started. The
// count and the bytes of args and env are bounded per tier and refused with 422 at the gateway.
func TestSecurity_ArgsEnvAmplification(t *testing.T) {
	s := startDev(t, t.TempDir())
	nc := s.natsConn(t)
	key := s.newTenant(t, "amplifier", "free")
	m := s.upload(t, key, "hello", fixtures.Wasm("hello"))
	free := schemas.DefaultTiers()[schemas.TierFree]

	env := func(n int) map[string]string {
		e := map[string]string{}
		for i := range n {
			e["E"+strconv.Itoa(i)] = "x"
		}
		return e
	}
	args := func(n, size int) []string {
		a := make([]string, n)
		for i := range a {
			a[i] = strings.Repeat("a", size)
		}
		return a
	}
	over := map[string]schemas.ExecutionRequest{
		"many env entries":    {ModuleID: m.ID, Env: env(1000)},
		"env over the count":  {ModuleID: m.ID, Env: env(free.EnvMax + 1)},
		"args over the count": {ModuleID: m.ID, Args: args(free.ArgsMax+1, 1)},
		"args over the bytes": {ModuleID: m.ID, Args: args(2, free.ArgsEnvBytes/2)},
		// argv0 counts with the args: these args alone fit.
		"argv0 and args over the bytes": {ModuleID: m.ID, Argv0: "abc", Args: args(2, free.ArgsEnvBytes/2-2)},
		"argv0 with NUL":                {ModuleID: m.ID, Argv0: "a\x00b"},
	}
	for name, req := range over {
		body := mustJSON(req)
		r := s.do(t, http.MethodPost, "/v1/executions", key, "application/json", body)
		if code, _ := r.problem(t); r.Status != 422 || code != "invalid" {
			t.Errorf("REST, %s: %d %s, want 422 invalid", name, r.Status, r.Body)
		}
		msg := natsMsg(t, nc, schemas.OpExecutionsCreate, key, body)
		if natsStatus(msg) != 422 || natsProblemCode(t, msg) != "invalid" {
			t.Errorf("NATS, %s: %d %s, want 422 invalid", name, natsStatus(msg), msg.Data)
		}
	}
	// At the limits it runs.
	at := schemas.ExecutionRequest{ModuleID: m.ID, Args: args(free.ArgsMax, 1), Env: env(free.EnvMax)}
	if e := s.run(t, key, at); e.Status != schemas.StatusSucceeded {
		t.Errorf("at the limits: %+v", e)
	}
	// Nothing refused reached an executor.
	if n := s.executionsRun(t); n != 1 {
		t.Errorf("executors ran %d executions, want 1", n)
	}
}

// Hole 10: 1,500 idempotent replays of one long execution took all of a gateway's NATS request
// slots, and other tenants waited. Each tenant now has a bounded number of open requests per
// gateway (the tier's concurrent_requests), over REST and NATS alike; beyond it, 429 at once.
func TestSecurity_OneTenantStallsNATSAPI(t *testing.T) {
	slots := schemas.DefaultTiers()[schemas.TierFree].ConcurrentRequests
	s := startDev(t, t.TempDir())
	nc := s.natsConn(t)
	other := s.newTenant(t, "bystander", "free")
	hello := s.upload(t, other, "hello", fixtures.Wasm("hello"))

	for _, transport := range []string{"rest", "nats"} {
		t.Run(transport, func(t *testing.T) {
			key := s.newTenant(t, "staller-"+transport, "free")
			loop := s.upload(t, key, "loop", fixtures.Wasm("loop"))
			body := mustJSON(schemas.ExecutionRequest{ModuleID: loop.ID, TimeoutMS: 4000})
			idem := []string{"Idempotency-Key", "one-long-execution"}
			// The execution starts (async), then many synchronous replays of it wait for it.
			ar := s.do(t, http.MethodPost, "/v1/executions", key, "application/json", mustJSON(schemas.ExecutionRequest{ModuleID: loop.ID, TimeoutMS: 4000, Async: true}), idem...)
			if ar.Status != 202 {
				t.Fatalf("start: %d %s", ar.Status, ar.Body)
			}
			replays := slots + 20
			var mu sync.Mutex
			statuses := map[int]int{}
			var noRetryAfter int
			var wg sync.WaitGroup
			for range replays {
				wg.Go(func() {
					var status int
					var retryAfter string
					if transport == "rest" {
						r := s.do(t, http.MethodPost, "/v1/executions", key, "application/json", body, idem...)
						status, retryAfter = r.Status, r.Header.Get("Retry-After")
					} else {
						msg := natsMsg(t, nc, schemas.OpExecutionsCreate, key, body, idem...)
						status, retryAfter = natsStatus(msg), msg.Header.Get("Retry-After")
					}
					mu.Lock()
					defer mu.Unlock()
					statuses[status]++
					if status == 429 && retryAfter == "" {
						noRetryAfter++
					}
				})
			}
			// Another tenant is answered while they wait (200, or 202 when both workers are
			// busy with the long executions).
			ob := mustJSON(schemas.ExecutionRequest{ModuleID: hello.ID})
			if transport == "rest" {
				if r := s.do(t, http.MethodPost, "/v1/executions", other, "application/json", ob); r.Status != 200 && r.Status != 202 {
					t.Errorf("the other tenant: %d %s", r.Status, r.Body)
				}
			} else if msg := natsMsg(t, nc, schemas.OpExecutionsCreate, other, ob); natsStatus(msg) != 200 {
				t.Errorf("the other tenant: %d %s", natsStatus(msg), msg.Data)
			}
			wg.Wait()
			if statuses[429] < replays-slots || statuses[429] == replays {
				t.Errorf("statuses of %d concurrent replays: %v; want at most %d answered and the rest refused with 429", replays, statuses, slots)
			}
			if noRetryAfter > 0 {
				t.Errorf("%d refusals without Retry-After", noRetryAfter)
			}
		})
	}
}

// Hole 11: a key with only the execute scope stored modules through module_base64 and
// /api/execute. An inline module is stored as one of the tenant's modules, so it needs
// modules:write; running an uploaded module by id needs only execute.
func TestSecurity_ExecuteOnlyKeyCreatesModules(t *testing.T) {
	s := startDev(t, t.TempDir())
	nc := s.natsConn(t)
	full := s.newTenant(t, "scoped", "basic")
	execOnly := s.newKey(t, full, schemas.NewKeyRequest{Name: "exec-only", Scopes: []string{schemas.ScopeExecute}}).Key
	wasm := fixtures.Wasm("echo")

	inline := mustJSON(schemas.ExecutionRequest{ModuleBase64: b64(wasm), Stdin: "hi"})
	r := s.do(t, http.MethodPost, "/v1/executions", execOnly, "application/json", inline)
	if code, _ := r.problem(t); r.Status != 403 || code != "forbidden" {
		t.Errorf("REST module_base64 with an execute-only key: %d %s, want 403", r.Status, r.Body)
	}
	msg := natsMsg(t, nc, schemas.OpExecutionsCreate, execOnly, inline)
	if natsStatus(msg) != 403 || natsProblemCode(t, msg) != "forbidden" {
		t.Errorf("NATS module_base64 with an execute-only key: %d %s, want 403", natsStatus(msg), msg.Data)
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("wasm", "main.wasm")
	_, _ = fw.Write(wasm)
	_ = mw.WriteField("input", "hi")
	_ = mw.Close()
	r = s.do(t, http.MethodPost, "/api/execute", execOnly, mw.FormDataContentType(), form.Bytes())
	if r.Status != 403 {
		t.Errorf("/api/execute with an execute-only key: %d %s, want 403", r.Status, r.Body)
	}
	var l schemas.ModuleList
	s.do(t, http.MethodGet, "/v1/modules", full, "", nil).decode(t, &l)
	if len(l.Modules) != 0 {
		t.Errorf("an execute-only key stored modules: %+v", l.Modules)
	}

	// With modules:write inline modules run; by id, execute alone is enough.
	if e := s.run(t, full, schemas.ExecutionRequest{ModuleBase64: b64(wasm), Stdin: "inline"}); e.Stdout != "inline" {
		t.Errorf("inline with a full key: %+v", e)
	}
	if r := s.do(t, http.MethodPost, "/api/execute", full, mw.FormDataContentType(), form.Bytes()); r.Status != 200 {
		t.Errorf("/api/execute with a full key: %d %s", r.Status, r.Body)
	}
	m := s.upload(t, full, "echo", wasm)
	if e := s.run(t, execOnly, schemas.ExecutionRequest{ModuleID: m.ID, Stdin: "by id"}); e.Stdout != "by id" {
		t.Errorf("by id with the execute-only key: %+v", e)
	}
}
