package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wasmwiz/wasmwiz/executor/worker"
	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newTestPool(tb testing.TB, size int, mod func(*poolConfig)) (*pool, *metrics) {
	tb.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := poolConfig{
		command:        []string{os.Args[0]},
		env:            []string{workerEnv},
		cacheDir:       filepath.Join(tb.TempDir(), "wazero"),
		size:           size,
		compileTimeout: 10 * time.Second,
		memoryLimit:    512*schemas.MiB + 1<<30,
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := newPool(context.Background(), cfg, testLogger(tb), m)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.close)
	return p, m
}

func writeModule(tb testing.TB, bin []byte) (path, hash string) {
	tb.Helper()
	sum := sha256.Sum256(bin)
	hash = hex.EncodeToString(sum[:])
	path = filepath.Join(tb.TempDir(), hash+".wasm")
	if err := os.WriteFile(path, bin, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path, hash
}

func runJob(tb testing.TB, name string, timeout time.Duration, memMB int) *worker.RunJob {
	path, hash := writeModule(tb, fixtures.Wasm(name))
	return &worker.RunJob{ModulePath: path, ModuleHash: hash, Name: name, Timeout: timeout,
		MemoryPages: uint32(memMB * 16), StdoutMax: 1 << 20, StderrMax: 1 << 20}
}

func TestPool_Run(t *testing.T) {
	p, _ := newTestPool(t, 2, nil)
	res, err := p.run(context.Background(), runJob(t, "hello", time.Second, 128), p.cfg.compileTimeout)
	if err != nil || res.Status != schemas.StatusSucceeded || string(res.Stdout) != "hello, world\n" {
		t.Fatalf("hello: %+v %v", res, err)
	}
	// The largest tier's memory, under the worker's RLIMIT_DATA (the default: that memory + 1 GiB).
	res, err = p.run(context.Background(), runJob(t, "memgrow", 10*time.Second, 512), p.cfg.compileTimeout)
	if err != nil || res.Status != schemas.StatusSucceeded || string(res.Stdout) != "8192\n" {
		t.Fatalf("memgrow 512 MiB: %+v %v", res, err)
	}
	t.Logf("memgrow 512 MiB: linear memory %d MiB, %v", res.MemoryPeakBytes>>20, res.Duration)
}

func TestPool_Run_KillsDeadlineIgnorer(t *testing.T) {
	p, m := newTestPool(t, 1, nil)
	start := time.Now()
	_, err := p.run(context.Background(), runJob(t, "expcalls", 300*time.Millisecond, 128), p.cfg.compileTimeout)
	var ke *killedError
	if !errors.As(err, &ke) || ke.compiling {
		t.Fatalf("expcalls: %v, want a kill", err)
	}
	if d := time.Since(start); d > 300*time.Millisecond+time.Second {
		t.Errorf("killed after %v", d)
	}
	t.Logf("killed: %v after %v", err, time.Since(start))
	// The replacement serves the next job.
	res, err := p.run(context.Background(), runJob(t, "hello", time.Second, 128), p.cfg.compileTimeout)
	if err != nil || res.Status != schemas.StatusSucceeded {
		t.Fatalf("hello after kill: %+v %v", res, err)
	}
	if got := counterValue(t, m.workerRestarts.WithLabelValues("deadline")); got != 1 {
		t.Errorf("restarts{deadline} = %v", got)
	}
}

func TestPool_Run_WorkerCrash(t *testing.T) {
	p, m := newTestPool(t, 1, nil)
	// Kill the worker from outside while it runs a loop: the job reports a crash, the node lives.
	done := make(chan error, 1)
	go func() {
		_, err := p.run(context.Background(), runJob(t, "loop", 20*time.Second, 128), p.cfg.compileTimeout)
		done <- err
	}()
	var pid int
	natstest.CheckFor(t, 5*time.Second, poll, state(func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.busy == 1
	}, func() string { return "worker never busy" }))
	// The only worker is the busy one; find its pid through the idle channel's absence.
	pid = busyPID(t, p)
	killGroup(pid)
	select {
	case err := <-done:
		if !errors.Is(err, errWorkerCrashed) {
			t.Fatalf("err = %v, want worker crashed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer after the worker died")
	}
	res, err := p.run(context.Background(), runJob(t, "hello", time.Second, 128), p.cfg.compileTimeout)
	if err != nil || res.Status != schemas.StatusSucceeded {
		t.Fatalf("hello after crash: %+v %v", res, err)
	}
	if got := counterValue(t, m.workerRestarts.WithLabelValues("crashed")); got != 1 {
		t.Errorf("restarts{crashed} = %v", got)
	}
}

func busyPID(tb testing.TB, p *pool) int {
	tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.all {
		return pr.pid
	}
	tb.Fatal("no worker")
	return 0
}

func counterValue(tb testing.TB, c prometheus.Metric) float64 {
	tb.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		tb.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestForwardStderr checks that a worker's stderr reaches the log as bounded lines.
func TestForwardStderr(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	var in strings.Builder
	in.WriteString(strings.Repeat("x", 10_000) + "\n")
	for i := range 300 {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	seen := 0
	forwardStderr(log, 42, io.NopCloser(strings.NewReader(in.String())), func(string) { seen++ })
	if seen != 301 {
		t.Errorf("seen called for %d lines, want all 301", seen)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 101 { // 100 lines, then one summary of the dropped ones
		t.Fatalf("%d log lines", len(lines))
	}
	var first, last struct {
		Line    string `json:"line"`
		PID     int    `json:"worker_pid"`
		Dropped int    `json:"dropped"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.PID != 42 || len(first.Line) != 4096 {
		t.Errorf("first line: %v pid %d, %d bytes", err, first.PID, len(first.Line))
	}
	if err := json.Unmarshal([]byte(lines[100]), &last); err != nil || last.Dropped != 201 {
		t.Errorf("summary: %v %+v", err, last)
	}
	if !strings.Contains(lines[1], `"line 0"`) {
		t.Errorf("second log line %s, want line 0", lines[1])
	}
}

// TestPool_WorkerHardening checks a worker's environment and resource limits.
func TestPool_WorkerHardening(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("procfs and prlimit are Linux's")
	}
	t.Setenv("WASMWIZ_TEST_SECRET", "hunter2")
	p, _ := newTestPool(t, 1, nil)
	pid := strconv.Itoa(busyPID(t, p))
	env, err := os.ReadFile("/proc/" + pid + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(env, []byte("hunter2")) || !bytes.Contains(env, []byte(workerEnv)) {
		t.Errorf("worker environment: %q", env)
	}
	limits, err := os.ReadFile("/proc/" + pid + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`Max data size\s+` + strconv.Itoa(512<<20+1<<30) + `\s`),
		regexp.MustCompile(`Max core file size\s+0\s`),
		regexp.MustCompile(`Max open files\s+256\s`),
	} {
		if !want.Match(limits) {
			t.Errorf("limits lack %s:\n%s", want, limits)
		}
	}
}
