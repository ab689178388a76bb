package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

func (e *env) compile(moduleID, tier string) *schemas.CompileReply {
	e.tb.Helper()
	b, _ := json.Marshal(schemas.CompileRequest{ModuleID: moduleID, Tier: tier})
	m, err := e.nc.Request(schemas.SubjectCompile, b, time.Minute)
	if err != nil {
		e.tb.Fatalf("compile request: %v", err)
	}
	var r schemas.CompileReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		e.tb.Fatal(err)
	}
	return &r
}

func TestNode_Compile(t *testing.T) {
	e := startEnv(t, nil)
	hello := e.putModule(fixtures.Wasm("hello"))
	r := e.compile(hello, schemas.TierFree)
	if r.Error != nil || r.NodeID != e.node.NodeID() || r.CompileMS <= 0 {
		t.Fatalf("hello: %+v", r)
	}
	// The compile warmed the caches: the execution finds the file and the compiled module.
	if res := e.execute(newRequest(schemas.TierFree, hello)); res.Status != schemas.StatusSucceeded {
		t.Fatalf("hello: %s", res.Status)
	}
	if hits := counterValue(t, e.node.m.cacheHits.WithLabelValues("file")); hits < 1 {
		t.Errorf("file cache hits %v", hits)
	}

	r = e.compile(e.putModule([]byte("\x00asm\x01\x00\x00\x00\x01\x05")), schemas.TierFree)
	if r.Error == nil || r.Error.Code != schemas.CodeInvalidModule || r.Error.Message == "" {
		t.Errorf("garbage: %+v", r.Error)
	}
	t.Logf("garbage: %v", r.Error)
	r = e.compile(e.putModule(fixtures.Wasm("bigmem")), schemas.TierFree)
	if r.Error == nil || r.Error.Code != schemas.CodeInvalidModule || !strings.Contains(r.Error.Message, "over limit") {
		t.Errorf("bigmem: %+v", r.Error)
	}
	r = e.compile(schemas.ModuleID(strings.Repeat("ab", 32)), schemas.TierFree)
	if r.Error == nil || r.Error.Code != schemas.CodeNotFound {
		t.Errorf("missing: %+v", r.Error)
	}
	r = e.compile(hello, "platinum")
	if r.Error == nil || r.Error.Code != schemas.CodeInvalid {
		t.Errorf("unknown tier: %+v", r.Error)
	}

	// Ping: every executor answers with its id.
	m, err := e.nc.Request(schemas.SubjectExecutorPing, nil, 10*time.Second)
	if err != nil || string(m.Data) != e.node.NodeID() {
		t.Errorf("ping: %v %q", err, m.Data)
	}
}

// TestNode_Compile_TooExpensive compiles a small module whose compilation time grows
// quadratically (thousands of blocks over a thousand live locals): the worker is killed at the
// compile timeout and the node stays healthy.
func TestNode_Compile_TooExpensive(t *testing.T) {
	e := startEnv(t, func(c *Config) { c.CompileTimeout = 500 * time.Millisecond })
	bomb := e.putModule(compileBomb(1000, 10_000))
	start := time.Now()
	r := e.compile(bomb, schemas.TierFree)
	if r.Error == nil || r.Error.Code != schemas.CodeInvalidModule || !strings.HasPrefix(r.Error.Message, "module too expensive to compile: ") {
		t.Fatalf("compile bomb: %+v", r.Error)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("answered after %v, compile timeout 500ms", took)
	}
	// Executing it is stopped the same way.
	res := e.execute(newRequest(schemas.TierFree, bomb))
	if res.Status != schemas.StatusKilled || !strings.HasPrefix(res.Error, "module too expensive to compile") {
		t.Errorf("executing the bomb: %s %q", res.Status, res.Error)
	}
	if got := counterValue(t, e.node.m.workerRestarts.WithLabelValues("compile_timeout")); got != 2 {
		t.Errorf("restarts{compile_timeout} = %v, want 2", got)
	}
	if !e.node.Ready() {
		t.Error("node not ready")
	}
}

// TestNode_CompileKeepsExecutionWorkers: a compile in progress does not take a worker an
// execution counts on. A node with one execution worker compiles a bomb (killed at its budget);
// an execution started once the compile holds its worker finishes while the compile still runs.
// The proof is the order of the two replies, not a duration: the node sends both on one
// connection, and this test receives both on one, so had the execution waited for the compile's
// worker, the compile's reply would have arrived first.
func TestNode_CompileKeepsExecutionWorkers(t *testing.T) {
	e := startEnv(t, func(c *Config) { c.Workers, c.CompileTimeout = 1, 5*time.Second })
	hello := e.putModule(fixtures.Wasm("hello"))
	if res := e.execute(newRequest(schemas.TierFree, hello)); res.Status != schemas.StatusSucceeded { // warm
		t.Fatalf("hello: %s %q", res.Status, res.Error)
	}
	bomb := e.putModule(compileBomb(1000, 20_000)) // compiles for far longer than 5 s
	compiled, err := e.nc.SubscribeSync(e.nc.NewRespInbox())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(schemas.CompileRequest{ModuleID: bomb, Tier: schemas.TierFree})
	if err := e.nc.PublishRequest(schemas.SubjectCompile, compiled.Subject, b); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, time.Minute, poll, func() error {
		if busy := counterValue(t, e.node.m.workersBusy); busy != 1 {
			return fmt.Errorf("%v workers busy, want 1 (the compile's)", busy)
		}
		return nil
	})
	if res := e.execute(newRequest(schemas.TierFree, hello)); res.Status != schemas.StatusSucceeded {
		t.Fatalf("hello during the compile: %s %q", res.Status, res.Error)
	}
	if n, _, _ := compiled.Pending(); n != 0 {
		t.Fatal("the compile answered before the execution did: the execution waited for the compile's worker, or the bomb compiled within its budget")
	}
	m, err := compiled.NextMsg(time.Minute)
	if err != nil {
		t.Fatalf("compile reply: %v", err)
	}
	var r schemas.CompileReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	if r.Error == nil || !strings.HasPrefix(r.Error.Message, "module too expensive to compile") {
		t.Errorf("bomb: %+v, want too expensive to compile", r.Error)
	}
}

// compileBomb builds a module with one function of `blocks` blocks, each reading and writing
// some of `locals` i32 locals and branching out: cheap to store, slow to compile.
func compileBomb(locals, blocks int) []byte {
	body := append([]byte{1}, leb128(locals)...)
	body = append(body, 0x7f) // i32
	for i := range blocks {
		a, b := leb128(i%locals), leb128((i*7+3)%locals)
		body = append(body, 0x02, 0x40) // block
		body = append(body, 0x20)       // local.get a
		body = append(body, a...)
		body = append(body, 0x20) // local.get b
		body = append(body, b...)
		body = append(body, 0x6a, 0x21) // i32.add; local.set a
		body = append(body, a...)
		body = append(body, 0x20) // local.get a
		body = append(body, a...)
		body = append(body, 0x0d, 0x00, 0x0b) // br_if 0; end
	}
	body = append(body, 0x0b)
	section := func(id byte, content []byte) []byte {
		return append(append([]byte{id}, leb128(len(content))...), content...)
	}
	m := []byte("\x00asm\x01\x00\x00\x00")
	m = append(m, section(1, []byte{1, 0x60, 0, 0})...)                                     // type: () -> ()
	m = append(m, section(3, []byte{1, 0})...)                                              // one function of type 0
	m = append(m, section(7, append([]byte{1, 6}, append([]byte("_start"), 0, 0)...))...)   // export _start
	m = append(m, section(10, append([]byte{1}, append(leb128(len(body)), body...)...))...) // code
	return m
}

func leb128(n int) []byte {
	var out []byte
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n == 0 {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}

// TestSecurity_UploadOfKnownBytesCompilesAgain (issue 12, upload timing): an upload of bytes
// another tenant already uploaded took 70 ms against 1.6 s for new bytes, because its compile
// was answered from the caches the first upload had filled. Every upload's compile now does
// the same work: a compile afresh, which writes a new artifact (the file in the node's cache
// is replaced, not reused) and counts as a compiled-cache miss, however often the module was
// compiled and run before; only the first one is shared with the other nodes.
func TestSecurity_UploadOfKnownBytesCompilesAgain(t *testing.T) {
	e := startEnv(t, nil)
	hello := e.putModule(fixtures.Wasm("hello"))
	if r := e.compile(hello, schemas.TierFree); r.Error != nil || r.CompileMS <= 0 { // tenant A's upload
		t.Fatalf("first compile: %+v", r)
	}
	// The module runs, so every cache holds it: the node's file, the worker's compiled module.
	for range 2 {
		if res := e.execute(newRequest(schemas.TierFree, hello)); res.Status != schemas.StatusSucceeded {
			t.Fatalf("hello: %s", res.Status)
		}
	}
	first := cacheFiles(t, e.node)
	if len(first) != 1 {
		t.Fatalf("cache after the first upload: %v", keys(first))
	}
	misses := counterValue(t, e.node.m.cacheMisses.WithLabelValues("compiled"))
	compiles := counterValue(t, e.node.m.compileDuration)
	artifacts := func() uint64 {
		t.Helper()
		s, err := e.js.Stream(context.Background(), "OBJ_"+schemas.ObjectCompiled)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	held := artifacts()
	for i := range 3 { // tenants B, C and D upload the same bytes
		start := time.Now()
		if r := e.compile(hello, schemas.TierFree); r.Error != nil || r.CompileMS <= 0 {
			t.Fatalf("compile %d of known bytes: %+v", i, r)
		}
		// Its artifact is stored aside and removed again, by the executor's own NATS user, which
		// may not purge: PutAside's purges waited out their timeout and left it in the store.
		if took := time.Since(start); took > 4*time.Second {
			t.Errorf("compile %d of known bytes answered after %v", i, took)
		}
		if now := artifacts(); now != held {
			t.Errorf("compile %d of known bytes: the artifact store holds %d messages, %d before (the aside artifact stayed)", i, now, held)
		}
		again := cacheFiles(t, e.node)
		for p, fi := range again {
			if before, ok := first[p]; !ok || os.SameFile(before, fi) {
				t.Fatalf("compile %d of known bytes reused the cached artifact %s instead of compiling", i, p)
			}
		}
		first = again
	}
	if got := counterValue(t, e.node.m.cacheMisses.WithLabelValues("compiled")) - misses; got != 3 {
		t.Errorf("compiled-cache misses for three uploads of known bytes: %v, want 3", got)
	}
	if got := counterValue(t, e.node.m.compileDuration) - compiles; got != 3 {
		t.Errorf("compiles timed for three uploads of known bytes: %v, want 3", got)
	}
	if got := counterValue(t, e.node.m.cacheHits.WithLabelValues("compiled")); got > 2 {
		t.Errorf("compiled-cache hits %v: an upload was answered from the cache", got)
	}
}

// TestNode_Compile_BudgetIsCPUTime: a compile's budget is CPU time, not time on the wall
// clock. A busy node gives a compile less than a core: @ruby's ruby (a 20 MB module, 19 s of
// CPU to compile) on a basic tenant's 30 s budget was stopped at 30 s of wall time with 20 s
// of CPU on a loaded node and called "too expensive", and compiled when uploaded again. Here a
// compile that needs well under its budget of CPU is starved of it (its worker stopped with
// SIGSTOP) past the budget: it must still compile, within three times the budget on the wall. And a
// compile starved until three times its budget is answered as the executor's load (unavailable, sent
// again by the gateway), not as the module's cost.
func TestNode_Compile_BudgetIsCPUTime(t *testing.T) {
	const budget = 1500 * time.Millisecond
	e := startEnv(t, func(c *Config) { c.CompileTimeout = budget })
	// starve sends a compile of module, stops its worker for d once the compile holds it, and
	// returns the reply.
	starve := func(t *testing.T, module string, d time.Duration) *schemas.CompileReply {
		t.Helper()
		replies, err := e.nc.SubscribeSync(e.nc.NewRespInbox())
		if err != nil {
			t.Fatal(err)
		}
		defer replies.Unsubscribe()
		b, _ := json.Marshal(schemas.CompileRequest{ModuleID: module, Tier: schemas.TierFree})
		if err := e.nc.PublishRequest(schemas.SubjectCompile, replies.Subject, b); err != nil {
			t.Fatal(err)
		}
		stopBusyWorker(t, e, d)
		m, err := replies.NextMsg(time.Minute)
		if err != nil {
			t.Fatalf("compile reply: %v", err)
		}
		var r schemas.CompileReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}

	t.Run("starved past the budget", func(t *testing.T) {
		small := e.putModule(compileBomb(100, 2_000)) // a fraction of the budget's CPU
		start := time.Now()
		if r := starve(t, small, budget+500*time.Millisecond); r.Error != nil {
			t.Fatalf("a compile stopped for %v, past its budget of %v of CPU: %v", budget+500*time.Millisecond, budget, r.Error)
		}
		t.Logf("compiled in %v", time.Since(start))
	})
	t.Run("starved past three times the budget", func(t *testing.T) {
		bomb := e.putModule(compileBomb(1000, 20_000)) // far more than the budget's CPU
		r := starve(t, bomb, 3*budget+500*time.Millisecond)
		if r.Error == nil || r.Error.Code != schemas.CodeUnavailable || !strings.Contains(r.Error.Message, "busy") {
			t.Fatalf("a compile stopped until past three times its budget: %+v, want unavailable (the executor was busy)", r.Error)
		}
		t.Log(r.Error.Message)
	})
	t.Run("too expensive", func(t *testing.T) {
		// Not starved: killed once it has had its budget of CPU, as before.
		r := e.compile(e.putModule(compileBomb(1000, 20_000)), schemas.TierFree)
		if r.Error == nil || r.Error.Code != schemas.CodeInvalidModule || !strings.HasPrefix(r.Error.Message, "module too expensive to compile: ") {
			t.Fatalf("compile bomb: %+v", r.Error)
		}
	})
}

// stopBusyWorker waits for a worker of e's node to take a job (the only one under way), stops
// it with SIGSTOP for d, as a node too busy to give it a CPU would, and lets it go on.
func stopBusyWorker(t *testing.T, e *env, d time.Duration) {
	t.Helper()
	var busy *proc
	natstest.CheckFor(t, time.Minute, time.Millisecond, func() error {
		p := e.node.pool
		p.mu.Lock()
		defer p.mu.Unlock()
		for pr := range p.all {
			if !slices.Contains(p.idle, pr) && !pr.dead.Load() {
				busy = pr
				return nil
			}
		}
		return errors.New("no worker holds the job yet")
	})
	if err := syscall.Kill(busy.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	_ = syscall.Kill(busy.pid, syscall.SIGCONT)
}
