package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// client drives Main in-process over pipes, speaking the protocol as the node does. The node's
// own tests run the worker as a real child process; these check the worker's behaviour.
type client struct {
	tb   testing.TB
	dir  string
	enc  *gob.Encoder
	dec  *gob.Decoder
	in   *io.PipeWriter
	done chan int
	// memory holds the last run's Memory frames.
	memory []int64
}

func startClient(tb testing.TB) *client {
	tb.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	c := &client{tb: tb, dir: tb.TempDir(), enc: gob.NewEncoder(inW), dec: gob.NewDecoder(outR), in: inW, done: make(chan int, 1)}
	var stderr bytes.Buffer
	go func() {
		code := Main(context.Background(), inR, outW, &stderr)
		outW.Close()
		c.done <- code
	}()
	if err := c.enc.Encode(&Request{Hello: &Hello{CacheDir: filepath.Join(c.dir, "wazero")}}); err != nil {
		tb.Fatal(err)
	}
	var r Response
	if err := c.dec.Decode(&r); err != nil || r.Ready == nil || r.Ready.Error != "" {
		tb.Fatalf("ready: %v %+v", err, r.Ready)
	}
	tb.Cleanup(func() {
		inW.Close()
		if tb.Failed() {
			outR.Close() // a test that stopped reading mid-job must not leave the worker blocked writing
			<-c.done
			return
		}
		if code := <-c.done; code != 0 {
			tb.Errorf("worker exit code %d", code)
		}
	})
	return c
}

// module writes bin to the client's directory as the node does and returns its path and hash.
func (c *client) module(bin []byte) (path, hash string) {
	sum := sha256.Sum256(bin)
	hash = hex.EncodeToString(sum[:])
	path = filepath.Join(c.dir, hash+".wasm")
	if err := os.WriteFile(path, bin, 0o644); err != nil {
		c.tb.Fatal(err)
	}
	return path, hash
}

func (c *client) run(bin []byte, job RunJob) (*RunResult, *Started) {
	c.tb.Helper()
	job.ModulePath, job.ModuleHash = c.module(bin)
	if job.Name == "" {
		job.Name = "guest"
	}
	if job.MemoryPages == 0 {
		job.MemoryPages = 128 * 16 // 128 MiB
	}
	if job.StdoutMax == 0 {
		job.StdoutMax = 1 << 20
	}
	if job.StderrMax == 0 {
		job.StderrMax = 1 << 20
	}
	if err := c.enc.Encode(&Request{Run: &job}); err != nil {
		c.tb.Fatal(err)
	}
	var started *Started
	compiling := false
	c.memory = c.memory[:0]
	for {
		var r Response
		if err := c.dec.Decode(&r); err != nil {
			c.tb.Fatal(err)
		}
		switch {
		case r.Compiling != nil && !compiling && started == nil:
			compiling = true
		case r.Started != nil && (compiling || !job.Warm) && started == nil:
			started = r.Started
		case r.Memory != nil && (started != nil || (job.Warm && !compiling)):
			// Reports come while the guest runs, each different from the one before.
			if n := len(c.memory); n > 0 && c.memory[n-1] == r.Memory.Bytes {
				c.tb.Fatalf("memory report repeated: %d", r.Memory.Bytes)
			}
			c.memory = append(c.memory, r.Memory.Bytes)
		case r.Run != nil:
			if r.Run.CompileCacheHit == compiling {
				c.tb.Fatalf("run with compile cache hit %v after Compiling %v", r.Run.CompileCacheHit, compiling)
			}
			return r.Run, started
		default:
			c.tb.Fatalf("unexpected frame %+v", r)
		}
	}
}

func (c *client) compile(bin []byte, pages uint32) *CompileResult {
	c.tb.Helper()
	path, hash := c.module(bin)
	if err := c.enc.Encode(&Request{Compile: &CompileJob{ModulePath: path, ModuleHash: hash, MemoryPages: pages}}); err != nil {
		c.tb.Fatal(err)
	}
	var r Response
	if err := c.dec.Decode(&r); err != nil || r.Compile == nil {
		c.tb.Fatalf("compile: %v %+v", err, r)
	}
	return r.Compile
}

func TestWorker_Run(t *testing.T) {
	c := startClient(t)
	tests := []struct {
		name     string
		job      RunJob
		status   schemas.Status
		exit     int
		stdout   string
		errorHas string
	}{
		{name: "hello", status: schemas.StatusSucceeded, stdout: "hello, world\n"},
		{name: "echo", job: RunJob{Stdin: []byte("ping\x00pong")}, status: schemas.StatusSucceeded, stdout: "ping\x00pong"},
		{name: "exit7", status: schemas.StatusFailed, exit: 7},
		{name: "trap", status: schemas.StatusFailed, exit: -1, errorHas: "trap: unreachable"},
		{name: "divzero", status: schemas.StatusFailed, exit: -1, errorHas: "trap: integer divide by zero"},
		// wazero grows a deep recursion's stack to ~100 MB (Go heap, counted): more than 128 MiB.
		{name: "recursion", job: RunJob{MemoryPages: 256 * 16}, status: schemas.StatusFailed, exit: -1, errorHas: "trap: stack overflow"},
		{name: "memgrow", status: schemas.StatusSucceeded, stdout: "2048\n"},
		{name: "memgrow", job: RunJob{MemoryPages: 16}, status: schemas.StatusSucceeded, stdout: "16\n"},
		{name: "sleep", status: schemas.StatusSucceeded, stdout: "woke\n"},
		{name: "nostart", status: schemas.StatusFailed, exit: -1, errorHas: "no _start"},
		{name: "badimport", status: schemas.StatusFailed, exit: -1, errorHas: "cannot instantiate module: module[env] not instantiated"},
		{name: "bigmem", status: schemas.StatusFailed, exit: -1, errorHas: "the module's memory minimum of 65536 pages (4096 MiB) is over the execution's memory limit of 128 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, _ := c.run(fixtures.Wasm(tt.name), tt.job)
			t.Logf("%s exit %d error %q in %v", res.Status, res.ExitCode, res.Error, res.Duration)
			if res.Status != tt.status || res.ExitCode != tt.exit {
				t.Fatalf("status %s exit %d (error %q), want %s exit %d", res.Status, res.ExitCode, res.Error, tt.status, tt.exit)
			}
			if tt.stdout != "" && string(res.Stdout) != tt.stdout {
				t.Errorf("stdout %q, want %q", res.Stdout, tt.stdout)
			}
			if !strings.Contains(res.Error, tt.errorHas) {
				t.Errorf("error %q, want it to contain %q", res.Error, tt.errorHas)
			}
			if strings.Contains(res.Error, "\n") || strings.Contains(res.Error, c.dir) {
				t.Errorf("error %q has a stack trace or a host path", res.Error)
			}
			if tt.name == "sleep" && res.Duration > time.Second {
				t.Errorf("sleep took %v: the guest slept on the host clock", res.Duration)
			}
			if tt.name == "memgrow" {
				pages := int64(tt.job.MemoryPages)
				if pages == 0 {
					pages = 2048
				}
				// Its linear memory, and the little Go heap its instance and output took.
				if res.MemoryPeakBytes < pages*65536 || res.MemoryPeakBytes > pages*65536+1<<20 {
					t.Errorf("memory peak %d, want %d and at most 1 MiB more", res.MemoryPeakBytes, pages*65536)
				}
			}
		})
	}
}

func TestWorker_Run_Output(t *testing.T) {
	c := startClient(t)
	res, _ := c.run(fixtures.Wasm("stdoutflood"), RunJob{StdoutMax: 1000})
	if res.Status != schemas.StatusSucceeded || len(res.Stdout) != 1000 || !res.StdoutTruncated || res.StdoutBytes != 4<<20 {
		t.Errorf("stdoutflood: %s stdout %d bytes truncated %v total %d", res.Status, len(res.Stdout), res.StdoutTruncated, res.StdoutBytes)
	}
	res, _ = c.run(fixtures.Wasm("stderrflood"), RunJob{StderrMax: 10})
	if res.Status != schemas.StatusSucceeded || string(res.Stderr) != "xxxxxxxxxx" || !res.StderrTruncated || res.StderrBytes != 4<<20 || res.StdoutTruncated {
		t.Errorf("stderrflood: %s stderr %q truncated %v total %d", res.Status, res.Stderr, res.StderrTruncated, res.StderrBytes)
	}

	probe := fixtures.Probe(t)
	stdin := bytes.Repeat([]byte("wasmwiz"), 100_000)
	res, _ = c.run(probe, RunJob{Stdin: stdin})
	t.Logf("probe sha256 of 700 kB: held %d KiB", res.MemoryPeakBytes>>10)
	if want := fmt.Sprintf("%x\n", sha256.Sum256(stdin)); string(res.Stdout) != want {
		t.Errorf("probe sha256: %s %q %q, want %q", res.Status, res.Stdout, res.Error, want)
	}
	res, _ = c.run(probe, RunJob{Name: "probe", Args: []string{"args", "x y"}, Env: []string{"B=2", "A=1"}})
	if want := "probe\nargs\nx y\n--\nA=1\nB=2\n"; string(res.Stdout) != want {
		t.Errorf("probe args: %q, want %q", res.Stdout, want)
	}
	res, _ = c.run(probe, RunJob{Args: []string{"exit", "3"}})
	if res.Status != schemas.StatusFailed || res.ExitCode != 3 {
		t.Errorf("probe exit 3: %s %d", res.Status, res.ExitCode)
	}
}

// clockAndRandom runs the clock fixture: its wall-clock reading (ns) and 8 random bytes (hex).
func clockAndRandom(t *testing.T, c *client, job RunJob) (wall int64, random string) {
	t.Helper()
	res, _ := c.run(fixtures.Wasm("clock"), job)
	if res.Status != schemas.StatusSucceeded {
		t.Fatalf("clock: %s %q", res.Status, res.Error)
	}
	var ts string
	if _, err := fmt.Sscanf(string(res.Stdout), "%s %s", &ts, &random); err != nil {
		t.Fatalf("clock output %q: %v", res.Stdout, err)
	}
	u, err := strconv.ParseUint(ts, 16, 64)
	if err != nil {
		t.Fatalf("clock output %q: %v", res.Stdout, err)
	}
	return int64(u), random
}

// TestSecurity_RandomSeedPerExecution (issue 12, hole 14): every run's random bytes differ
// (seeded from the system's random source), unless the job gives a seed, which reproduces them;
// the Go probe (crypto/rand in a Go guest) agrees. The clock is fixed unless the job asks for
// the real one.
func TestSecurity_RandomSeedPerExecution(t *testing.T) {
	c := startClient(t)
	seen := map[string]bool{}
	var walls []int64
	for range 3 {
		wall, random := clockAndRandom(t, c, RunJob{})
		if seen[random] {
			t.Errorf("random bytes %s repeated across runs", random)
		}
		seen[random] = true
		walls = append(walls, wall)
	}
	if walls[0] != walls[1] || walls[1] != walls[2] {
		t.Errorf("fixed clock read %v, want the same start every run", walls)
	}
	if d := time.Duration(time.Now().UnixNano() - walls[0]); d < 24*time.Hour {
		t.Errorf("fixed clock reads %v, within a day of the host's clock", time.Unix(0, walls[0]))
	}

	seed, other := int64(42), int64(-7)
	_, a := clockAndRandom(t, c, RunJob{Seed: &seed})
	_, b := clockAndRandom(t, c, RunJob{Seed: &seed})
	_, d := clockAndRandom(t, c, RunJob{Seed: &other})
	if a != b || a == d || seen[a] {
		t.Errorf("seed 42 gave %s then %s, seed -7 %s: want the same bytes for one seed, others for another", a, b, d)
	}

	before := time.Now().UnixNano()
	wall, _ := clockAndRandom(t, c, RunJob{RealClock: true})
	if after := time.Now().UnixNano(); wall < before || wall > after {
		t.Errorf("real clock read %d, outside [%d, %d]", wall, before, after)
	}

	// A Go guest's crypto/rand (the probe prints the clock and 16 random bytes).
	probe := fixtures.Probe(t)
	outs := map[string]bool{}
	for range 2 {
		res, _ := c.run(probe, RunJob{Args: []string{"clock"}})
		if res.Status != schemas.StatusSucceeded {
			t.Fatalf("probe clock: %s %q", res.Status, res.Error)
		}
		outs[string(res.Stdout)] = true
	}
	if len(outs) != 2 {
		t.Errorf("the Go probe printed the same clock and random bytes twice: %v", outs)
	}
	var seeded []string
	for range 2 {
		res, _ := c.run(probe, RunJob{Args: []string{"clock"}, Seed: &seed})
		seeded = append(seeded, string(res.Stdout))
	}
	if seeded[0] != seeded[1] {
		t.Errorf("the Go probe with one seed printed %q", seeded)
	}
}

// namedTrapModule is a WASI command whose _start calls deep_in_guest, which executes
// unreachable, with a name section naming both (as clang and Go emit one): wasm bytes by hand.
func namedTrapModule() []byte {
	section := func(id byte, body ...byte) []byte { return append([]byte{id, byte(len(body))}, body...) }
	name := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	m := []byte("\x00asm\x01\x00\x00\x00")
	m = append(m, section(1, 1, 0x60, 0, 0)...) // type 0: [] -> []
	m = append(m, section(3, 2, 0, 0)...)       // functions 0 and 1 of type 0
	m = append(m, section(5, 1, 0, 1)...)       // a memory of one page
	exports := append([]byte{2}, append(name("_start"), 0, 0)...)
	exports = append(exports, append(name("memory"), 2, 0)...)
	m = append(m, section(7, exports...)...)
	m = append(m, section(10, 2, 4, 0, 0x10, 1, 0x0b, 3, 0, 0x00, 0x0b)...) // call 1; unreachable
	names := append([]byte{2}, append([]byte{0}, name("_start")...)...)
	names = append(names, append([]byte{1}, name("deep_in_guest")...)...)
	m = append(m, section(0, append(name("name"), append([]byte{1, byte(len(names))}, names...)...)...)...)
	return m
}

// TestRun_TrapNamesWhere: a trap's error names the functions it happened in, innermost first,
// from the module's name section, on one line, as the wazero CLI's stack trace does: SQLite's
// "trap: invalid table access" said nothing of robust_open, where the wazero CLI named it.
func TestRun_TrapNamesWhere(t *testing.T) {
	c := startClient(t)
	res, _ := c.run(namedTrapModule(), RunJob{})
	if res.Status != schemas.StatusFailed || res.Error != "trap: unreachable (in deep_in_guest, called from _start)" {
		t.Fatalf("%s, error %q", res.Status, res.Error)
	}
}

// TestRun_DevURandom: /dev/urandom gives a run what random_get gives it, so a program seeding
// itself from it (SQLite's random() and randomblob(), which fall back to the clock, fixed by
// default, without it) gets new bytes every run and the same ones for the same seed.
func TestRun_DevURandom(t *testing.T) {
	c := startClient(t)
	probe := fixtures.Probe(t)
	read := func(job RunJob) string {
		t.Helper()
		job.Args = []string{"read", "/dev/urandom", "16"}
		res, _ := c.run(probe, job)
		if res.Status != schemas.StatusSucceeded {
			t.Fatalf("probe read /dev/urandom: %s exit %d %q stderr %q", res.Status, res.ExitCode, res.Error, res.Stderr)
		}
		return string(res.Stdout)
	}
	a, b := read(RunJob{}), read(RunJob{})
	seed, other := int64(42), int64(-7)
	s1, s2, s3 := read(RunJob{Seed: &seed}), read(RunJob{Seed: &seed}), read(RunJob{Seed: &other})
	if a == b || s1 != s2 || s1 == s3 || s1 == a {
		t.Errorf("unseeded %q then %q; seed 42 %q then %q, seed -7 %q: want new bytes unseeded, the same for one seed", a, b, s1, s2, s3)
	}
}

// TestSecurity_EnvSetupCountsAgainstDeadline (issue 12, hole 7, the worker's side): building a
// guest's environment is part of its run. Thousands of env entries cost wazero time quadratic
// in their number; that time is in the run's duration and CPU time (and so in its bill), and,
// since the node times the deadline from before it, within its deadline.
func TestSecurity_EnvSetupCountsAgainstDeadline(t *testing.T) {
	c := startClient(t)
	env := make([]string, 2500)
	for i := range env {
		env[i] = fmt.Sprintf("K%05d=v", i)
	}
	start := time.Now()
	res, _ := c.run(fixtures.Wasm("hello"), RunJob{Env: env, Warm: true})
	elapsed := time.Since(start)
	if res.Status != schemas.StatusSucceeded {
		t.Fatalf("hello with %d env entries: %s %q", len(env), res.Status, res.Error)
	}
	t.Logf("%d env entries: run took %v (CPU %v), round trip %v", len(env), res.Duration, res.CPU, elapsed)
	if elapsed < 20*time.Millisecond {
		t.Skipf("setting up %d env entries took only %v here; nothing to tell apart", len(env), elapsed)
	}
	if res.Duration < elapsed*3/4 || res.CPU <= 0 {
		t.Errorf("run reported %v (CPU %v) of a %v round trip: the environment's setup is not counted", res.Duration, res.CPU, elapsed)
	}
}

// TestSecurity_TableGrowthMemoryCapped (issue 12, hole 13, the worker's side): memory outside
// linear memory counts. tablefill grows a funcref table a million entries at a time to 24
// million (~200 MB of Go heap, and as much again in the copies growth leaves behind; its linear
// memory is one page): under a 1 GiB limit it succeeds and its peak says what it held; under
// 128 MiB it is a memory-limit failure, and its memory reports (what the node kills by) went
// over the limit while it ran.
func TestSecurity_TableGrowthMemoryCapped(t *testing.T) {
	c := startClient(t)
	res, _ := c.run(fixtures.Wasm("tablefill"), RunJob{MemoryPages: 1024 * 16})
	t.Logf("tablefill under 1 GiB: %s %q, peak %d MiB, reports %v", res.Status, res.Error, res.MemoryPeakBytes>>20, c.memory)
	if res.Status != schemas.StatusSucceeded || res.MemoryPeakBytes < 192<<20 {
		t.Errorf("tablefill under 1 GiB: %s %q, peak %d MiB; want success billed at least 192 MiB", res.Status, res.Error, res.MemoryPeakBytes>>20)
	}

	res, _ = c.run(fixtures.Wasm("tablefill"), RunJob{MemoryPages: 128 * 16})
	t.Logf("tablefill under 128 MiB: %s %q, peak %d MiB, reports %v", res.Status, res.Error, res.MemoryPeakBytes>>20, c.memory)
	if res.Status != schemas.StatusKilled || !strings.HasPrefix(res.Error, "memory limit exceeded") || res.MemoryPeakBytes <= 128<<20 {
		t.Errorf("tablefill under 128 MiB: %s %q, peak %d MiB; want killed for its memory", res.Status, res.Error, res.MemoryPeakBytes>>20)
	}
	if res.Duration > 10*MemoryReportEvery && (len(c.memory) == 0 || slices.Max(c.memory) <= MemoryLimit(128*16)) {
		t.Errorf("ran %v and reported %v: the node could not have stopped it", res.Duration, c.memory)
	}
}

// TestWorker_Run_MemoryReports: a guest that runs past MemoryReportEvery has its memory reported
// while it runs (the node kills a guest over its limit by them, and bills a guest it kills the
// largest), and only when it changed.
func TestWorker_Run_MemoryReports(t *testing.T) {
	c := startClient(t)
	var rounds [8]byte
	binary.LittleEndian.PutUint64(rounds[:], 400_000_000) // about half a second
	res, _ := c.run(fixtures.Wasm("spin"), RunJob{Stdin: rounds[:]})
	if res.Status != schemas.StatusSucceeded {
		t.Fatalf("spin: %s %q", res.Status, res.Error)
	}
	t.Logf("spin ran %v, memory reports %v", res.Duration, c.memory)
	if res.Duration > 4*MemoryReportEvery && len(c.memory) == 0 {
		t.Errorf("spin ran %v with no memory report", res.Duration)
	}
	for _, m := range c.memory {
		if m < 64<<10 || m > 64<<10+1<<20 {
			t.Errorf("spin's memory reports %v, want its single page (65536) and a little heap", c.memory)
			break
		}
	}
	// A short run usually sends none; a loaded machine may stretch it past the first report.
	if res, _ = c.run(fixtures.Wasm("hello"), RunJob{}); res.Status != schemas.StatusSucceeded || len(c.memory) > 1 {
		t.Errorf("hello: %s, memory reports %v", res.Status, c.memory)
	}
}

// TestWorker_Run_MemoryBelowMinimum: an execution whose memory limit is below the minimum its
// module declares fails naming both and the memory_mb that would do, not as an invalid module
// (wazero's "invalid module: section memory: min 160 pages (10 Mi) over limit of 16 pages
// (1 Mi)", which CPython's 26 MB WASI build got with memory_mb 1, though the module is fine).
func TestWorker_Run_MemoryBelowMinimum(t *testing.T) {
	// (module (memory 40) (func (export "_start"))): a 2.5 MiB minimum, 40 pages.
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0,
		1, 4, 1, 0x60, 0, 0, // type section: () -> ()
		3, 2, 1, 0, // function section
		5, 3, 1, 0, 40, // memory section: min 40 pages
		7, 10, 1, 6, '_', 's', 't', 'a', 'r', 't', 0, 0, // export _start
		10, 4, 1, 2, 0, 0x0b} // code: an empty body
	c := startClient(t)
	res, _ := c.run(wasm, RunJob{MemoryPages: 16})
	want := "the module's memory minimum of 40 pages (2.5 MiB) is over the execution's memory limit of 1 MiB: give it a memory_mb of at least 3"
	if res.Status != schemas.StatusFailed || res.Error != want {
		t.Errorf("1 MiB: %s %q, want failed %q", res.Status, res.Error, want)
	}
	if res, _ := c.run(wasm, RunJob{MemoryPages: 48}); res.Status != schemas.StatusSucceeded {
		t.Errorf("3 MiB: %s %q", res.Status, res.Error)
	}
	// A module that does not compile is still an invalid module.
	if res, _ := c.run(wasm[:len(wasm)-3], RunJob{}); res.Status != schemas.StatusFailed || !strings.HasPrefix(res.Error, InvalidModulePrefix) {
		t.Errorf("cut short: %s %q, want an invalid module", res.Status, res.Error)
	}
}

// TestWorker_SleepUntil: a guest sleeping until a time (clock_nanosleep with TIMER_ABSTIME: a
// poll_oneoff clock subscription with the abstime flag, what CPython 3.12's time.sleep does)
// sleeps, with the real clock, or returns at once, with the fixed clock, like one sleeping for a
// duration. wazero answers that subscription ENOTSUP, so time.sleep(0.2) raised "OSError:
// [Errno 58] Not supported".
func TestWorker_SleepUntil(t *testing.T) {
	wasm := fixtures.FilesC(t)
	c := startClient(t)
	res, _ := c.run(wasm, RunJob{Args: []string{"sleepuntil", "300"}, RealClock: true})
	var slept int
	if _, err := fmt.Sscanf(string(res.Stdout), "clock_nanosleep: ok, slept %d ms\n", &slept); err != nil || res.Status != schemas.StatusSucceeded ||
		slept < 300 || slept > 2300 || res.Duration < 300*time.Millisecond {
		t.Errorf("real clock: %s %q, stdout %q, ran %v; want a 300 ms sleep", res.Status, res.Error, res.Stdout, res.Duration)
	}
	res, _ = c.run(wasm, RunJob{Args: []string{"sleepuntil", "3000"}})
	if !strings.HasPrefix(string(res.Stdout), "clock_nanosleep: ok, slept ") || res.Status != schemas.StatusSucceeded || res.Duration > 2*time.Second {
		t.Errorf("fixed clock: %s %q, stdout %q, ran %v; want it back at once", res.Status, res.Error, res.Stdout, res.Duration)
	}
}
