package test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// natsCall is one direct NATS API request: JSON (or module bytes) in, JSON out.
func natsCall(t testing.TB, nc *nats.Conn, op, key string, body []byte, headers ...string) (status string, data []byte) {
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
	if code := resp.Header.Get("Nats-Service-Error-Code"); code != "" {
		return code, resp.Data
	}
	return "200", resp.Data
}

func TestDev_NATS(t *testing.T) {
	s := startDev(t, t.TempDir())
	nc, err := s.connectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	key := s.DevKey

	status, data := natsCall(t, nc, schemas.OpModulesUpload, key, fixtures.Wasm("echo"), "Wasmwiz-Module-Name", "echo")
	if status != "200" {
		t.Fatalf("upload: %s %s", status, data)
	}
	var m schemas.Module
	_ = json.Unmarshal(data, &m)
	if m.Name != "echo" || !strings.HasPrefix(m.ID, "sha256:") {
		t.Fatalf("module %+v", m)
	}
	// The same module over REST: one contract.
	if r := s.do(t, http.MethodGet, "/v1/modules/"+m.ID, key, "", nil); r.Status != 200 {
		t.Errorf("REST get of NATS upload: %d", r.Status)
	}

	body, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: m.ID, Stdin: "over nats"})
	status, data = natsCall(t, nc, schemas.OpExecutionsCreate, key, body)
	var e schemas.Execution
	_ = json.Unmarshal(data, &e)
	if status != "200" || e.Status != schemas.StatusSucceeded || e.Stdout != "over nats" {
		t.Fatalf("execute: %s %s", status, data)
	}
	idBody, _ := json.Marshal(schemas.IDRequest{ID: e.ID})
	status, data = natsCall(t, nc, schemas.OpExecutionsGet, key, idBody)
	if status != "200" || !strings.Contains(string(data), `"over nats"`) {
		t.Errorf("get: %s %s", status, data)
	}

	async, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: m.ID, Stdin: "later", Async: true})
	status, data = natsCall(t, nc, schemas.OpExecutionsCreate, key, async)
	_ = json.Unmarshal(data, &e)
	if e.Status != schemas.StatusQueued {
		t.Fatalf("async: %s %s", status, data)
	}
	if got := poll(t, s, key, e.ID); got.Stdout != "later" {
		t.Errorf("async result %+v", got)
	}

	idem, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: m.ID, Stdin: "idem"})
	_, d1 := natsCall(t, nc, schemas.OpExecutionsCreate, key, idem, "Idempotency-Key", "n-1")
	_, d2 := natsCall(t, nc, schemas.OpExecutionsCreate, key, idem, "Idempotency-Key", "n-1")
	var e1, e2 schemas.Execution
	_ = json.Unmarshal(d1, &e1)
	_ = json.Unmarshal(d2, &e2)
	if e1.ID == "" || e1.ID != e2.ID || *e1.FinishedAt != *e2.FinishedAt {
		t.Errorf("idempotency over NATS: %s / %s", d1, d2)
	}

	status, data = natsCall(t, nc, schemas.OpModulesList, "", nil)
	if status != "401" || !strings.Contains(string(data), `"code":"unauthorized"`) {
		t.Errorf("no key: %s %s", status, data)
	}
	status, data = natsCall(t, nc, schemas.OpExecutionsCreate, key, []byte("{not json"))
	if status != "400" {
		t.Errorf("bad json: %s %s", status, data)
	}
	other := s.newTenant(t, "nats-other", "free")
	status, _ = natsCall(t, nc, schemas.OpExecutionsGet, other, idBody)
	if status != "404" {
		t.Errorf("other tenant's execution over NATS: %s", status)
	}
	status, data = natsCall(t, nc, schemas.OpModulesList, key, nil)
	if status != "200" || !strings.Contains(string(data), m.ID) {
		t.Errorf("list: %s %s", status, data)
	}
	delBody, _ := json.Marshal(schemas.IDRequest{ID: m.ID})
	if status, data = natsCall(t, nc, schemas.OpModulesDelete, key, delBody); status != "200" {
		t.Errorf("delete: %s %s", status, data)
	}
	if status, _ = natsCall(t, nc, schemas.OpModulesGet, key, delBody); status != "404" {
		t.Errorf("get after delete: %s", status)
	}
}

// Restarting with the same data dir keeps modules, keys and results.
func TestDev_Restart(t *testing.T) {
	dir := t.TempDir()
	s := startDev(t, dir)
	m := s.upload(t, s.DevKey, "hello", fixtures.Wasm("hello"))
	e := s.run(t, s.DevKey, schemas.ExecutionRequest{ModuleID: m.ID})
	s.procs[0].stop(t)
	if s.procs[0].err != nil {
		t.Errorf("dev exited with %v after SIGTERM", s.procs[0].err)
	}

	s2 := startDev(t, dir)
	if s2.DevKey != s.DevKey {
		t.Fatal("dev key changed across restart")
	}
	if r := s2.do(t, http.MethodGet, "/v1/modules/"+m.ID, s.DevKey, "", nil); r.Status != 200 {
		t.Errorf("module after restart: %d", r.Status)
	}
	r := s2.do(t, http.MethodGet, "/v1/executions/"+e.ID, s.DevKey, "", nil)
	var got schemas.Execution
	r.decode(t, &got)
	if got.Stdout != "hello, world\n" {
		t.Errorf("result after restart: %d %s", r.Status, r.Body)
	}
	if e := s2.run(t, s.DevKey, schemas.ExecutionRequest{ModuleID: m.ID}); e.Status != schemas.StatusSucceeded {
		t.Errorf("run after restart: %+v", e)
	}
}
