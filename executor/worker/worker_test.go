package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	if job.Timeout == 0 {
		job.Timeout = 5 * time.Second
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
		{name: "recursion", status: schemas.StatusFailed, exit: -1, errorHas: "trap: stack overflow"},
		{name: "loop", job: RunJob{Timeout: 200 * time.Millisecond}, status: schemas.StatusTimedOut, exit: -1, errorHas: "time limit"},
		{name: "memgrow", status: schemas.StatusSucceeded, stdout: "2048\n"},
		{name: "memgrow", job: RunJob{MemoryPages: 16}, status: schemas.StatusSucceeded, stdout: "16\n"},
		{name: "sleep", status: schemas.StatusSucceeded, stdout: "woke\n"},
		{name: "nostart", status: schemas.StatusFailed, exit: -1, errorHas: "no _start"},
		{name: "badimport", status: schemas.StatusFailed, exit: -1, errorHas: "cannot instantiate module: module[env] not instantiated"},
		{name: "bigmem", status: schemas.StatusFailed, exit: -1, errorHas: "invalid module"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
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
			if res.Status == schemas.StatusTimedOut && time.Since(start) > tt.job.Timeout+time.Second {
				t.Errorf("timed out after %v, deadline %v", time.Since(start), tt.job.Timeout)
			}
			if tt.name == "sleep" && res.Duration > time.Second {
				t.Errorf("sleep took %v: the guest slept on the host clock", res.Duration)
			}
			if tt.name == "memgrow" {
				pages := int64(tt.job.MemoryPages)
				if pages == 0 {
					pages = 2048
				}
				if res.MemoryPeakBytes != pages*65536 {
					t.Errorf("memory peak %d, want %d", res.MemoryPeakBytes, pages*65536)
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

// TestWorker_Run_Deterministic checks that a guest sees no host clock and no host randomness.
func TestWorker_Run_Deterministic(t *testing.T) {
	c := startClient(t)
	for _, bin := range [][]byte{fixtures.Wasm("clock"), fixtures.Probe(t)} {
		var outs []string
		for range 2 {
			res, _ := c.run(bin, RunJob{Args: []string{"clock"}})
			if res.Status != schemas.StatusSucceeded {
				t.Fatalf("clock: %s %q", res.Status, res.Error)
			}
			outs = append(outs, string(res.Stdout))
		}
		if outs[0] != outs[1] || outs[0] == "" {
			t.Errorf("clock outputs differ: %q", outs)
		}
	}
}

func TestWorker_CompileCache(t *testing.T) {
	c := startClient(t)
	bin := fixtures.Wasm("hello")
	_, st := c.run(bin, RunJob{})
	if st == nil || st.CompileCacheHit {
		t.Fatalf("first run: started %+v, want a miss", st)
	}
	res, st := c.run(bin, RunJob{Warm: true})
	if st != nil || !res.CompileCacheHit || string(res.Stdout) != "hello, world\n" {
		t.Fatalf("second run: started %+v, result %+v, want a hit answered with the result alone", st, res)
	}
	// A hit the node did not expect still says when the guest starts.
	if res, st = c.run(bin, RunJob{}); st == nil || !st.CompileCacheHit || !res.CompileCacheHit {
		t.Fatalf("unexpected hit: started %+v, result %+v, want Started", st, res)
	}
	// Another memory limit is another compiled module (wazero applies the limit at decode).
	res, _ = c.run(bin, RunJob{MemoryPages: 32})
	if res.CompileCacheHit || res.Status != schemas.StatusSucceeded {
		t.Fatalf("other limit: %+v", res)
	}

	if r := c.compile(fixtures.Wasm("trap"), 2048); r.Error != "" || r.CacheHit {
		t.Errorf("compile trap: %+v", r)
	}
	if r := c.compile(fixtures.Wasm("trap"), 2048); r.Error != "" || !r.CacheHit {
		t.Errorf("compile trap again: %+v", r)
	}
	if r := c.compile([]byte("\x00asm\x01\x00\x00\x00\xff"), 2048); r.Error == "" {
		t.Errorf("compile garbage: %+v", r)
	}
}

func TestCappedWriter(t *testing.T) {
	w := &cappedWriter{max: 5}
	for _, s := range []string{"ab", "cdef", "", "ghi"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if string(w.buf) != "abcde" || w.n != 9 {
		t.Errorf("kept %q counted %d", w.buf, w.n)
	}
	w = &cappedWriter{max: 0}
	w.Write([]byte("x"))
	if len(w.buf) != 0 || w.n != 1 {
		t.Errorf("max 0: kept %q counted %d", w.buf, w.n)
	}
}

// TestWorker_ManyMemoryLimits uses more distinct memory limits than the worker keeps runtimes
// for: old runtimes (and their compiled modules) are dropped, and everything still runs.
func TestWorker_ManyMemoryLimits(t *testing.T) {
	c := startClient(t)
	bin := fixtures.Wasm("memgrow")
	for round := range 2 {
		for mb := 1; mb <= maxRuntimes+3; mb++ {
			res, _ := c.run(bin, RunJob{MemoryPages: uint32(mb * 16)})
			if want := fmt.Sprintf("%d\n", mb*16); res.Status != schemas.StatusSucceeded || string(res.Stdout) != want {
				t.Fatalf("round %d, %d MiB: %s %q %q", round, mb, res.Status, res.Stdout, res.Error)
			}
		}
	}
}

// TestWorker_Run_MemoryReports: a guest that runs past MemoryReportEvery has its memory reported
// while it runs (the node bills a guest it kills that figure), and only when it changed.
func TestWorker_Run_MemoryReports(t *testing.T) {
	c := startClient(t)
	res, _ := c.run(fixtures.Wasm("loop"), RunJob{Timeout: 20 * MemoryReportEvery})
	if res.Status != schemas.StatusTimedOut {
		t.Fatalf("loop: %s %q", res.Status, res.Error)
	}
	if len(c.memory) != 1 || c.memory[0] != 64<<10 {
		t.Errorf("loop's memory reports %v, want one of its single page (65536)", c.memory)
	}
	// A short run usually sends none; a loaded machine may stretch it past the first report.
	if res, _ = c.run(fixtures.Wasm("hello"), RunJob{}); res.Status != schemas.StatusSucceeded || len(c.memory) > 1 {
		t.Errorf("hello: %s, memory reports %v", res.Status, c.memory)
	}
}
