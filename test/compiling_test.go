package test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestDev_CompilingModule: an upload whose compile outlasts the upload's wait (0.1 s here) is
// accepted as "compiling" (202 with a Location); GET /v1/modules/{id} and NATS modules.get show
// the status until it is ready; an execution sent meanwhile waits for the compile and runs;
// the same bytes uploaded with ?wait=true wait for it. The generated module compiles for
// seconds (1,000 functions of 5,000 additions each, ~35 MB).
func TestDev_CompilingModule(t *testing.T) {
	tiersFile := filepath.Join(t.TempDir(), "tiers.json")
	if err := os.WriteFile(tiersFile, []byte(`{"free": {"compile_max_ms": 300, "module_size": 52428800, "module_bytes": 104857600}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startDevEnv(t, filepath.Join(t.TempDir(), "wasmwiz-data"), "WASMWIZ_UPLOAD_WAIT=100ms", "WASMWIZ_SYNC_WAIT=2m", "WASMWIZ_TIERS_FILE="+tiersFile)
	wasm := genModule(1000, patAdd, 5000)
	r := s.do(t, http.MethodPost, "/v1/modules?name=slow", s.DevKey, "application/wasm", wasm)
	if r.Status != http.StatusAccepted {
		t.Fatalf("upload of a slow module: %d %s, want 202 (compiling)", r.Status, r.Body)
	}
	var m schemas.Module
	r.decode(t, &m)
	if m.Status != schemas.ModuleCompiling || m.CompileDeadline == nil || r.Header.Get("Location") != "/v1/modules/"+m.ID {
		t.Fatalf("202 body %+v, Location %q", m, r.Header.Get("Location"))
	}
	// Over NATS, the same record.
	nc, err := s.connectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	body, _ := json.Marshal(schemas.IDRequest{ID: m.ID})
	var nm schemas.Module
	if rep := natsMsg(t, nc, schemas.OpModulesGet, s.DevKey, body); natsStatus(rep) != 200 || json.Unmarshal(rep.Data, &nm) != nil || nm.Status == "" {
		t.Fatalf("modules.get: %d %s", natsStatus(rep), rep.Data)
	}
	t.Logf("over NATS: %s", nm.Status)

	// An execution of it now waits for the compile (up to 10 s), then queues; either way it runs.
	ex := s.run(t, s.DevKey, schemas.ExecutionRequest{ModuleID: m.ID})
	if ex.Status != schemas.StatusSucceeded {
		t.Fatalf("execution of a compiling module: %s %s", ex.Status, ex.Error)
	}
	// Queued with the compile's deadline, it waited for the upload's compile (unless that had
	// ended by the time the executor took it) rather than compiling the module a second time.
	if out := s.procs[0].output(); strings.Contains(out, "no shared artifact came") {
		t.Errorf("the execution compiled the module itself:\n%s", lastLines(out, 20))
	} else {
		t.Logf("waited for the upload's compile: %v", strings.Contains(out, "waited for its shared artifact"))
	}
	// ?wait=true on the same bytes waits for the compile and answers 201.
	r = s.do(t, http.MethodPost, "/v1/modules?name=slow&wait=true", s.DevKey, "application/wasm", wasm)
	if r.Status != http.StatusCreated {
		t.Fatalf("upload with wait=true: %d %s", r.Status, r.Body)
	}
	m = schemas.Module{}
	r.decode(t, &m)
	if m.Status != schemas.ModuleReady || m.CompileMS <= 0 || m.CompileDeadline != nil {
		t.Fatalf("module after the compile: %+v", m)
	}
	t.Logf("compiled a %.1f MB module in %.0f ms of executor time", float64(len(wasm))/1e6, m.CompileMS)
	r = s.do(t, http.MethodGet, "/v1/modules/"+m.ID, s.DevKey, "", nil)
	var got schemas.Module
	if r.decode(t, &got); got.Status != schemas.ModuleReady {
		t.Errorf("GET after ready: %+v", got)
	}

	// Over NATS the same: modules.upload answers the compiling record, and with
	// Wasmwiz-Wait: true waits for the compile (a 7.7 MB module: NATS uploads are one message of at most 8 MiB).
	small := genModule(1000, patAdd, 1100)
	var up schemas.Module
	rep := natsMsg(t, nc, schemas.OpModulesUpload, s.DevKey, small, schemas.HeaderModuleName, "small")
	if natsStatus(rep) != 200 || json.Unmarshal(rep.Data, &up) != nil || up.Status != schemas.ModuleCompiling {
		t.Fatalf("modules.upload: %d %.300s, want the compiling record", natsStatus(rep), rep.Data)
	}
	up = schemas.Module{}
	rep = natsMsg(t, nc, schemas.OpModulesUpload, s.DevKey, small, schemas.HeaderModuleName, "small", schemas.HeaderWait, "true")
	if natsStatus(rep) != 200 || json.Unmarshal(rep.Data, &up) != nil || up.Status != schemas.ModuleReady {
		t.Fatalf("modules.upload with %s: %d %.300s, want ready", schemas.HeaderWait, natsStatus(rep), rep.Data)
	}

	// A module whose compile passes its budget after the upload stopped waiting: the record
	// says failed, and why; the compile's time is billed in module.rejected (as before).
	free := s.newTenant(t, "tight", schemas.TierFree)
	// ~35 MB (not the bytes above, which an executor has compiled already), 0.9 to 10 s to
	// compile here; the free tier's budget is 0.3 s in this test.
	bomb := genModule(1000, patAdd, 5001)
	r = s.do(t, http.MethodPost, "/v1/modules", free, "application/wasm", bomb)
	if r.Status != http.StatusAccepted {
		t.Fatalf("upload of a module over its compile budget: %d %s, want 202", r.Status, r.Body)
	}
	r.decode(t, &m)
	deadline := time.Now().Add(time.Minute)
	for m.Status == schemas.ModuleCompiling && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		id := m.ID
		m = schemas.Module{}
		s.do(t, http.MethodGet, "/v1/modules/"+id, free, "", nil).decode(t, &m)
	}
	if m.Status != schemas.ModuleFailed || !strings.Contains(m.Error, "too expensive to compile") || m.CompileMS < 250 {
		t.Fatalf("module over its compile budget: %+v", m)
	}
	t.Logf("failed: %s (compile %.0f ms)", m.Error, m.CompileMS)
	if r := s.do(t, http.MethodPost, "/v1/executions", free, "application/json", []byte(`{"module_id":"`+m.ID+`"}`)); r.Status != http.StatusUnprocessableEntity {
		t.Errorf("execution of a failed module: %d %s, want 422", r.Status, r.Body)
	}
}

// TestMeasure_BigModuleCompile measures the compile of a ~30 MB generated module (4,000 functions
// of 1,100 additions; WASMWIZ_MEASURE_FUNCS sets the count) on the unlimited
// tier, uploaded by one tenant and then by another (the same bytes, compiled again: SECURITY.md,
// "Upload timing"), and each one's first execution. Run with WASMWIZ_MEASURE=1.
func TestMeasure_BigModuleCompile(t *testing.T) {
	if os.Getenv("WASMWIZ_MEASURE") == "" {
		t.Skip("set WASMWIZ_MEASURE=1")
	}
	s := startDevEnv(t, filepath.Join(t.TempDir(), "wasmwiz-data"), "WASMWIZ_SYNC_WAIT=10m")
	funcs := 4000 // WASMWIZ_MEASURE_FUNCS: more for a bigger module (7.7 KB each)
	if n, err := strconv.Atoi(os.Getenv("WASMWIZ_MEASURE_FUNCS")); err == nil && n > 0 {
		funcs = n
	}
	wasm := genModule(funcs, patAdd, 1100)
	for i, tenant := range []string{"first", "second"} {
		key := s.newTenant(t, tenant, schemas.TierUnlimited)
		start := time.Now()
		r := s.do(t, http.MethodPost, "/v1/modules?wait=true", key, "application/wasm", wasm)
		if r.Status != http.StatusCreated {
			t.Fatalf("%s upload: %d %s", tenant, r.Status, r.Body)
		}
		var m schemas.Module
		r.decode(t, &m)
		upload := time.Since(start)
		start = time.Now()
		ex := s.run(t, key, schemas.ExecutionRequest{ModuleID: m.ID})
		t.Logf("%d: %s: %.1f MB module, %d functions: compile %.0f ms (executor), upload answered in %v; first execution %s in %v (%.0f ms in the guest)",
			i, tenant, float64(len(wasm))/1e6, funcs, m.CompileMS, upload.Round(time.Millisecond), ex.Status, time.Since(start).Round(time.Millisecond), ex.DurationMS)
	}
}
