package executor

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/executor/worker"
	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// env is a running node on a real embedded JetStream server, seen from a gateway's side.
type env struct {
	tb      testing.TB
	srv     *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	node    *Node
	results jetstream.KeyValue
	modules jetstream.ObjectStore
	stop    context.CancelFunc
	done    chan struct{} // closed when Run has returned
	runErr  *error
}

// testTiers are the default tiers with room for many requests of one tenant in flight: these
// tests fill the queues on purpose (the gateway's tests cover the in-flight cap).
func testTiers() map[string]schemas.Tier {
	tiers := schemas.DefaultTiers()
	for name, t := range tiers {
		t.InFlight = 1000
		tiers[name] = t
	}
	return tiers
}

func testConfig(tb testing.TB) Config {
	return Config{
		Tiers:          testTiers(),
		NodeID:         "node-" + tb.Name(),
		Workers:        2,
		WorkerCommand:  []string{os.Args[0]},
		WorkerEnv:      []string{workerEnv},
		CacheDir:       tb.TempDir(),
		CompileTimeout: time.Minute, // compiling the Go probe takes seconds on a busy machine
		Logger:         testLogger(tb),
		Registerer:     prometheus.NewRegistry(),
	}
}

func startEnv(tb testing.TB, mod func(*Config)) *env {
	tb.Helper()
	s := natstest.RunJetStreamRoles(tb, "executor") // the node may do only what a deployed executor may
	// The test's own connection stands for a gateway: its inboxes are where the executor's user
	// may answer (schemas.ExecutorReplyPrefix).
	e := &env{tb: tb, srv: s, nc: natstest.Connect(tb, s, nats.CustomInboxPrefix(schemas.ExecutorReplyPrefix+".test"))}
	e.startNode(mod)
	var err error
	if e.js, err = jetstream.New(e.nc); err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	if e.results, err = e.js.KeyValue(ctx, schemas.BucketResults); err != nil {
		tb.Fatal(err)
	}
	if e.modules, err = e.js.ObjectStore(ctx, schemas.ObjectModules); err != nil {
		tb.Fatal(err)
	}
	return e
}

// startNode starts a node (another one, if one runs already) on the env's server.
func (e *env) startNode(mod func(*Config)) *Node {
	e.tb.Helper()
	cfg := testConfig(e.tb)
	if mod != nil {
		mod(&cfg)
	}
	// What the gateway does at start: an executor only waits for the streams.
	if err := streams.Ensure(context.Background(), natstest.JetStream(e.tb, e.srv), streams.Options{Replicas: cfg.Replicas, Tiers: cfg.Tiers}); err != nil {
		e.tb.Fatal(err)
	}
	node, err := New(cfg, natstest.ConnectRole(e.tb, e.srv, "executor"))
	if err != nil {
		e.tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = node.Run(ctx)
	}()
	e.tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			e.tb.Errorf("node %s did not stop", cfg.NodeID)
		}
	})
	natstest.CheckFor(e.tb, 30*time.Second, poll, state(node.Ready, func() string { return fmt.Sprintf("node %s not ready", cfg.NodeID) }))
	e.node, e.stop, e.done, e.runErr = node, cancel, done, &runErr
	return node
}

// putModule stores a module as the gateway does and returns its id.
func (e *env) putModule(bin []byte) string {
	e.tb.Helper()
	sum := sha256.Sum256(bin)
	h := hex.EncodeToString(sum[:])
	if _, err := e.modules.PutBytes(context.Background(), schemas.ModuleObjectName(h), bin); err != nil {
		e.tb.Fatal(err)
	}
	return schemas.ModuleID(h)
}

func newExecutionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "ex_" + hex.EncodeToString(b[:])
}

func newRequest(tier, moduleID string) *schemas.ExecRequest {
	return &schemas.ExecRequest{
		ExecutionID: newExecutionID(),
		TenantID:    "acme",
		KeyID:       "key1",
		Tier:        tier,
		ModuleID:    moduleID,
		ModuleName:  "guest.wasm",
		CreatedAt:   time.Now().UTC(),
	}
}

// publish sends req the way a gateway does, with a reply inbox; it returns the subscription
// that receives the reply.
func (e *env) publish(req *schemas.ExecRequest, msgID string) *nats.Subscription {
	e.tb.Helper()
	inbox := e.nc.NewRespInbox()
	sub, err := e.nc.SubscribeSync(inbox)
	if err != nil {
		e.tb.Fatal(err)
	}
	e.tb.Cleanup(func() { _ = sub.Unsubscribe() })
	b, err := json.Marshal(req)
	if err != nil {
		e.tb.Fatal(err)
	}
	m := nats.NewMsg(schemas.ExecSubject(req.Tier, req.TenantID))
	m.Data = b
	if msgID == "" {
		msgID = req.ExecutionID
	}
	m.Header.Set(schemas.HeaderMsgID, msgID)
	m.Header.Set(schemas.HeaderExecutionID, req.ExecutionID)
	m.Header.Set(schemas.HeaderRequestID, "req-"+req.ExecutionID)
	m.Header.Set(schemas.HeaderReply, inbox)
	m.Header.Set(schemas.HeaderDeadline, strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
	if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
		e.tb.Fatal(err)
	}
	return sub
}

func (e *env) wait(sub *nats.Subscription, timeout time.Duration) *schemas.Result {
	e.tb.Helper()
	m, err := sub.NextMsg(timeout)
	if err != nil {
		e.tb.Fatalf("no reply: %v", err)
	}
	var res schemas.Result
	if err := json.Unmarshal(m.Data, &res); err != nil {
		e.tb.Fatal(err)
	}
	if got := m.Header.Get(schemas.HeaderExecutionID); got != res.ID {
		e.tb.Errorf("reply header execution id %q, result %q", got, res.ID)
	}
	return &res
}

func (e *env) execute(req *schemas.ExecRequest) *schemas.Result {
	e.tb.Helper()
	return e.wait(e.publish(req, ""), 60*time.Second)
}

func (e *env) stored(id string) *schemas.Result {
	e.tb.Helper()
	entry, err := e.results.Get(context.Background(), id)
	if err != nil {
		e.tb.Fatalf("result %s: %v", id, err)
	}
	var res schemas.Result
	if err := json.Unmarshal(entry.Value(), &res); err != nil {
		e.tb.Fatal(err)
	}
	return &res
}

// events returns the events stored for an execution.
func (e *env) events(executionID string) []schemas.Event {
	e.tb.Helper()
	ctx := context.Background()
	// A node replies before it publishes the event and acks the request: wait until every
	// request is acked (gone from its work queue), and with it every event is stored.
	natstest.CheckFor(e.tb, 10*time.Second, poll, state(func() bool {
		for name := range schemas.DefaultTiers() {
			s, err := e.js.Stream(ctx, schemas.ExecStream(name))
			if err != nil || s.CachedInfo().State.Msgs != 0 {
				return false
			}
		}
		return true
	}, func() string { return "requests still unacked" }))
	c, err := e.js.OrderedConsumer(ctx, schemas.StreamEvents, jetstream.OrderedConsumerConfig{})
	if err != nil {
		e.tb.Fatal(err)
	}
	info, err := e.js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		e.tb.Fatal(err)
	}
	total := int(info.CachedInfo().State.Msgs)
	var out []schemas.Event
	for i := 0; i < total; i++ {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			e.tb.Fatal(err)
		}
		var ev schemas.Event
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			e.tb.Fatal(err)
		}
		if ev.Execution != nil && ev.Execution.ExecutionID == executionID {
			out = append(out, ev)
		}
	}
	return out
}

func TestNode_Execute(t *testing.T) {
	// The cases check outcomes, not the free tier's 5 s deadline (TestNode_Execute_Timeout does):
	// a deep recursion grows its stack to ~150 MB before it overflows, which takes longer than
	// 5 s on a loaded machine and was then reported timed out.
	e := startEnv(t, func(c *Config) {
		free := c.Tiers[schemas.TierFree]
		free.WallTime = 45 * time.Second // under execute's 60 s wait: a runaway guest still reports timed out
		c.Tiers[schemas.TierFree] = free
	})
	probe := e.putModule(fixtures.Probe(t))
	stdin := bytes.Repeat([]byte("0123456789"), 50_000)
	tests := []struct {
		name     string
		module   string
		edit     func(*schemas.ExecRequest)
		status   schemas.Status
		exit     int
		stdout   string
		errorHas string
		event    string
	}{
		{name: "hello", module: "hello", status: schemas.StatusSucceeded, stdout: "hello, world\n", event: schemas.EventExecutionCompleted},
		{name: "echo", module: "echo", edit: func(r *schemas.ExecRequest) { r.Stdin = []byte("ping") }, status: schemas.StatusSucceeded, stdout: "ping"},
		{name: "probe sha256", edit: func(r *schemas.ExecRequest) { r.ModuleID, r.Stdin = probe, stdin }, status: schemas.StatusSucceeded,
			stdout: fmt.Sprintf("%x\n", sha256.Sum256(stdin))},
		{name: "probe args env", edit: func(r *schemas.ExecRequest) {
			r.ModuleID, r.Args, r.Env = probe, []string{"args", "a b"}, map[string]string{"Z": "1", "A": "2"}
		}, status: schemas.StatusSucceeded, stdout: "guest.wasm\nargs\na b\n--\nA=2\nZ=1\n"},
		{name: "probe argv0", edit: func(r *schemas.ExecRequest) { r.ModuleID, r.Argv0, r.Args = probe, "wasm-ld", []string{"args"} },
			status: schemas.StatusSucceeded, stdout: "wasm-ld\nargs\n--\n"},
		{name: "exit7", module: "exit7", status: schemas.StatusFailed, exit: 7, event: schemas.EventExecutionCompleted},
		{name: "trap", module: "trap", status: schemas.StatusFailed, exit: -1, errorHas: "trap: unreachable", event: schemas.EventExecutionFailed},
		{name: "divzero", module: "divzero", status: schemas.StatusFailed, exit: -1, errorHas: "trap: integer divide by zero"},
		{name: "recursion", module: "recursion", status: schemas.StatusFailed, exit: -1, errorHas: "trap: stack overflow"},
		{name: "memgrow 128 MiB", module: "memgrow", edit: func(r *schemas.ExecRequest) { r.MemoryMB = 128 }, status: schemas.StatusSucceeded, stdout: "2048\n"},
		{name: "memgrow clamped to tier", module: "memgrow", edit: func(r *schemas.ExecRequest) { r.MemoryMB = 4096 }, status: schemas.StatusSucceeded, stdout: "2048\n"},
		{name: "memgrow 2 MiB", module: "memgrow", edit: func(r *schemas.ExecRequest) { r.MemoryMB = 2 }, status: schemas.StatusSucceeded, stdout: "32\n"},
		{name: "sleep", module: "sleep", status: schemas.StatusSucceeded, stdout: "woke\n"},
		{name: "nostart", module: "nostart", status: schemas.StatusFailed, exit: -1, errorHas: "no _start"},
		{name: "missing module", edit: func(r *schemas.ExecRequest) { r.ModuleID = schemas.ModuleID(hex.EncodeToString(make([]byte, 32))) },
			status: schemas.StatusFailed, exit: -1, errorHas: "module not found", event: schemas.EventExecutionFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(schemas.TierFree, "")
			if tt.module != "" {
				req.ModuleID = e.putModule(fixtures.Wasm(tt.module))
			}
			if tt.edit != nil {
				tt.edit(req)
			}
			start := time.Now()
			res := e.execute(req)
			if res.Status != tt.status || res.ExitCode != tt.exit {
				t.Fatalf("status %s exit %d error %q, want %s exit %d", res.Status, res.ExitCode, res.Error, tt.status, tt.exit)
			}
			if tt.stdout != "" && string(res.Stdout) != tt.stdout {
				t.Errorf("stdout %q, want %q", truncate(res.Stdout), tt.stdout)
			}
			if !bytes.Contains([]byte(res.Error), []byte(tt.errorHas)) {
				t.Errorf("error %q, want %q", res.Error, tt.errorHas)
			}
			if res.ID != req.ExecutionID || res.TenantID != "acme" || res.KeyID != "key1" || res.Tier != schemas.TierFree ||
				res.ModuleID != req.ModuleID || res.NodeID != e.node.NodeID() || res.StartedAt == nil || res.FinishedAt == nil ||
				!res.CreatedAt.Equal(req.CreatedAt) || res.StdinBytes != int64(len(req.Stdin)) {
				t.Errorf("result fields: %+v", res)
			}
			if tt.name == "sleep" && time.Since(start) > 5*time.Second {
				t.Errorf("sleep took %v: the guest slept on the host clock", time.Since(start))
			}
			stored := e.stored(req.ExecutionID)
			if stored.Status != res.Status || !bytes.Equal(stored.Stdout, res.Stdout) || !stored.FinishedAt.Equal(*res.FinishedAt) {
				t.Errorf("stored result %+v differs from the reply %+v", stored, res)
			}
			if tt.event != "" {
				evs := e.events(req.ExecutionID)
				if len(evs) != 1 || evs[0].Type != tt.event || evs[0].ID != req.ExecutionID+":"+tt.event ||
					evs[0].Execution.Status != res.Status || evs[0].Execution.ExitCode != res.ExitCode || evs[0].TenantID != "acme" {
					t.Errorf("events %+v, want one %s", evs, tt.event)
				}
			}
		})
	}
}

// A stdout larger than a NATS message reaches the caller through the outputs object store: the
// result carries its first MiB and says the rest is stored; the object holds every byte.
func TestNode_Execute_LargeOutput(t *testing.T) {
	e := startEnv(t, nil)
	req := newRequest(schemas.TierUnlimited, e.putModule(fixtures.Wasm("stdoutbig")))
	res := e.execute(req)
	const want = 12 << 20
	if want <= natstest.MaxPayload || schemas.DefaultTiers()[schemas.TierUnlimited].StdoutMax < want {
		t.Fatalf("the test needs an output over the NATS max payload (%d) within the tier's stdout_max", natstest.MaxPayload)
	}
	if res.Status != schemas.StatusSucceeded || res.StdoutBytes != want || res.StdoutTruncated || !res.StdoutStored ||
		len(res.Stdout) != schemas.InlineOutputMax || res.StderrStored || string(res.Stderr) != "\n" {
		t.Fatalf("stdoutbig: %s, %d bytes inline, %d written, truncated %v, stored %v, stderr %q",
			res.Status, len(res.Stdout), res.StdoutBytes, res.StdoutTruncated, res.StdoutStored, res.Stderr)
	}
	if stored := e.stored(req.ExecutionID); !stored.StdoutStored || len(stored.Stdout) != schemas.InlineOutputMax {
		t.Errorf("stored result: stored %v, %d bytes inline", stored.StdoutStored, len(stored.Stdout))
	}
	outputs, err := e.js.ObjectStore(context.Background(), schemas.ObjectOutputs)
	if err != nil {
		t.Fatal(err)
	}
	all, err := outputs.GetBytes(context.Background(), schemas.OutputObjectName(req.ExecutionID, schemas.StreamStdout))
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != want {
		t.Fatalf("stored stdout is %d bytes, want %d", len(all), want)
	}
	for i := range want / (64 << 10) {
		chunk := all[i*64<<10 : (i+1)*64<<10]
		if c := byte('a' + i%26); chunk[0] != c || chunk[len(chunk)-1] != c || !bytes.Equal(chunk, bytes.Repeat([]byte{c}, len(chunk))) {
			t.Fatalf("stored stdout: chunk %d is not all %q", i, c)
		}
	}
	if !bytes.Equal(res.Stdout, all[:schemas.InlineOutputMax]) {
		t.Error("the result's stdout is not the stored stdout's first part")
	}
}

// A redelivered execution whose first attempt had stored its stdout (the node died before the
// result) stores it again, replacing the object. nats.go's Put purges the old object's chunks,
// which the executor's NATS user may not: the purge waited out the store's minute before the
// result was answered, and the old chunks stayed. The old object is deleted first now.
func TestNode_Execute_LargeOutputStoredAgain(t *testing.T) {
	e := startEnv(t, nil)
	req := newRequest(schemas.TierUnlimited, e.putModule(fixtures.Wasm("stdoutbig")))
	ctx := context.Background()
	outputs, err := e.js.ObjectStore(ctx, schemas.ObjectOutputs)
	if err != nil {
		t.Fatal(err)
	}
	// What the first attempt stored.
	if _, err := outputs.PutBytes(ctx, schemas.OutputObjectName(req.ExecutionID, schemas.StreamStdout), bytes.Repeat([]byte("x"), 3<<20)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := e.execute(req)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("the redelivered execution answered after %v", took)
	}
	if res.Status != schemas.StatusSucceeded || !res.StdoutStored {
		t.Fatalf("stdoutbig: %s, stored %v", res.Status, res.StdoutStored)
	}
	all, err := outputs.GetBytes(ctx, schemas.OutputObjectName(req.ExecutionID, schemas.StreamStdout))
	if err != nil || len(all) != 12<<20 {
		t.Fatalf("stored stdout: %d bytes, %v", len(all), err)
	}
	s, err := e.js.Stream(ctx, "OBJ_"+schemas.ObjectOutputs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(12<<20/(128<<10) + 1); info.State.Msgs != want { // the new object's chunks and metadata
		t.Errorf("the outputs store holds %d messages, want the new object's %d (the first attempt's chunks stayed)", info.State.Msgs, want)
	}
}

func truncate(b []byte) string {
	if len(b) > 100 {
		return string(b[:100]) + "…"
	}
	return string(b)
}

func TestNode_Execute_Output(t *testing.T) {
	e := startEnv(t, nil)
	req := newRequest(schemas.TierFree, e.putModule(fixtures.Wasm("stdoutflood")))
	req.StdoutMax = 1000
	res := e.execute(req)
	if res.Status != schemas.StatusSucceeded || len(res.Stdout) != 1000 || !res.StdoutTruncated || res.StdoutBytes != 4<<20 {
		t.Errorf("stdoutflood: %s, %d bytes kept, truncated %v, %d written", res.Status, len(res.Stdout), res.StdoutTruncated, res.StdoutBytes)
	}
	// Without a request limit, the tier's (1 MiB) applies.
	req = newRequest(schemas.TierFree, e.putModule(fixtures.Wasm("stderrflood")))
	res = e.execute(req)
	if res.Status != schemas.StatusSucceeded || len(res.Stderr) != schemas.MiB || !res.StderrTruncated || res.StderrBytes != 4<<20 {
		t.Errorf("stderrflood: %s, %d bytes kept, truncated %v, %d written", res.Status, len(res.Stderr), res.StderrTruncated, res.StderrBytes)
	}
}

// TestSecurity_RandomSeedPerExecution (issue 12, hole 14) runs clock, which prints the guest's
// wall clock and 8 random bytes, through the node: the random bytes differ between executions
// unless the request gives a seed; the clock is fixed unless the request asks for the real one.
func TestSecurity_RandomSeedPerExecution(t *testing.T) {
	e := startEnv(t, nil)
	mod := e.putModule(fixtures.Wasm("clock"))
	run := func(seed *int64, clock string) (wall, random string) {
		t.Helper()
		req := newRequest(schemas.TierFree, mod)
		req.Seed, req.Clock = seed, clock
		res := e.execute(req)
		if res.Status != schemas.StatusSucceeded {
			t.Fatalf("clock: %s %q", res.Status, res.Error)
		}
		f := strings.Fields(string(res.Stdout))
		if len(f) != 2 {
			t.Fatalf("clock printed %q", res.Stdout)
		}
		return f[0], f[1]
	}
	wallA, a := run(nil, "")
	wallB, b := run(nil, schemas.ClockFixed)
	if a == b {
		t.Errorf("two executions got the same random bytes %s", a)
	}
	if wallA != wallB {
		t.Errorf("fixed clock read %s then %s", wallA, wallB)
	}
	seed := int64(1234)
	_, c := run(&seed, "")
	_, d := run(&seed, "")
	if c != d || c == a || c == b {
		t.Errorf("seed 1234 gave %s then %s (unseeded %s, %s)", c, d, a, b)
	}
	before := time.Now().UnixNano()
	wall, _ := run(nil, schemas.ClockReal)
	if n, err := strconv.ParseUint(wall, 16, 64); err != nil || int64(n) < before || int64(n) > time.Now().UnixNano() {
		t.Errorf("real clock read %s (%v), want the host's time", wall, err)
	}
}

func TestNode_Execute_Timeout(t *testing.T) {
	e := startEnv(t, nil)
	req := newRequest(schemas.TierFree, e.putModule(fixtures.Wasm("loop")))
	req.TimeoutMS = 500
	start := time.Now()
	res := e.execute(req)
	took := time.Since(start)
	if res.Status != schemas.StatusTimedOut || res.ExitCode != -1 || res.Error == "" {
		t.Fatalf("loop: %s exit %d %q", res.Status, res.ExitCode, res.Error)
	}
	if res.DurationMS < 450 || took > 500*time.Millisecond+2*time.Second {
		t.Errorf("timed out after %.0f ms (reply after %v), deadline 500 ms", res.DurationMS, took)
	}
	if evs := e.events(req.ExecutionID); len(evs) != 1 || evs[0].Type != schemas.EventExecutionFailed {
		t.Errorf("events %+v", evs)
	}
}

// A guest stopped at its deadline returns what it had printed: it is killed with its worker,
// and its output (kept in the worker) was lost with it, so a script that printed its progress
// and then looped forever came back with empty stdout and stderr.
func TestNode_Execute_TimeoutKeepsOutput(t *testing.T) {
	e := startEnv(t, nil)
	mod := e.putModule(fixtures.Wasm("printloop"))
	for _, timeout := range []int64{500, 1000} {
		req := newRequest(schemas.TierFree, mod)
		req.TimeoutMS = timeout
		res := e.execute(req)
		if res.Status != schemas.StatusTimedOut || string(res.Stdout) != "progress\n" || string(res.Stderr) != "working\n" ||
			res.StdoutBytes != 9 || res.StderrBytes != 8 || res.StdoutTruncated {
			t.Errorf("timeout %d ms: %s, stdout %q (%d bytes), stderr %q (%d bytes), error %q", timeout, res.Status, res.Stdout, res.StdoutBytes, res.Stderr, res.StderrBytes, res.Error)
		}
		if stored := e.stored(req.ExecutionID); string(stored.Stdout) != "progress\n" {
			t.Errorf("timeout %d ms: stored stdout %q", timeout, stored.Stdout)
		}
	}
}

// A guest that prints shortly before its deadline: its output went to the node once, 200 ms
// before the deadline, so what it printed after that was lost with its worker. Its output now
// goes on to the node until the kill (latepoll prints "late" 100 ms before its 500 ms deadline).
func TestNode_Execute_TimeoutKeepsLateOutput(t *testing.T) {
	e := startEnv(t, nil)
	mod := e.putModule(fixtures.Wasm("latepoll"))
	req := newRequest(schemas.TierFree, mod)
	req.TimeoutMS, req.Clock = 500, schemas.ClockReal
	req.Stdin = binary.LittleEndian.AppendUint64(nil, uint64(400*time.Millisecond))
	res := e.execute(req)
	if res.Status != schemas.StatusTimedOut || string(res.Stdout) != "early\nlate\n" || string(res.Stderr) != "late\n" ||
		res.StdoutBytes != 11 || res.StderrBytes != 5 {
		t.Errorf("%s, stdout %q (%d bytes), stderr %q (%d bytes), error %q; want timed_out with early and late", res.Status, res.Stdout, res.StdoutBytes, res.Stderr, res.StderrBytes, res.Error)
	}
}

// TestNode_Execute_KillsDeadlineIgnorer runs a loop-free exponential call tree, which no
// per-loop deadline check would stop: like every guest reaching its deadline, it is stopped by
// killing its worker, reported timed out and billed up to the kill, and a spare takes the
// worker's place.
func TestNode_Execute_KillsDeadlineIgnorer(t *testing.T) {
	e := startEnv(t, nil)
	req := newRequest(schemas.TierFree, e.putModule(fixtures.Wasm("expcalls")))
	req.TimeoutMS = 500
	start := time.Now()
	res := e.execute(req)
	took := time.Since(start)
	if res.Status != schemas.StatusTimedOut || res.Error != "execution exceeded its time limit of 500ms, the request's timeout_ms (the free tier allows 5s)" {
		t.Fatalf("expcalls: %s %q", res.Status, res.Error)
	}
	if took > 500*time.Millisecond+time.Second {
		t.Errorf("killed %v after publishing, deadline 500 ms", took)
	}
	if res.DurationMS < 500 || res.DurationMS > 700 || res.CPUMS <= 0 {
		t.Errorf("billed %.0f ms (CPU %.0f ms), want its 500 ms deadline and the CPU it used", res.DurationMS, res.CPUMS)
	}
	// Its one page of memory was reported while it ran, so the kill is billed for it.
	if res.MemoryPeakBytes < 64<<10 || res.MemoryPeakBytes > 64<<10+worker.MemoryHeadroom {
		t.Errorf("killed guest billed memory %d bytes, want its one page (65536) and a little heap", res.MemoryPeakBytes)
	}
	if !e.node.Ready() {
		t.Error("node not ready after a kill")
	}
	for range 3 { // more runs than workers: the replacement serves too
		if res := e.execute(newRequest(schemas.TierFree, e.putModule(fixtures.Wasm("hello")))); res.Status != schemas.StatusSucceeded {
			t.Fatalf("hello after kill: %s %q", res.Status, res.Error)
		}
	}
	if got := counterValue(t, e.node.m.workerRestarts.WithLabelValues("deadline")); got != 1 {
		t.Errorf("worker restarts{deadline} = %v, want 1", got)
	}
	natstest.CheckFor(t, 10*time.Second, poll, state(func() bool {
		return counterValue(t, e.node.m.workers.WithLabelValues("idle")) == float64(e.node.cfg.Workers+e.node.cfg.CompileWorkers) &&
			counterValue(t, e.node.m.workers.WithLabelValues("spare")) == 1
	}, func() string { return "workers not back to all idle and 1 spare" }))
}

// TestNode_Execute_Redelivery delivers executions again and checks that none runs twice.
func TestNode_Execute_Redelivery(t *testing.T) {
	e := startEnv(t, nil)
	mod := e.putModule(fixtures.Wasm("hello"))

	t.Run("after completion", func(t *testing.T) {
		req := newRequest(schemas.TierFree, mod)
		first := e.execute(req)
		runs := counterValue(t, e.node.m.executions.WithLabelValues(schemas.TierFree, string(schemas.StatusSucceeded)))
		// The same request again (a new stream message, as a redelivery would be).
		second := e.wait(e.publish(req, req.ExecutionID+"-again"), 30*time.Second)
		if !second.StartedAt.Equal(*first.StartedAt) || !second.FinishedAt.Equal(*first.FinishedAt) || second.Status != first.Status {
			t.Errorf("second reply %+v, want the stored result %+v", second, first)
		}
		if got := counterValue(t, e.node.m.executions.WithLabelValues(schemas.TierFree, string(schemas.StatusSucceeded))); got != runs {
			t.Errorf("executions went from %v to %v: ran twice", runs, got)
		}
		if evs := e.events(req.ExecutionID); len(evs) != 1 {
			t.Errorf("%d events, want 1", len(evs))
		}
	})

	t.Run("result stored, event lost", func(t *testing.T) {
		// A node stored the result and died before publishing the event: the redelivery
		// publishes it (once) and replies, without running the guest.
		req := newRequest(schemas.TierFree, mod)
		now := time.Now().UTC()
		prev := schemas.Result{ID: req.ExecutionID, TenantID: req.TenantID, Tier: schemas.TierFree, ModuleID: mod,
			Status: schemas.StatusSucceeded, Stdout: []byte("from before"), CreatedAt: req.CreatedAt, StartedAt: &now, FinishedAt: &now, NodeID: "old-node"}
		b, _ := json.Marshal(prev)
		if _, err := e.results.Put(context.Background(), req.ExecutionID, b); err != nil {
			t.Fatal(err)
		}
		res := e.execute(req)
		if string(res.Stdout) != "from before" || res.NodeID != "old-node" {
			t.Errorf("reply %+v, want the stored result", res)
		}
		evs := e.events(req.ExecutionID)
		if len(evs) != 1 || evs[0].Execution.NodeID != "old-node" {
			t.Errorf("events %+v, want the stored result's", evs)
		}
		e.wait(e.publish(req, req.ExecutionID+"-again"), 30*time.Second) // once more: still one event
		if evs := e.events(req.ExecutionID); len(evs) != 1 {
			t.Errorf("%d events after a second redelivery, want 1", len(evs))
		}
	})
}

func TestNode_Execute_BadRequest(t *testing.T) {
	e := startEnv(t, nil)
	other := newRequest(schemas.TierFree, e.putModule(fixtures.Wasm("hello")))
	other.TenantID = "mallory" // published on acme's subject
	wrongTenant, _ := json.Marshal(other)
	for _, body := range []string{"{not json", `{"execution_id":"short","tenant_id":"acme","module_id":"x"}`, string(wrongTenant)} {
		m := nats.NewMsg(schemas.ExecSubject(schemas.TierFree, "acme"))
		m.Data = []byte(body)
		if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	// Terminated, so gone from the work queue and never redelivered.
	natstest.CheckFor(t, 10*time.Second, poll, state(func() bool {
		info, err := e.js.Stream(context.Background(), schemas.ExecStream(schemas.TierFree))
		return err == nil && info.CachedInfo().State.Msgs == 0
	}, func() string { return "bad requests still in the stream" }))
	if _, err := e.results.Get(context.Background(), other.ExecutionID); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the request with a wrong tenant has a result: %v", err)
	}
	// And the node still serves.
	if res := e.execute(newRequest(schemas.TierFree, e.putModule(fixtures.Wasm("hello")))); res.Status != schemas.StatusSucceeded {
		t.Fatalf("hello: %s", res.Status)
	}
}

// TestSecurity_TableGrowthMemoryCapped (issue 12, hole 13) runs guests whose table growth is
// outside wazero's linear memory limit, on a tier of 64 MiB with a minute's deadline (so that a
// loaded machine cannot make the deadline come first): each is killed for its memory, reported
// as such and billed what it held, and the node goes on serving. (tablefill stops growing at 24
// million entries, ~200 MB.)
func TestSecurity_TableGrowthMemoryCapped(t *testing.T) {
	const mb = 64
	e := startEnv(t, func(c *Config) {
		basic := c.Tiers[schemas.TierBasic]
		basic.MemoryMB, basic.WallTime = mb, time.Minute
		c.Tiers[schemas.TierBasic] = basic
	})
	limit := int64(mb) * schemas.MiB
	for _, name := range []string{"tablebomb", "tablegrow", "tablefill"} {
		req := newRequest(schemas.TierBasic, e.putModule(fixtures.Wasm(name)))
		req.TimeoutMS = time.Minute.Milliseconds()
		start := time.Now()
		res := e.execute(req)
		t.Logf("%s: %s %q after %v, billed %.0f ms, %d MiB", name, res.Status, res.Error, time.Since(start), res.DurationMS, res.MemoryPeakBytes>>20)
		if res.Status != schemas.StatusKilled || !strings.HasPrefix(res.Error, "memory limit exceeded") {
			t.Errorf("%s: %s %q, want killed for exceeding its memory", name, res.Status, res.Error)
		}
		if res.MemoryPeakBytes <= limit || res.DurationMS <= 0 || res.DurationMS >= float64(time.Minute.Milliseconds()) {
			t.Errorf("%s: billed %d MiB for %.0f ms, want more than its %d MiB limit, before its deadline", name, res.MemoryPeakBytes>>20, res.DurationMS, limit>>20)
		}
	}
	if got := counterValue(t, e.node.m.workerRestarts.WithLabelValues("memory")); got < 2 {
		t.Errorf("restarts{memory} = %v, want the workers of the guests that never finished", got)
	}
	if res := e.execute(newRequest(schemas.TierBasic, e.putModule(fixtures.Wasm("hello")))); res.Status != schemas.StatusSucceeded {
		t.Fatalf("hello afterwards: %s %q", res.Status, res.Error)
	}
}

// TestNode_Execute_ScratchBilledOnce: a guest's scratch files count in its memory once. The
// worker counts them (their bytes are heap it grew for the guest, within the memory limit), and
// the node added the scratch peak on top: a guest writing a 48 MiB file with a 64 MiB limit
// succeeded and was billed and reported ~100 MiB, more than the 96 MiB it is killed past.
func TestNode_Execute_ScratchBilledOnce(t *testing.T) {
	e := startEnv(t, nil)
	const fileMiB, memMiB = 48, 64
	req := newRequest(schemas.TierPro, e.putModule(fixtures.FilesGo(t)))
	req.Args = []string{"big", "/tmp/big", strconv.Itoa(fileMiB)}
	req.MemoryMB = memMiB
	res := e.execute(req)
	if res.Status != schemas.StatusSucceeded {
		t.Fatalf("big: %s exit %d %q stdout %q", res.Status, res.ExitCode, res.Error, res.Stdout)
	}
	t.Logf("%d MiB file: memory peak %.1f MiB, scratch peak %.1f MiB", fileMiB, float64(res.MemoryPeakBytes)/schemas.MiB, float64(res.ScratchPeakBytes)/schemas.MiB)
	// The file and the guest's linear memory (at least its 1 MiB block) together, even when the
	// worker's heap count missed the file (the collector freed older garbage meanwhile).
	if res.ScratchPeakBytes < fileMiB*schemas.MiB || res.MemoryPeakBytes < res.ScratchPeakBytes+schemas.MiB {
		t.Errorf("scratch peak %d, memory peak %d: want the file and the guest's linear memory", res.ScratchPeakBytes, res.MemoryPeakBytes)
	}
	// The Go guest's linear memory is a few MiB (its runtime and a 1 MiB block).
	if max := int64(fileMiB+24) * schemas.MiB; res.MemoryPeakBytes > max || res.MemoryPeakBytes > worker.MemoryLimit(memMiB*16) {
		t.Errorf("memory peak %d MiB for a %d MiB file, want at most %d MiB (and within the %d MiB it may hold)",
			res.MemoryPeakBytes>>20, fileMiB, max>>20, worker.MemoryLimit(memMiB*16)>>20)
	}
}

// redelivered is a fetched message as prepare sees it, with a chosen delivery count.
type redelivered struct {
	jetstream.Msg
	subject   string
	data      []byte
	header    nats.Header
	delivered uint64
}

func (m *redelivered) Subject() string      { return m.subject }
func (m *redelivered) Data() []byte         { return m.data }
func (m *redelivered) Headers() nats.Header { return m.header }
func (m *redelivered) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: m.delivered}, nil
}

// TestNode_Prepare_NewExecution: only the first delivery of an execution the gateway marked new
// skips the results lookup; a redelivery of it, or an unmarked request, finds the stored result.
func TestNode_Prepare_NewExecution(t *testing.T) {
	e := startEnv(t, nil)
	req := newRequest(schemas.TierFree, "sha256:"+strings.Repeat("ab", 32))
	if _, err := e.results.Put(context.Background(), req.ExecutionID, []byte(`{"status":"succeeded"}`)); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(req)
	for _, c := range []struct {
		name      string
		marked    bool
		delivered uint64
		wantFound bool
	}{
		{"new, first delivery", true, 1, false},
		{"new, redelivered", true, 2, true},
		{"not marked", false, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := nats.Header{}
			if c.marked {
				h.Set(schemas.HeaderNewExecution, "true")
			}
			p := e.node.prepare(&redelivered{subject: schemas.ExecSubject(req.Tier, req.TenantID), data: b, header: h, delivered: c.delivered}, true)
			if p.reqErr != nil {
				t.Fatal(p.reqErr)
			}
			_, err := p.result(context.Background(), e.node.results, req.ExecutionID)
			if found := err == nil; found != c.wantFound {
				t.Errorf("stored result found %v (err %v), want %v", found, err, c.wantFound)
			}
		})
	}
}

// poll is how often these tests' natstest.CheckFor looks again.
const poll = 10 * time.Millisecond

// state makes a natstest.CheckFor check of a condition: describe says, when ok does not hold,
// what was still missing (evaluated then, not before the wait).
func state(ok func() bool, describe func() string) func() error {
	return func() error {
		if ok() {
			return nil
		}
		return errors.New(describe())
	}
}

// ackable is a redelivered message whose acknowledgements are counted.
type ackable struct {
	redelivered
	acks atomic.Int64
}

func (m *ackable) Ack() error                       { m.acks.Add(1); return nil }
func (m *ackable) InProgress() error                { return nil }
func (m *ackable) NakWithDelay(time.Duration) error { return nil }
func (m *ackable) TermWithReason(string) error      { return nil }
func (m *ackable) Reply() string                    { return "" }
func (m *ackable) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: m.delivered}, nil
}

// A redelivered request with no stored result whose earlier delivery another node still holds
// (its short guest has run, its result is being stored while the results bucket elects a
// leader; short guests write no "running") waits for that result instead of running the guest
// again. In a fault run the guest ran twice: once per node.
func TestNode_Execute_RedeliveryWaitsForTheOtherNode(t *testing.T) {
	e := startEnv(t, nil)
	mod := e.putModule(fixtures.Wasm("hello"))
	req := newRequest(schemas.TierFree, mod)
	var stored atomic.Bool
	other, err := e.nc.Subscribe(schemas.SubjectExecutorRunning, func(m *nats.Msg) {
		if string(m.Data) == req.ExecutionID && !stored.Load() {
			_ = m.Respond([]byte("other-node"))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Unsubscribe()
	now := time.Now().UTC()
	prev := schemas.Result{ID: req.ExecutionID, TenantID: req.TenantID, Tier: schemas.TierFree, ModuleID: mod,
		Status: schemas.StatusSucceeded, Stdout: []byte("from the other node"), CreatedAt: req.CreatedAt, StartedAt: &now, FinishedAt: &now, NodeID: "other-node"}
	go func() {
		time.Sleep(1500 * time.Millisecond) // the other node's store gets through
		b, _ := json.Marshal(prev)
		if _, err := e.results.Put(context.Background(), req.ExecutionID, b); err == nil {
			stored.Store(true)
		}
	}()
	runs := counterValue(t, e.node.m.executions.WithLabelValues(schemas.TierFree, string(schemas.StatusSucceeded)))
	b, _ := json.Marshal(req)
	msg := &ackable{redelivered: redelivered{subject: schemas.ExecSubject(req.Tier, req.TenantID), data: b, header: nats.Header{}, delivered: 2}}
	p := e.node.prepare(msg, true)
	tier := e.node.cfg.Tiers[schemas.TierFree]
	if err := e.node.execute(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), tier, msg, &p.req, p, func() {}); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, e.node.m.executions.WithLabelValues(schemas.TierFree, string(schemas.StatusSucceeded))); got != runs {
		t.Errorf("executions went from %v to %v: the guest ran again", runs, got)
	}
	if msg.acks.Load() != 1 {
		t.Errorf("%d acks, want 1", msg.acks.Load())
	}
	if evs := e.events(req.ExecutionID); len(evs) != 1 || evs[0].Execution.NodeID != "other-node" {
		t.Errorf("events %+v, want the other node's result's", evs)
	}
}

// The timeout's error names the limit and where it came from: a user stopped at the tier's
// wall time needs a higher tier, one stopped at its own timeout_ms may just ask for more.
func TestTimeLimitExceeded(t *testing.T) {
	for _, c := range []struct {
		limit time.Duration
		want  string
	}{
		{5 * time.Second, "execution exceeded its time limit of 5s, the free tier's wall time"},
		{1500 * time.Millisecond, "execution exceeded its time limit of 1.5s, the request's timeout_ms (the free tier allows 5s)"},
	} {
		if got := timeLimitExceeded(c.limit, "free", 5*time.Second); got != c.want {
			t.Errorf("limit %v: %q, want %q", c.limit, got, c.want)
		}
	}
}
