package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

func TestFitResult(t *testing.T) {
	res := &schemas.Result{ID: "x", Stdout: bytes.Repeat([]byte("o"), 1<<20), Stderr: bytes.Repeat([]byte("e"), 100<<10), StdoutBytes: 4 << 20}
	b, err := fitResult(res, 1<<20-16<<10)
	if err != nil || len(b) > 1<<20-16<<10 {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	if !res.StdoutTruncated || len(res.Stdout) >= 1<<20 || len(res.Stdout) < 600<<10 || res.StdoutBytes != 4<<20 {
		t.Errorf("stdout kept %d, truncated %v", len(res.Stdout), res.StdoutTruncated)
	}
	var back schemas.Result
	if err := json.Unmarshal(b, &back); err != nil || !bytes.Equal(back.Stdout, res.Stdout) {
		t.Errorf("round trip: %v", err)
	}
	small := &schemas.Result{ID: "y", Stdout: []byte("hi")}
	if b, _ := fitResult(small, 1<<20); small.StdoutTruncated || !bytes.Contains(b, []byte(`"aGk="`)) {
		t.Errorf("small result changed: %s", b)
	}
}

// TestNode_Execute_DeadLetter makes every delivery of a request fail for an internal reason
// (the results bucket is gone): after streams.MaxDeliver deliveries it is moved to the dead
// letters with its headers and a reason, and terminated.
func TestNode_Execute_DeadLetter(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the redelivery delays (about 10 s)")
	}
	e := startEnv(t, nil)
	req := newRequest(schemas.TierFree, e.putModule(fixtures.Wasm("hello")))
	if err := e.js.DeleteKeyValue(context.Background(), schemas.BucketResults); err != nil {
		t.Fatal(err)
	}
	e.publish(req, "")
	dlq, err := e.js.Stream(context.Background(), schemas.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 40*time.Second, poll, state(func() bool {
		info, err := dlq.Info(context.Background())
		return err == nil && info.State.Msgs == 1
	}, func() string { return "request not dead-lettered" }))
	m, err := dlq.GetLastMsgForSubject(context.Background(), schemas.SubjectDLQ)
	if err != nil {
		t.Fatal(err)
	}
	var got schemas.ExecRequest
	if err := json.Unmarshal(m.Data, &got); err != nil || got.ExecutionID != req.ExecutionID {
		t.Errorf("dead letter body: %v %+v", err, got)
	}
	if m.Header.Get(schemas.HeaderDLQReason) == "" || m.Header.Get(schemas.HeaderExecutionID) != req.ExecutionID {
		t.Errorf("dead letter headers: %v", m.Header)
	}
	t.Logf("reason: %s", m.Header.Get(schemas.HeaderDLQReason))
	natstest.CheckFor(t, 10*time.Second, poll, state(func() bool {
		info, err := e.js.Stream(context.Background(), schemas.ExecStream(schemas.TierFree))
		return err == nil && info.CachedInfo().State.Msgs == 0
	}, func() string { return "request still in the work queue" }))
	cons, err := e.js.Consumer(context.Background(), schemas.ExecStream(schemas.TierFree), schemas.ExecConsumer(schemas.TierFree))
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil || info.Delivered.Consumer != streams.MaxDeliver {
		t.Errorf("delivered %d times, want %d (%v)", info.Delivered.Consumer, streams.MaxDeliver, err)
	}
}

// TestNode_Metrics checks the node's collectors are registered under their names and count.
func TestNode_Metrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := startEnv(t, func(c *Config) { c.Registerer = reg })
	mod := e.putModule(fixtures.Wasm("hello"))
	for range 2 {
		if res := e.execute(newRequest(schemas.TierBasic, mod)); res.Status != schemas.StatusSucceeded {
			t.Fatalf("hello: %s", res.Status)
		}
	}
	// A timeout kills its worker; the spare, once started, takes its place at once.
	natstest.CheckFor(t, 10*time.Second, poll, state(func() bool {
		return counterValue(t, e.node.m.workers.WithLabelValues("spare")) == 1
	}, func() string { return "no spare worker" }))
	req := newRequest(schemas.TierBasic, e.putModule(fixtures.Wasm("loop")))
	req.TimeoutMS = 100
	if res := e.execute(req); res.Status != schemas.StatusTimedOut || res.CPUMS <= 0 || res.DurationMS < 100 {
		t.Fatalf("loop: %s cpu %v ms wall %v ms", res.Status, res.CPUMS, res.DurationMS)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				got[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				got[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				got[key] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"wasmwiz_executions_total,status=succeeded,tier=basic": 2,
		"wasmwiz_executions_total,status=timed_out,tier=basic": 1,
		"wasmwiz_execution_duration_seconds,tier=basic":        3,
		"wasmwiz_queue_wait_seconds,tier=basic":                3,
		"wasmwiz_module_cache_misses_total,cache=file":         2,
		"wasmwiz_module_cache_hits_total,cache=file":           1,
		"wasmwiz_module_cache_misses_total,cache=compiled":     2,
		"wasmwiz_module_cache_hits_total,cache=compiled":       1,
		"wasmwiz_compile_duration_seconds":                     2,
		"wasmwiz_workers,state=busy":                           0,
		"wasmwiz_workers,state=idle":                           float64(e.node.cfg.Workers + e.node.cfg.CompileWorkers), // a spare took the killed one's place
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

// TestNode_Execute_StdinFile: a file of the guest's file system (here an inline file) is its
// stdin, and what the guest read of it is its stdin_bytes, as inline stdin's length is.
func TestNode_Execute_StdinFile(t *testing.T) {
	e := startEnv(t, nil)
	req := newRequest(schemas.TierFree, e.putModule(fixtures.Wasm("echo")))
	req.Files = map[string][]byte{"/in/a.txt": []byte("from a file")}
	req.StdinFile = "/in/a.txt"
	if res := e.execute(req); res.Status != schemas.StatusSucceeded || string(res.Stdout) != "from a file" || res.StdinBytes != 11 {
		t.Fatalf("%s %q: stdout %q, stdin_bytes %d", res.Status, res.Error, res.Stdout, res.StdinBytes)
	}
}

// TestSecurity_ResultTooBigToStore: fitResult cut only output data, one file per encoding,
// and gave up once no data was left, so a result whose output files' records alone were over
// the message limit (1,000 paths of 25.6 KB, before guestfs bounded output paths) was returned
// too big: storing it failed with "maximum payload exceeded", and the execution was run again at
// every redelivery until it went to the dead letters. Now the last records go when only records
// are left, and a result always fits.
func TestSecurity_ResultTooBigToStore(t *testing.T) {
	const limit = 1<<20 - 16<<10
	res := &schemas.Result{ID: "x", Stdout: []byte("ok\n")}
	for i := range 1000 {
		res.Files = append(res.Files, schemas.OutputFile{Path: "/" + strings.Repeat("p", 25_000) + strconv.Itoa(i), Data: []byte("x"), Size: 1})
	}
	b, err := fitResult(res, limit)
	if err != nil || len(b) > limit {
		t.Fatalf("%d bytes (limit %d), %v", len(b), limit, err)
	}
	if !res.FilesTruncated || len(res.Files) == 0 || len(res.Files) >= 1000 {
		t.Errorf("%d files kept, files_truncated %v; want some, and truncated", len(res.Files), res.FilesTruncated)
	}
	// Output data is cut across files in one pass: 200 files of 8 KiB over a 1 MiB limit are
	// cut to fit, each marked truncated, and nothing is dropped.
	res = &schemas.Result{ID: "y"}
	for i := range 200 {
		res.Files = append(res.Files, schemas.OutputFile{Path: "/out/" + strconv.Itoa(i), Data: bytes.Repeat([]byte{byte(i)}, 8<<10), Size: 8 << 10})
	}
	if b, err := fitResult(res, 1<<20); err != nil || len(b) > 1<<20 || len(res.Files) != 200 || res.FilesTruncated {
		t.Fatalf("%d bytes, %d files, files_truncated %v, %v", len(b), len(res.Files), res.FilesTruncated, err)
	}
}
