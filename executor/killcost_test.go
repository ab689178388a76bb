package executor

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/executor/worker"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestPool_KilledAndCrashedJobsReportTheirCost: a guest that reaches its deadline (a loop-free
// call tree), one whose table growth goes over its memory limit, and one allowed more memory
// than its worker's backstop (RLIMIT_DATA), which its table growth hits, all burn CPU until
// their worker dies; the supervisor reports how long each ran and the CPU it used (from the dead
// worker's rusage, less what the worker had used before the guest started), so that none is a
// free run in the execution's event.
func TestPool_KilledAndCrashedJobsReportTheirCost(t *testing.T) {
	p, _ := newTestPool(t, 1, func(c *poolConfig) { c.memoryLimit = 512 << 20 })
	// Warm the worker: its CPU so far (compiling, running hello) must not be billed to the guest.
	if res, err := p.run(context.Background(), runJob(t, "hello", time.Second, 16), p.cfg.compileTimeout); err != nil || res.Error != "" {
		t.Fatalf("hello: %+v %v", res, err)
	}
	_, err := p.run(context.Background(), runJob(t, "expcalls", 400*time.Millisecond, 16), p.cfg.compileTimeout)
	var ke *killedError
	if !errors.As(err, &ke) || ke.compiling || ke.memory {
		t.Fatalf("expcalls: %v, want a kill at the deadline", err)
	}
	// It spins on one core from start to kill (at 400 ms); allow for a busy machine and for the
	// worker's other threads (the Go GC runs beside the guest).
	if ke.after < 400*time.Millisecond || ke.after > 600*time.Millisecond || ke.cpu < 20*time.Millisecond || ke.cpu > ke.after*time.Duration(runtime.NumCPU())+200*time.Millisecond {
		t.Errorf("killed after %v having used %v of CPU", ke.after, ke.cpu)
	}
	t.Logf("expcalls killed after %v, CPU %v", ke.after, ke.cpu)

	// The same on a worker that has compiled the guest already (an upload's compile warmed it):
	// no frame comes before the kill, and the bill starts from the worker's CPU after the compile.
	job := runJob(t, "expcalls", 400*time.Millisecond, 16)
	if cr, err := p.compile(context.Background(), &worker.CompileJob{ModulePath: job.ModulePath, ModuleHash: job.ModuleHash, MemoryPages: job.MemoryPages}, p.cfg.compileTimeout); err != nil || cr.Error != "" {
		t.Fatalf("compile expcalls: %+v %v", cr, err)
	}
	_, err = p.run(context.Background(), job, p.cfg.compileTimeout)
	if !errors.As(err, &ke) || ke.compiling || !job.Warm {
		t.Fatalf("warm expcalls: %v (warm %v), want a kill of a running guest", err, job.Warm)
	}
	if ke.after < 400*time.Millisecond || ke.after > 600*time.Millisecond || ke.cpu < 20*time.Millisecond || ke.cpu > ke.after*time.Duration(runtime.NumCPU())+200*time.Millisecond {
		t.Errorf("warm: killed after %v having used %v of CPU", ke.after, ke.cpu)
	}
	t.Logf("warm expcalls killed after %v, CPU %v", ke.after, ke.cpu)

	_, err = p.run(context.Background(), runJob(t, "tablegrow", 20*time.Second, 16), p.cfg.compileTimeout)
	if !errors.As(err, &ke) || !ke.memory || ke.held <= worker.MemoryLimit(16*16) {
		t.Fatalf("tablegrow with 16 MiB: %v, want a kill for its memory", err)
	}
	if ke.after <= 0 || ke.cpu <= 0 || ke.cpu > ke.after*time.Duration(runtime.NumCPU())+200*time.Millisecond {
		t.Errorf("killed for its memory after %v having used %v of CPU", ke.after, ke.cpu)
	}
	t.Logf("tablegrow killed for its memory (%d MiB) after %v, CPU %v", ke.held>>20, ke.after, ke.cpu)

	_, err = p.run(context.Background(), runJob(t, "tablegrow", 2*time.Minute, 1024), p.cfg.compileTimeout)
	var ce *crashedError
	if !errors.As(err, &ce) || !errors.Is(err, errWorkerCrashed) || !ce.oom {
		t.Fatalf("tablegrow with 1 GiB under a 512 MiB RLIMIT_DATA: %v, want a crash out of memory", err)
	}
	if ce.after <= 0 || ce.cpu <= 0 || ce.cpu > ce.after*time.Duration(runtime.NumCPU())+200*time.Millisecond {
		t.Errorf("crashed after %v having used %v of CPU", ce.after, ce.cpu)
	}
	t.Logf("tablegrow crashed its worker after %v, CPU %v", ce.after, ce.cpu)
}

// TestPool_RecyclesWorkerLeftWithBigTables: a guest allowed 1 GiB that grows a table to ~200 MB
// (and as much again in copies) and then returns normally leaves that Go heap mapped in its
// worker (Go never unmaps heap), which counts against the worker's RLIMIT_DATA. The next guest
// on that worker, reserving its own linear memory, could die of it: the pool replaces such a
// worker instead of reusing it.
func TestPool_RecyclesWorkerLeftWithBigTables(t *testing.T) {
	p, m := newTestPool(t, 1, func(c *poolConfig) { c.memoryLimit = 2 << 30 })
	res, err := p.run(context.Background(), runJob(t, "tablefill", time.Minute, 1024), p.cfg.compileTimeout)
	if err != nil || res.Status != schemas.StatusSucceeded {
		t.Fatalf("tablefill: %+v %v", res, err)
	}
	t.Logf("tablefill: worker runtime holds %d MiB after the job", res.RuntimeBytes>>20)
	if res.RuntimeBytes <= 2<<30/4 {
		t.Fatalf("tablefill left only %d MiB in its worker; the test needs more than a quarter of the limit", res.RuntimeBytes>>20)
	}
	if got := counterValue(t, m.workerRestarts.WithLabelValues("recycled")); got != 1 {
		t.Errorf("restarts{recycled} = %v, want 1", got)
	}
	// The next guest reserves and uses 512 MiB of linear memory on a fresh worker.
	res, err = p.run(context.Background(), runJob(t, "memgrow", 10*time.Second, 512), p.cfg.compileTimeout)
	if err != nil || res.Status != schemas.StatusSucceeded || string(res.Stdout) != "8192\n" {
		t.Fatalf("memgrow 512 MiB after tablefill: %+v %v", res, err)
	}
	// A light guest does not cost its worker.
	if _, err := p.run(context.Background(), runJob(t, "hello", time.Second, 16), p.cfg.compileTimeout); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, m.workerRestarts.WithLabelValues("recycled")); got != 1 {
		t.Errorf("restarts{recycled} = %v after light guests, want still 1", got)
	}
}
