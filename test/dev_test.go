package test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// One dev system serves the REST tests; each test uses its own tenant where isolation matters.
func TestDev_REST(t *testing.T) {
	s := startDev(t, t.TempDir())
	key := s.DevKey

	hello := s.upload(t, key, "hello", fixtures.Wasm("hello"))
	probe := s.upload(t, key, "probe", fixtures.Probe(t))

	t.Run("upload", func(t *testing.T) {
		sum := sha256.Sum256(fixtures.Wasm("hello"))
		if want := "sha256:" + hex.EncodeToString(sum[:]); hello.ID != want {
			t.Fatalf("id %s, want %s", hello.ID, want)
		}
		if !contains(hello.Imports, "wasi_snapshot_preview1.fd_write") || !contains(hello.Exports, "_start") {
			t.Errorf("imports %v exports %v", hello.Imports, hello.Exports)
		}
		again := s.upload(t, key, "hello", fixtures.Wasm("hello"))
		if again.ID != hello.ID {
			t.Errorf("same bytes, new id %s", again.ID)
		}
		r := s.do(t, http.MethodGet, "/v1/modules", key, "", nil)
		var l schemas.ModuleList
		r.decode(t, &l)
		if len(l.Modules) != 2 {
			t.Errorf("list has %d modules, want 2: %s", len(l.Modules), r.Body)
		}
		if r := s.do(t, http.MethodGet, "/v1/modules/"+hello.ID, key, "", nil); r.Status != 200 {
			t.Errorf("get module: %d", r.Status)
		}
	})

	t.Run("upload rejects", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			wasm   []byte
			status int
			code   string
			detail string
		}{
			{"garbage", []byte("not wasm at all"), 422, "invalid_module", "not a WebAssembly module"},
			{"nostart", fixtures.Wasm("nostart"), 422, "invalid_module", "_start"},
			{"badimport", fixtures.Wasm("badimport"), 422, "invalid_module", "env.foo"},
			{"empty module", []byte("\x00asm\x01\x00\x00\x00"), 422, "invalid_module", "_start"},
		} {
			r := s.do(t, http.MethodPost, "/v1/modules", key, "application/wasm", tc.wasm)
			if r.Status != tc.status {
				t.Errorf("%s: status %d, want %d: %s", tc.name, r.Status, tc.status, r.Body)
				continue
			}
			code, detail := r.problem(t)
			if code != tc.code || !strings.Contains(detail, tc.detail) {
				t.Errorf("%s: code %q detail %q, want %q containing %q", tc.name, code, detail, tc.code, tc.detail)
			}
		}
		freeKey := s.newTenant(t, "uploader-free", "free")
		big := make([]byte, 11<<20)
		copy(big, fixtures.Wasm("hello"))
		r := s.do(t, http.MethodPost, "/v1/modules", freeKey, "application/wasm", big)
		// The refusal names the setting and the tiers that allow the module (a 75.5 MB clang
		// on pro said only "request body is over the pro tier's limit of 52428800 bytes").
		tiers := schemas.DefaultTiers()
		want := fmt.Sprintf("a body of %d bytes is over the free tier's module_size of %d bytes; basic allows %d, pro allows %d, unlimited allows %d",
			len(big), tiers["free"].ModuleSize, tiers["basic"].ModuleSize, tiers["pro"].ModuleSize, tiers["unlimited"].ModuleSize)
		if code, detail := r.problem(t); r.Status != 413 || code != "too_large" || detail != want {
			t.Errorf("11 MiB on free: %d %s, want detail %q", r.Status, r.Body, want)
		}
	})

	t.Run("sync execution", func(t *testing.T) {
		e := s.run(t, key, schemas.ExecutionRequest{ModuleID: hello.ID})
		if e.Status != schemas.StatusSucceeded || *e.ExitCode != 0 || e.Stdout != "hello, world\n" {
			t.Fatalf("hello: %+v", e)
		}
		if e.StartedAt == nil || e.FinishedAt == nil || e.ModuleID != hello.ID || e.MemoryPeakBytes <= 0 {
			t.Errorf("missing fields: %+v", e)
		}
		stdin := strings.Repeat("wasmwiz ", 10000)
		sum := sha256.Sum256([]byte(stdin))
		e = s.run(t, key, schemas.ExecutionRequest{ModuleID: probe.ID, Stdin: stdin})
		if e.Stdout != hex.EncodeToString(sum[:])+"\n" {
			t.Errorf("probe sha256: %q", e.Stdout)
		}
		bin := []byte{0, 1, 2, 255, 254}
		sum = sha256.Sum256(bin)
		e = s.run(t, key, schemas.ExecutionRequest{ModuleID: probe.ID, StdinBase64: base64.StdEncoding.EncodeToString(bin)})
		if e.Stdout != hex.EncodeToString(sum[:])+"\n" {
			t.Errorf("probe sha256 of binary stdin: %q", e.Stdout)
		}
		e = s.run(t, key, schemas.ExecutionRequest{ModuleID: probe.ID, Args: []string{"args", "x y"}, Env: map[string]string{"GREETING": "hi"}})
		if want := "probe\nargs\nx y\n--\nGREETING=hi\n"; e.Stdout != want {
			t.Errorf("args/env: %q, want %q", e.Stdout, want)
		}
		// argv0 names the program as a multi-call binary (LLVM's clang and wasm-ld) needs it.
		e = s.run(t, key, schemas.ExecutionRequest{ModuleID: probe.ID, Argv0: "wasm-ld", Args: []string{"args"}})
		if want := "wasm-ld\nargs\n--\n"; e.Stdout != want {
			t.Errorf("argv0: %q, want %q", e.Stdout, want)
		}
		e = s.run(t, key, schemas.ExecutionRequest{ModuleBase64: base64.StdEncoding.EncodeToString(fixtures.Wasm("echo")), Stdin: "inline"})
		if e.Stdout != "inline" {
			t.Errorf("inline module: %+v", e)
		}
	})

	t.Run("exit codes and traps", func(t *testing.T) {
		exit7 := s.upload(t, key, "exit7", fixtures.Wasm("exit7"))
		e := s.run(t, key, schemas.ExecutionRequest{ModuleID: exit7.ID})
		if e.Status != schemas.StatusFailed || *e.ExitCode != 7 {
			t.Errorf("exit7: %+v", e)
		}
		e = s.run(t, key, schemas.ExecutionRequest{ModuleID: probe.ID, Args: []string{"exit", "0"}})
		if e.Status != schemas.StatusSucceeded || *e.ExitCode != 0 {
			t.Errorf("exit 0: %+v", e)
		}
		e = s.run(t, key, schemas.ExecutionRequest{ModuleID: probe.ID, Args: []string{"stderr", "oops"}})
		if e.Stderr != "oops" {
			t.Errorf("stderr: %+v", e)
		}
		for _, name := range []string{"trap", "divzero", "recursion"} {
			m := s.upload(t, key, name, fixtures.Wasm(name))
			e := s.run(t, key, schemas.ExecutionRequest{ModuleID: m.ID})
			if e.Status != schemas.StatusFailed || *e.ExitCode != -1 || !strings.Contains(e.Error, "trap") {
				t.Errorf("%s: %+v", name, e)
			}
		}
	})

	t.Run("limits", func(t *testing.T) {
		loop := s.upload(t, key, "loop", fixtures.Wasm("loop"))
		start := time.Now()
		e := s.run(t, key, schemas.ExecutionRequest{ModuleID: loop.ID, TimeoutMS: 300})
		if e.Status != schemas.StatusTimedOut || time.Since(start) > 5*time.Second {
			t.Errorf("loop: %+v after %v", e, time.Since(start))
		}
		exp := s.upload(t, key, "expcalls", fixtures.Wasm("expcalls"))
		start = time.Now()
		e = s.run(t, key, schemas.ExecutionRequest{ModuleID: exp.ID, TimeoutMS: 300})
		if e.Status != schemas.StatusTimedOut || e.DurationMS > 1300 {
			t.Errorf("expcalls: %+v after %v", e, time.Since(start))
		}
		// The node goes on serving after a kill.
		if e := s.run(t, key, schemas.ExecutionRequest{ModuleID: hello.ID}); e.Status != schemas.StatusSucceeded {
			t.Errorf("hello after kill: %+v", e)
		}
		mem := s.upload(t, key, "memgrow", fixtures.Wasm("memgrow"))
		e = s.run(t, key, schemas.ExecutionRequest{ModuleID: mem.ID, MemoryMB: 16})
		if e.Status != schemas.StatusSucceeded || strings.TrimSpace(e.Stdout) != "256" {
			t.Errorf("memgrow 16 MiB: %+v", e)
		}
		flood := s.upload(t, key, "stdoutflood", fixtures.Wasm("stdoutflood"))
		e = s.run(t, key, schemas.ExecutionRequest{ModuleID: flood.ID})
		if e.Status != schemas.StatusSucceeded || !e.StdoutTruncated || len(e.Stdout) != 1<<20 {
			t.Errorf("stdoutflood: status %s truncated %v len %d", e.Status, e.StdoutTruncated, len(e.Stdout))
		}
		for _, tc := range []struct {
			req    schemas.ExecutionRequest
			status int
			code   string
		}{
			{schemas.ExecutionRequest{ModuleID: hello.ID, TimeoutMS: 31_000}, 422, "invalid"},
			{schemas.ExecutionRequest{ModuleID: hello.ID, MemoryMB: 513}, 422, "invalid"},
			{schemas.ExecutionRequest{ModuleID: hello.ID, Stdin: strings.Repeat("x", 1<<20+1)}, 413, "too_large"},
			{schemas.ExecutionRequest{}, 422, "invalid"},
			{schemas.ExecutionRequest{ModuleID: "sha256:" + strings.Repeat("0", 64)}, 404, "not_found"},
			{schemas.ExecutionRequest{ModuleID: hello.ID, StdinBase64: "***"}, 422, "invalid"},
		} {
			r, _ := s.execute(t, key, tc.req)
			if r.Status != tc.status {
				t.Errorf("%+v: %d %s, want %d", tc.req.TimeoutMS, r.Status, r.Body, tc.status)
				continue
			}
			if code, _ := r.problem(t); code != tc.code {
				t.Errorf("code %q, want %q", code, tc.code)
			}
		}
	})

	t.Run("async", func(t *testing.T) {
		r, e := s.execute(t, key, schemas.ExecutionRequest{ModuleID: hello.ID, Async: true})
		if r.Status != 202 || e.Status != schemas.StatusQueued || e.ID == "" {
			t.Fatalf("async: %d %s", r.Status, r.Body)
		}
		if loc := r.Header.Get("Location"); loc != "/v1/executions/"+e.ID {
			t.Errorf("Location %q", loc)
		}
		got := poll(t, s, key, e.ID)
		if got.Status != schemas.StatusSucceeded || got.Stdout != "hello, world\n" {
			t.Errorf("polled: %+v", got)
		}
	})

	t.Run("sync wait runs out", func(t *testing.T) {
		// A gateway that waits at most 2 s (WASMWIZ_SYNC_WAIT) answers a 4 s guest with a 202; the
		// execution goes on after it. (The dev system itself waits long: under load a short
		// synchronous execution may take seconds.)
		addr := freeAddr(t)
		waitReady(t, "http://"+addr, start(t, append(s.natsRoleEnv("gateway"), "WASMWIZ_HTTP_ADDR="+addr, "WASMWIZ_SYNC_WAIT=2s"), "gateway"))
		g := &system{URL: "http://" + addr}
		loop := s.upload(t, key, "loop", fixtures.Wasm("loop"))
		r, e := g.execute(t, key, schemas.ExecutionRequest{ModuleID: loop.ID, TimeoutMS: 4000})
		if r.Status != 202 || e.Status.Final() {
			t.Fatalf("long sync request: %d %s", r.Status, r.Body)
		}
		if got := poll(t, g, key, e.ID); got.Status != schemas.StatusTimedOut || got.DurationMS < 3900 {
			t.Errorf("after the 202: %+v", got)
		}
	})

	t.Run("binary output", func(t *testing.T) {
		echo := s.upload(t, key, "echo", fixtures.Wasm("echo"))
		bin := []byte{0xff, 0xfe, 0x00, 'x'}
		e := s.run(t, key, schemas.ExecutionRequest{ModuleID: echo.ID, StdinBase64: base64.StdEncoding.EncodeToString(bin)})
		if e.StdoutEncoding != "base64" || e.Stdout != base64.StdEncoding.EncodeToString(bin) {
			t.Errorf("non-UTF-8 stdout: %q encoding %q", e.Stdout, e.StdoutEncoding)
		}
		e = s.run(t, key, schemas.ExecutionRequest{ModuleID: echo.ID, Stdin: "héllo"})
		if e.StdoutEncoding != "" || e.Stdout != "héllo" {
			t.Errorf("UTF-8 stdout: %q encoding %q", e.Stdout, e.StdoutEncoding)
		}
	})

	t.Run("idempotency", func(t *testing.T) {
		req := schemas.ExecutionRequest{ModuleID: probe.ID, Stdin: "once"}
		r1, e1 := s.execute(t, key, req, "Idempotency-Key", "k-1")
		r2, e2 := s.execute(t, key, req, "Idempotency-Key", "k-1")
		if r1.Status != 200 || r2.Status != 200 || e1.ID != e2.ID || *e1.FinishedAt != *e2.FinishedAt {
			t.Errorf("same key: %d %s / %d %s", r1.Status, r1.Body, r2.Status, r2.Body)
		}
		r3, _ := s.execute(t, key, schemas.ExecutionRequest{ModuleID: probe.ID, Stdin: "other"}, "Idempotency-Key", "k-1")
		if code, _ := r3.problem(t); r3.Status != 409 || code != "conflict" {
			t.Errorf("other body, same key: %d %s", r3.Status, r3.Body)
		}
	})

	t.Run("tenant isolation", func(t *testing.T) {
		otherKey := s.newTenant(t, "other", "basic")
		if r := s.do(t, http.MethodGet, "/v1/modules/"+hello.ID, otherKey, "", nil); r.Status != 404 {
			t.Errorf("other tenant's module: %d", r.Status)
		}
		if r, _ := s.execute(t, otherKey, schemas.ExecutionRequest{ModuleID: hello.ID}); r.Status != 404 {
			t.Errorf("run other tenant's module: %d", r.Status)
		}
		mine := s.run(t, key, schemas.ExecutionRequest{ModuleID: hello.ID})
		if r := s.do(t, http.MethodGet, "/v1/executions/"+mine.ID, otherKey, "", nil); r.Status != 404 {
			t.Errorf("other tenant's execution: %d", r.Status)
		}
		if r := s.do(t, http.MethodDelete, "/v1/modules/"+hello.ID, otherKey, "", nil); r.Status != 404 {
			t.Errorf("delete other tenant's module: %d", r.Status)
		}
		// The same bytes uploaded by the other tenant are theirs too; deleting theirs keeps ours.
		theirs := s.upload(t, otherKey, "hello", fixtures.Wasm("hello"))
		if r := s.do(t, http.MethodDelete, "/v1/modules/"+theirs.ID, otherKey, "", nil); r.Status != 204 {
			t.Errorf("delete own module: %d %s", r.Status, r.Body)
		}
		if e := s.run(t, key, schemas.ExecutionRequest{ModuleID: hello.ID}); e.Status != schemas.StatusSucceeded {
			t.Errorf("ours after theirs deleted: %+v", e)
		}
		if r := s.do(t, http.MethodPost, "/v1/admin/tenants", key, "application/json", []byte(`{"id":"x","tier":"pro"}`)); r.Status != 403 {
			t.Errorf("tenant key on admin endpoint: %d", r.Status)
		}
	})

	t.Run("unauthorized", func(t *testing.T) {
		for _, k := range []string{"", "nope", "ww_" + strings.Repeat("A", 43) + "_AAAAAA"} {
			r := s.do(t, http.MethodGet, "/v1/modules", k, "", nil)
			if code, _ := r.problem(t); r.Status != 401 || code != "unauthorized" {
				t.Errorf("key %q: %d %s", k, r.Status, r.Body)
			}
		}
		fresh, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: hello.ID})
		if r := s.do(t, http.MethodPost, "/v1/executions", "", "application/json", fresh); r.Status != 401 {
			t.Errorf("execute without key: %d", r.Status)
		}
	})

	t.Run("compat", func(t *testing.T) {
		r := compat(t, s, key, fixtures.Wasm("echo"), "ping")
		if r.Status != 200 || string(r.Body) != `{"output":"ping","error":null}`+"\n" {
			t.Errorf("compat echo: %d %s", r.Status, r.Body)
		}
		r = compat(t, s, key, []byte("nope"), "")
		if r.Status != 400 || !strings.Contains(string(r.Body), `"output":null`) {
			t.Errorf("compat not wasm: %d %s", r.Status, r.Body)
		}
		r = compat(t, s, key, fixtures.Wasm("exit7"), "")
		if r.Status != 422 || !strings.Contains(string(r.Body), "exit code 7") {
			t.Errorf("compat exit7: %d %s", r.Status, r.Body)
		}
		r = compat(t, s, key, make([]byte, 10<<20+1), "")
		if r.Status != 413 {
			t.Errorf("compat too big: %d %s", r.Status, r.Body)
		}
		r = compat(t, s, "", fixtures.Wasm("echo"), "")
		if r.Status != 401 {
			t.Errorf("compat without key: %d %s", r.Status, r.Body)
		}
	})

	t.Run("health and metrics", func(t *testing.T) {
		for _, p := range []string{"/health", "/health/live", "/health/ready", "/openapi.json"} {
			if r := s.do(t, http.MethodGet, p, "", "", nil); r.Status != 200 {
				t.Errorf("%s: %d", p, r.Status)
			}
		}
		r := s.do(t, http.MethodGet, "/metrics", "", "", nil)
		for _, name := range []string{"wasmwiz_http_requests_total", "wasmwiz_http_request_duration_seconds", "wasmwiz_executions_total",
			"wasmwiz_execution_duration_seconds", "wasmwiz_queue_wait_seconds", "wasmwiz_module_cache_hits_total", "wasmwiz_module_cache_misses_total", "wasmwiz_worker_restarts_total"} {
			if !bytes.Contains(r.Body, []byte(name)) {
				t.Errorf("/metrics lacks %s", name)
			}
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func poll(t testing.TB, s *system, key, id string) *schemas.Execution {
	t.Helper()
	var e schemas.Execution
	natstest.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		r := s.do(t, http.MethodGet, "/v1/executions/"+id, key, "", nil)
		if r.Status != 200 {
			t.Fatalf("get execution: %d %s", r.Status, r.Body)
		}
		r.decode(t, &e)
		if !e.Status.Final() {
			return fmt.Errorf("execution %s is %s, not final", id, e.Status)
		}
		return nil
	})
	return &e
}

func compat(t testing.TB, s *system, key string, wasm []byte, input string) *response {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("wasm", "main.wasm")
	_, _ = fw.Write(wasm)
	_ = mw.WriteField("input", input)
	_ = mw.Close()
	return s.do(t, http.MethodPost, "/api/execute", key, mw.FormDataContentType(), body.Bytes())
}
