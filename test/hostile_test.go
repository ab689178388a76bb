package test

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// hostileCase is one hostile module, uploaded and (when the upload is accepted) executed once
// through `wasmwiz dev` over REST.
type hostileCase struct {
	name string
	wasm []byte
	req  schemas.ExecutionRequest // ModuleID is filled in

	// A refused upload: its status and a substring of the problem's detail.
	uploadStatus int
	uploadDetail string

	// An accepted one: how the execution ends.
	status   schemas.Status
	orStatus schemas.Status // another acceptable end ("" → none)
	exitCode int
	errHas   string // substring of the execution's error ("" → no error)
	check    func(t *testing.T, e *schemas.Execution)
	maxStop  time.Duration // longest the request may take, client side (0: 10s)
}

// hostileRow is one line of the results table.
type hostileRow struct {
	name, http, status, message string
	upload, stop                time.Duration
	durationMS                  float64
	peak                        int64
	healthy                     bool
}

// TestHostile runs every hostile case of issue 3 against one dev system and checks, for each,
// the HTTP status, the execution's status and message, how long it took to stop, and that the
// node serves a normal execution right after. The dev process (NATS, gateway, executor node,
// accounting; the workers are its children) must keep its memory flat across the suite: its
// VmRSS/VmHWM are read before and after. The results table goes to the test log.
func TestHostile(t *testing.T) {
	s := startDevEnv(t, t.TempDir(), "WASMWIZ_SYNC_WAIT=60s")
	key := s.DevKey // tenant dev, tier pro: 512 MiB, 30 s
	pid := s.procs[0].cmd.Process.Pid
	hello := s.upload(t, key, "hello", fixtures.Wasm("hello"))
	healthy := func() bool {
		t.Helper()
		r, e := s.execute(t, key, schemas.ExecutionRequest{ModuleID: hello.ID})
		ready := s.do(t, http.MethodGet, "/health/ready", "", "", nil)
		return r.Status == 200 && e.Status == schemas.StatusSucceeded && e.Stdout == "hello, world\n" && ready.Status == 200
	}
	for range 5 { // warm up: every worker has run something
		if !healthy() {
			t.Fatal("hello fails before the suite")
		}
	}
	before := procMem(t, pid)

	pro := schemas.DefaultTiers()[schemas.TierPro]
	trap := func(what string) hostileCase {
		return hostileCase{status: schemas.StatusFailed, exitCode: -1, errHas: "trap: " + what}
	}
	exit := func(code int) hostileCase {
		c := hostileCase{name: fmt.Sprintf("proc_exit(%d)", code), status: schemas.StatusFailed, exitCode: code}
		if code == 0 {
			c.status = schemas.StatusSucceeded
		}
		return c
	}
	named := func(c hostileCase, name, fixture string) hostileCase {
		c.name, c.wasm = name, fixtures.Wasm(fixture)
		return c
	}
	hello7 := fixtures.Wasm("hello")
	var clockOut, seededOut string
	seven := int64(7)

	cases := []hostileCase{
		{name: "infinite loop (timeout 1s)", wasm: fixtures.Wasm("loop"), req: schemas.ExecutionRequest{TimeoutMS: 1000},
			status: schemas.StatusTimedOut, exitCode: -1, errHas: "time limit", maxStop: 5 * time.Second,
			check: func(t *testing.T, e *schemas.Execution) {
				// Killed with its worker at the deadline and billed up to the kill.
				if e.DurationMS < 1000 || e.DurationMS > 1000+500 {
					t.Errorf("stopped after %.0f ms, want 1000 ms (the deadline) (+slack)", e.DurationMS)
				}
			}},
		{name: "loop-free exponential call tree (timeout 1s)", wasm: fixtures.Wasm("expcalls"), req: schemas.ExecutionRequest{TimeoutMS: 1000},
			status: schemas.StatusTimedOut, exitCode: -1, errHas: "time limit", maxStop: 5 * time.Second,
			check: func(t *testing.T, e *schemas.Execution) {
				if e.DurationMS < 1000 || e.DurationMS > 1000+500 {
					t.Errorf("killed after %.0f ms, want 1000 ms (the deadline) (+slack)", e.DurationMS)
				}
			}},
		named(trap("stack overflow"), "deep recursion", "recursion"),
		{name: "memory.grow to the tier cap (512 MiB) and past it", wasm: fixtures.Wasm("memgrow"),
			status: schemas.StatusSucceeded, check: stdoutIs(strconv.Itoa(pro.MemoryMB*16) + "\n")},
		{name: "memory.grow to memory_mb=16 and past it", wasm: fixtures.Wasm("memgrow"), req: schemas.ExecutionRequest{MemoryMB: 16},
			status: schemas.StatusSucceeded, check: stdoutIs("256\n")},
		{name: "table bomb (10M-element table declared)", wasm: fixtures.Wasm("tablebomb"),
			uploadStatus: 422, uploadDetail: "table of 10000000 elements is over the limit of 100000"},
		{name: "table growth at run time (table.grow+fill)", wasm: fixtures.Wasm("tablegrow"),
			status: schemas.StatusKilled, exitCode: -1, errHas: "memory limit exceeded", maxStop: 30 * time.Second,
			check: func(t *testing.T, e *schemas.Execution) {
				// Table memory is outside wazero's memory limit: the node kills the guest when what
				// it holds passes the tier's memory (issue 12, hole 13), and bills what it held.
				if e.MemoryPeakBytes <= int64(pro.MemoryMB)*schemas.MiB || e.DurationMS < 50 {
					t.Errorf("billed %d MiB for %.0f ms, want more than the tier's %d MiB", e.MemoryPeakBytes>>20, e.DurationMS, pro.MemoryMB)
				}
			}},
		// 24M elements (~200 MB) grown a million at a time hold three times that in copies.
		{name: "table grown to 24M elements, then exit 0", wasm: fixtures.Wasm("tablefill"),
			status: schemas.StatusKilled, exitCode: -1, errHas: "memory limit exceeded", maxStop: 30 * time.Second},
		{name: "memory.grow to 512 MiB right after it", wasm: fixtures.Wasm("memgrow"),
			status: schemas.StatusSucceeded, check: stdoutIs(strconv.Itoa(pro.MemoryMB*16) + "\n")},
		{name: "4 GiB initial memory", wasm: fixtures.Wasm("bigmem"),
			uploadStatus: 422, uploadDetail: "memory minimum of 65536 pages (4096 MiB) is over the tier's 512 MiB"},
		{name: "huge function body (8 MiB + 20 bytes, over the policy)", wasm: genModule(1, []byte{0x01}, 8<<20+16), // nops
			uploadStatus: 422, uploadDetail: "bytes in its largest function body, over the limit of 8388608"},
		{name: "huge function body (2.1 MB, 300k adds, within the policy)", wasm: genModule(1, patAdd, 300_000),
			status: schemas.StatusSucceeded, maxStop: 30 * time.Second},
		{name: fmt.Sprintf("many functions (%d, over the tier's cap)", pro.FunctionCap()+1), wasm: genModule(pro.FunctionCap()+1, nil, 0),
			uploadStatus: 422, uploadDetail: fmt.Sprintf("module has %d functions, over the limit of %d", pro.FunctionCap()+1, pro.FunctionCap())},
		{name: fmt.Sprintf("many functions (%d, at the tier's cap)", pro.FunctionCap()), wasm: genModule(pro.FunctionCap(), patDrop, 1),
			status: schemas.StatusSucceeded, maxStop: 30 * time.Second},
		{name: "stdout flood (4 MiB)", wasm: fixtures.Wasm("stdoutflood"), status: schemas.StatusSucceeded,
			check: func(t *testing.T, e *schemas.Execution) {
				if !e.StdoutTruncated || len(e.Stdout) != 1<<20 || e.Stdout != strings.Repeat("x", 1<<20) {
					t.Errorf("stdout truncated=%v, %d bytes; want the first 1 MiB", e.StdoutTruncated, len(e.Stdout))
				}
			}},
		{name: "stderr flood (4 MiB)", wasm: fixtures.Wasm("stderrflood"), status: schemas.StatusSucceeded,
			check: func(t *testing.T, e *schemas.Execution) {
				if !e.StderrTruncated || len(e.Stderr) != 1<<20 || e.Stdout != "" {
					t.Errorf("stderr truncated=%v, %d bytes; want the first 1 MiB", e.StderrTruncated, len(e.Stderr))
				}
			}},
		named(exit(0), "proc_exit(0)", "exit_0"),
		named(exit(1), "proc_exit(1)", "exit_1"),
		named(exit(255), "proc_exit(255)", "exit_255"),
		named(exit(256), "proc_exit(256)", "exit_256"),
		named(exit(1<<31), "proc_exit(2^31)", "exit_2p31"),
		named(exit(1<<32-1), "proc_exit(2^32-1)", "exit_max"),
		named(trap("unreachable"), "trap: unreachable", "trap"),
		named(trap("integer divide by zero"), "trap: divide by zero", "divzero"),
		named(trap("integer overflow"), "trap: integer overflow (INT32_MIN / -1)", "intoverflow"),
		named(trap("out of bounds memory access"), "trap: out-of-bounds load", "oob"),
		named(trap("indirect call type mismatch"), "trap: indirect call type mismatch", "indirectsig"),
		named(trap("invalid table access"), "trap: indirect call through a null element", "indirectnull"),
		{name: "poll_oneoff sleeping 60s (timeout 2s)", wasm: fixtures.Wasm("sleep"), req: schemas.ExecutionRequest{TimeoutMS: 2000},
			status: schemas.StatusSucceeded, check: func(t *testing.T, e *schemas.Execution) {
				// wazero's default clock is fake and its sleep returns at once: the guest wakes
				// well before its deadline, having slept not at all.
				stdoutIs("woke\n")(t, e)
				if e.DurationMS > 1000 {
					t.Errorf("slept %.0f ms; the fake clock's sleep should return at once", e.DurationMS)
				}
			}},
		{name: "clock and random, run 1", wasm: fixtures.Wasm("clock"), status: schemas.StatusSucceeded,
			check: func(t *testing.T, e *schemas.Execution) {
				if len(e.Stdout) != 34 {
					t.Errorf("stdout %q", e.Stdout)
				}
				clockOut = e.Stdout
			}},
		{name: "clock and random, run 2 (same fixed clock, other random bytes)", wasm: fixtures.Wasm("clock"), status: schemas.StatusSucceeded,
			check: func(t *testing.T, e *schemas.Execution) {
				// issue 12, hole 14: every execution's random bytes are its own.
				if len(e.Stdout) != 34 || len(clockOut) != 34 || e.Stdout[:16] != clockOut[:16] || e.Stdout[17:] == clockOut[17:] {
					t.Errorf("second run printed %q, first %q: want the same fixed clock and other random bytes", e.Stdout, clockOut)
				}
			}},
		{name: "clock and random with seed 7, run 1", wasm: fixtures.Wasm("clock"), req: schemas.ExecutionRequest{Seed: &seven},
			status: schemas.StatusSucceeded, check: func(t *testing.T, e *schemas.Execution) { seededOut = e.Stdout }},
		{name: "clock and random with seed 7, run 2 (identical)", wasm: fixtures.Wasm("clock"), req: schemas.ExecutionRequest{Seed: &seven},
			status: schemas.StatusSucceeded, check: func(t *testing.T, e *schemas.Execution) {
				if e.Stdout != seededOut || seededOut == clockOut {
					t.Errorf("seed 7 printed %q then %q (unseeded %q): want the same twice", seededOut, e.Stdout, clockOut)
				}
			}},
		{name: "import of a missing function (env.foo)", wasm: fixtures.Wasm("badimport"),
			uploadStatus: 422, uploadDetail: "import env.foo is not allowed"},
		{name: "import of a missing WASI function", wasm: fixtures.Wasm("nowasifn"),
			uploadStatus: 422, uploadDetail: "import wasi_snapshot_preview1.does_not_exist is not a WASI preview 1 function"},
		{name: "malformed: truncated", wasm: hello7[:len(hello7)-7], uploadStatus: 422, uploadDetail: "malformed module"},
		{name: "malformed: bad magic", wasm: append([]byte("\x00wasm"), hello7[4:]...), uploadStatus: 422, uploadDetail: "bad magic"},
		{name: "malformed: component header", wasm: []byte("\x00asm\x0d\x00\x01\x00\x00\x00"), uploadStatus: 422, uploadDetail: "component binaries are not supported"},
		{name: "malformed: version 2", wasm: append([]byte("\x00asm\x02\x00\x00\x00"), hello7[8:]...), uploadStatus: 422, uploadDetail: "unsupported WebAssembly version"},
		{name: "malformed: 8 bytes of garbage after a valid header", wasm: []byte("\x00asm\x01\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff"), uploadStatus: 422, uploadDetail: "malformed module"},
	}

	var rows []hostileRow
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			row := hostileRow{name: c.name}
			defer func() { rows = append(rows, row) }()
			maxStop := c.maxStop
			if maxStop == 0 {
				maxStop = 10 * time.Second
			}
			start := time.Now()
			up := s.do(t, http.MethodPost, fmt.Sprintf("/v1/modules?name=hostile-%d", i), key, "application/wasm", c.wasm)
			row.upload = time.Since(start)
			if c.uploadStatus != 0 {
				row.stop = time.Since(start)
				row.http, row.status = strconv.Itoa(up.Status)+" (upload)", "–"
				code, detail := "", ""
				if up.Status >= 400 {
					code, detail = up.problem(t)
				}
				row.message = code + ": " + detail
				if up.Status != c.uploadStatus || code != string(schemas.CodeInvalidModule) || !strings.Contains(detail, c.uploadDetail) {
					t.Errorf("upload: %d %s; want %d invalid_module containing %q", up.Status, up.Body, c.uploadStatus, c.uploadDetail)
				}
			} else {
				if up.Status != http.StatusCreated {
					t.Fatalf("upload: %d %s", up.Status, up.Body)
				}
				var m schemas.Module
				up.decode(t, &m)
				req := c.req
				req.ModuleID = m.ID
				start = time.Now()
				r, e := s.execute(t, key, req)
				row.stop = time.Since(start)
				row.http = strconv.Itoa(r.Status)
				if r.Status != http.StatusOK {
					t.Fatalf("execute: %d %s", r.Status, r.Body)
				}
				row.status, row.durationMS, row.peak = string(e.Status), e.DurationMS, e.MemoryPeakBytes
				row.message = e.Error
				if e.ExitCode != nil {
					row.message = fmt.Sprintf("exit %d", *e.ExitCode) + strings.TrimSuffix(" "+e.Error, " ")
				}
				if (e.Status != c.status && (c.orStatus == "" || e.Status != c.orStatus)) || e.ExitCode == nil || *e.ExitCode != c.exitCode {
					t.Errorf("execution: status %s exit %v error %q; want %s exit %d", e.Status, fmtExit(e.ExitCode), e.Error, c.status, c.exitCode)
				}
				if c.errHas != "" && !strings.Contains(e.Error, c.errHas) || c.errHas == "" && c.status != schemas.StatusKilled && e.Error != "" {
					t.Errorf("execution error %q, want one containing %q", e.Error, c.errHas)
				}
				if c.check != nil {
					c.check(t, e)
				}
			}
			if row.stop > maxStop {
				t.Errorf("took %v to stop, want at most %v", row.stop, maxStop)
			}
			row.healthy = healthy()
			if !row.healthy {
				t.Errorf("the node does not serve a normal execution after %s", c.name)
			}
		})
	}

	after := procMem(t, pid)
	if !s.procs[0].alive() {
		t.Fatal("the dev process died")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "hostile suite through wasmwiz dev (tier pro: %d MiB, %v):\n\n", pro.MemoryMB, pro.WallTime)
	b.WriteString("| case | upload (incl. compile) | HTTP | execution status | message | time to stop | guest ran | guest peak | node healthy after |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		ran, peak := "–", "–"
		if r.status != "–" && r.status != "" {
			ran, peak = fmt.Sprintf("%.0f ms", r.durationMS), fmt.Sprintf("%.1f MiB", float64(r.peak)/(1<<20))
		}
		fmt.Fprintf(&b, "| %s | %v | %s | %s | %s | %v | %s | %s | %v |\n", r.name, r.upload.Round(time.Millisecond), r.http, r.status,
			trunc(r.message, 110), r.stop.Round(time.Millisecond), ran, peak, yesNo(r.healthy))
	}
	metrics := string(s.do(t, http.MethodGet, "/metrics", "", "", nil).Body)
	fmt.Fprintf(&b, "\ndev process (pid %d; NATS, gateway, executor node, accounting; workers are children): "+
		"before the suite VmRSS %.0f MiB VmHWM %.0f MiB; after VmRSS %.0f MiB VmHWM %.0f MiB (peak); worker restarts %s\n",
		pid, mib(before.rss), mib(before.hwm), mib(after.rss), mib(after.hwm), metricSum(metrics, "wasmwiz_worker_restarts_total"))
	t.Log("\n" + b.String())

	// Flat: no guest's memory ever lands in the node. The suite moves a few MiB of modules and
	// output through the process (JetStream, the gateway's buffers); a guest's linear memory
	// (512 MiB) or table growth (GiBs) in the node would be far above this.
	if grow := after.hwm - before.hwm; grow > 192<<20 {
		t.Errorf("the dev process's peak RSS grew by %.0f MiB during the suite", mib(grow))
	}
	if grow := after.rss - before.rss; grow > 128<<20 {
		t.Errorf("the dev process's RSS grew by %.0f MiB during the suite", mib(grow))
	}
}

func stdoutIs(want string) func(t *testing.T, e *schemas.Execution) {
	return func(t *testing.T, e *schemas.Execution) {
		if e.Stdout != want {
			t.Errorf("stdout %q, want %q", trunc(e.Stdout, 80), want)
		}
	}
}

type memSample struct{ rss, hwm int64 }

// procMem reads VmRSS and VmHWM of process pid from /proc.
func procMem(t testing.TB, pid int) memSample {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/status: %v", pid, err)
	}
	var m memSample
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = kb << 10
		case "VmHWM:":
			m.hwm = kb << 10
		}
	}
	if m.rss == 0 || m.hwm == 0 {
		t.Fatalf("no VmRSS/VmHWM in /proc/%d/status", pid)
	}
	return m
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func fmtExit(p *int) string {
	if p == nil {
		return "none"
	}
	return strconv.Itoa(*p)
}

func trunc(s string, n int) string {
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

// metricSum adds up every series of a counter in a Prometheus text exposition.
func metricSum(metrics, name string) string {
	var sum float64
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return strconv.FormatFloat(sum, 'f', -1, 64)
}

// TestHostile_ExpensiveCompile uploads a module within every upload policy limit that takes
// seconds to compile (one 7.7 MB function of 1.1 million adds: about 3.5 s and 400 MB in
// wazero's compiler on a 2-core machine) to a node whose compile timeout is 500 ms: the compile
// is killed with its worker, the upload is a 422 naming the rule, the module is not kept, and
// the node compiles and runs the next module normally.
func TestHostile_ExpensiveCompile(t *testing.T) {
	s := startDevEnv(t, t.TempDir(), "WASMWIZ_COMPILE_TIMEOUT=300ms", "WASMWIZ_SYNC_WAIT=30s") // the module compiles in 0.8 s on a quiet machine
	key := s.DevKey
	pid := s.procs[0].cmd.Process.Pid
	before := procMem(t, pid)
	wasm := genModule(1, patAdd, 1_100_000)
	start := time.Now()
	r := s.do(t, http.MethodPost, "/v1/modules?name=expensive", key, "application/wasm", wasm)
	took := time.Since(start)
	code, detail := "", ""
	if r.Status >= 400 {
		code, detail = r.problem(t)
	}
	if r.Status != 422 || code != string(schemas.CodeInvalidModule) || !strings.Contains(detail, "module too expensive to compile") {
		t.Fatalf("upload of an expensive module: %d %s", r.Status, r.Body)
	}
	if took > 5*time.Second {
		t.Errorf("the refusal took %v; the compile should be stopped at 300 ms (+ grace)", took)
	}
	var l schemas.ModuleList
	s.do(t, http.MethodGet, "/v1/modules", key, "", nil).decode(t, &l)
	if len(l.Modules) != 0 {
		t.Errorf("the refused module is listed: %+v", l.Modules)
	}
	hello := s.upload(t, key, "hello", fixtures.Wasm("hello"))
	if e := s.run(t, key, schemas.ExecutionRequest{ModuleID: hello.ID}); e.Status != schemas.StatusSucceeded || e.Stdout != "hello, world\n" {
		t.Errorf("hello after the killed compile: %+v", e)
	}
	after := procMem(t, pid)
	t.Logf("expensive compile (%d bytes, one function): %d %s: %s, after %v; node healthy after: yes; "+
		"dev process VmRSS %.0f → %.0f MiB, VmHWM %.0f → %.0f MiB",
		len(wasm), r.Status, code, detail, took.Round(time.Millisecond), mib(before.rss), mib(after.rss), mib(before.hwm), mib(after.hwm))
	if grow := after.hwm - before.hwm; grow > 128<<20 {
		t.Errorf("the dev process's peak RSS grew by %.0f MiB: the compile must not happen in it", mib(grow))
	}
}
