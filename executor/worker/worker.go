// Package worker is the child-process side of the executor: it runs untrusted WebAssembly
// (WASI preview 1) for the node that started it, one job at a time, and nothing else.
//
// The node starts `wasmwiz worker`, which calls Main with the process's stdin and stdout. The
// pipe carries the gob frames of protocol.go and nothing else: logs go to stderr. The worker
// trusts the node and distrusts the guest. It gives the guest no host file system, a fixed
// clock unless the job asks for the real one (RunJob.RealClock), and randomness of its own
// (seeded per job from crypto/rand, or from RunJob.Seed), caps its linear memory with
// WithMemoryLimitPages and its output with counting writers, and reports what it holds in memory
// (linear memory and the Go heap it grew, tables included). It does not stop the guest: guests
// run at full speed, without wazero's per-loop deadline checks (WithCloseOnContextDone), and the
// node enforces the deadline and the memory limit by killing this process.
package worker

import (
	"bufio"
	"bytes"
	"container/list"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmwiz/wasmwiz/executor/worker/guestfs"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// maxRuntimes bounds the wazero runtimes a worker keeps, one per distinct memory limit.
const maxRuntimes = 8

// Main serves jobs read from in and writes responses to out until in ends (the node closed the
// pipe: exit 0) or ctx ends. It returns the process exit code.
func Main(ctx context.Context, in io.Reader, out io.Writer, stderr io.Writer) int {
	// GOMAXPROCS 2, not 1 and not NumCPU. A running guest holds one P: it is native code that
	// Go cannot preempt, and it enters Go only in host calls (and memory or table growth). A
	// second P lets the rest of the worker — the memory reports, the GC's background work, the
	// pipe — run while the guest does. (A stop-the-world GC still waits for the guest's next
	// entry into Go; the node's deadline does not depend on the worker at all.)
	// More than 2 buys nothing: a worker runs one guest at a time, wazero compiles on one
	// goroutine, and the node starts more workers than cores, so a larger GOMAXPROCS would only
	// let one worker's GC spread onto the cores of the others.
	runtime.GOMAXPROCS(2)

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("role", "worker")
	br := bufio.NewReaderSize(in, 256<<10)
	bw := bufio.NewWriterSize(out, 256<<10)
	dec := gob.NewDecoder(br)
	enc := gob.NewEncoder(bw)
	send := func(r *Response) error {
		if err := enc.Encode(r); err != nil {
			return err
		}
		return bw.Flush()
	}

	var first Request
	if err := dec.Decode(&first); err != nil {
		log.Error("reading hello", "err", err)
		return 2
	}
	if first.Hello == nil {
		log.Error("first frame is not hello")
		return 2
	}
	w, err := newWorker(ctx, *first.Hello, log)
	if err != nil {
		_ = send(&Response{Ready: &Ready{PID: os.Getpid(), Error: err.Error()}})
		log.Error("setup", "err", err)
		return 1
	}
	if err := send(&Response{Ready: &Ready{PID: os.Getpid(), Engine: w.engine, ProcessCPU: cpuTime()}}); err != nil {
		log.Error("writing ready", "err", err)
		return 2
	}

	done := make(chan int, 1)
	go func() {
		code := w.serve(ctx, dec, send)
		w.close(context.WithoutCancel(ctx))
		done <- code
	}()
	select {
	case code := <-done:
		return code
	case <-ctx.Done():
		// The job under way (if any) sees ctx too; the process is about to exit, which frees
		// everything, so do not wait for a compile that cannot be interrupted.
		return 0
	}
}

// serve handles frames until the pipe ends.
func (w *worker) serve(ctx context.Context, dec *gob.Decoder, send func(*Response) error) int {
	for {
		var req Request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0
			}
			w.log.Error("reading job", "err", err)
			return 2
		}
		var err error
		switch {
		case req.Run != nil:
			res := w.run(ctx, req.Run, send)
			err = send(&Response{Run: res})
			w.releaseMemory() // zeroing for reuse is off the execution's path
			w.collectAfter(res)
		case req.Compile != nil:
			err = send(&Response{Compile: w.compileJob(ctx, req.Compile)})
		default:
			w.log.Error("unexpected frame")
			return 2
		}
		if err != nil {
			w.log.Error("writing response", "err", err)
			return 2
		}
	}
}

// runtimeBytes is the memory the worker's Go runtime has mapped (heap, stacks, its own
// structures; not linear memories, which are mappings of their own, see jobMemory). Go never
// gives heap address space back, so a guest that grew a table (Go heap) leaves it mapped.
func runtimeBytes() int64 {
	sample := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(sample[0].Value.Uint64())
}

type worker struct {
	log      *slog.Logger
	engine   string
	cacheDir string // Hello.CacheDir
	cache    wazero.CompilationCache
	runtimes map[uint32]*list.Element // memory pages → element of lru holding *wazRuntime
	rtLRU    *list.List
	compiled *compiledLRU
	spare    spareMemories // zeroed linear memories for the next jobs
	bundles  *bundleCache  // mounted bundles' trees, by hash
	used     *jobMemory    // the last run's memories, released once its result is sent
	// heapGrown is how much the last run grew the Go heap (tables, mostly): see collectAfter.
	heapGrown int64
}

// collectAfter collects the garbage of a run that grew the Go heap by more than collectAbove (a
// guest that made big tables) and returns it to the OS, while no guest runs. The next guest's
// memory is counted from the heap and the resident memory as it finds them; a collection during
// its run would free this guest's garbage and hide as much of the next guest's growth. (The
// worker never starts a collection itself while a guest runs: a stop-the-world phase waits for
// the guest to call into Go, which a guest spinning in a loop never does, and the worker's
// other goroutines, memory reports included, would wait with it.)
func (w *worker) collectAfter(*RunResult) {
	if w.heapGrown > collectAbove {
		debug.FreeOSMemory()
	}
	w.heapGrown = 0
}

const collectAbove = 16 << 20

// releaseMemory gives back the last run's linear memories (see jobMemory.release).
func (w *worker) releaseMemory() {
	if w.used != nil {
		w.used.release()
		w.used = nil
	}
}

type wazRuntime struct {
	pages uint32
	r     wazero.Runtime
}

func newWorker(ctx context.Context, h Hello, log *slog.Logger) (*worker, error) {
	w := &worker{
		log:      log,
		engine:   "compiler",
		runtimes: map[uint32]*list.Element{},
		rtLRU:    list.New(),
		bundles:  newBundleCache(),
		cacheDir: h.CacheDir,
	}
	n := h.CompiledCacheSize
	if n <= 0 {
		n = 64
	}
	w.compiled = newCompiledLRU(n)
	if h.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(h.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("compilation cache: %w", err)
		}
		w.cache = c
	} else {
		w.cache = wazero.NewCompilationCache()
	}
	if !compilerSupported() {
		w.engine = "interpreter"
	}
	return w, nil
}

func (w *worker) close(ctx context.Context) {
	w.compiled.closeAll(ctx)
	w.bundles.closeAll()
	for e := w.rtLRU.Front(); e != nil; e = e.Next() {
		_ = e.Value.(*wazRuntime).r.Close(ctx)
	}
	_ = w.cache.Close(ctx)
}

// runtimeFor returns the runtime enforcing a memory limit. wazero applies the limit when it
// decodes a module, so a compiled module belongs to one limit; the runtimes share one
// compilation cache, and with it one engine, so machine code is compiled once per module
// whatever the limit.
func (w *worker) runtimeFor(ctx context.Context, pages uint32) (wazero.Runtime, error) {
	if e, ok := w.runtimes[pages]; ok {
		w.rtLRU.MoveToFront(e)
		return e.Value.(*wazRuntime).r, nil
	}
	if pages == 0 || pages > 65536 {
		return nil, fmt.Errorf("memory limit of %d pages is out of range", pages)
	}
	if w.rtLRU.Len() >= maxRuntimes {
		old := w.rtLRU.Back()
		rt := old.Value.(*wazRuntime)
		w.rtLRU.Remove(old)
		delete(w.runtimes, rt.pages)
		w.compiled.removePages(ctx, rt.pages)
		_ = rt.r.Close(ctx)
	}
	r := wazero.NewRuntimeWithConfig(ctx, runtimeConfig(pages, w.cache))
	if err := guestfs.Instantiate(ctx, r); err != nil { // wazero's WASI, see guestfs.Instantiate
		_ = r.Close(ctx)
		return nil, fmt.Errorf("wasi: %w", err)
	}
	w.runtimes[pages] = w.rtLRU.PushFront(&wazRuntime{pages: pages, r: r})
	return r, nil
}

// runtimeConfig is the configuration of every runtime the worker makes. The compilation cache's
// file names are keyed on the module and on this configuration (and the CPU), so an artifact
// compiled for sharing (compileShared) is found by runtimes made with the same configuration.
func runtimeConfig(pages uint32, cache wazero.CompilationCache) wazero.RuntimeConfig {
	// NewRuntimeConfig picks the compiler (wazevo) wherever wazero supports it and the
	// interpreter elsewhere.
	// No WithCloseOnContextDone: it makes compiled code call into Go at every loop back-edge
	// (wazero#2466), 4-10x slower on tight loops. The node kills a worker whose guest overruns.
	return wazero.NewRuntimeConfig().
		WithMemoryLimitPages(pages).
		WithCompilationCache(cache).
		WithDebugInfoEnabled(false)
}

// compile returns the compiled module for (hash, pages), compiling it on a miss; miss (may be
// nil) is called before a compile starts.
func (w *worker) compile(ctx context.Context, path, hash string, pages uint32, miss func()) (wazero.CompiledModule, bool, error) {
	key := compiledKey{hash: hash, pages: pages}
	if cm, ok := w.compiled.get(key); ok {
		return cm, true, nil
	}
	if miss != nil {
		miss()
	}
	r, err := w.runtimeFor(ctx, pages)
	if err != nil {
		return nil, false, err
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		// The node owns the file; its name is not for the guest's owner.
		w.log.Error("reading module", "module_hash", hash, "err", err)
		return nil, false, errors.New("module file is not readable")
	}
	cm, err := r.CompileModule(ctx, bin)
	if err != nil {
		return nil, false, err
	}
	w.compiled.put(ctx, key, cm)
	return cm, false, nil
}

func (w *worker) compileJob(ctx context.Context, job *CompileJob) *CompileResult {
	start := time.Now()
	if job.Share && w.cacheDir != "" {
		file, err := w.compileShared(ctx, job)
		res := &CompileResult{Duration: time.Since(start), CacheFile: file, ProcessCPU: cpuTime()}
		if err != nil {
			res.Error = cleanError(err)
		}
		return res
	}
	_, hit, err := w.compile(ctx, job.ModulePath, job.ModuleHash, job.MemoryPages, nil)
	res := &CompileResult{Duration: time.Since(start), CacheHit: hit, ProcessCPU: cpuTime()}
	if err != nil {
		res.Error = cleanError(err)
	}
	return res
}

// compileShared compiles a module in a runtime of its own whose compilation cache is a fresh
// directory, so that the one file wazero writes there is this module's artifact; it moves the
// file into the worker's cache directory (where every runtime of the node finds it) and returns
// its path relative to that directory. wazero names the file after the module, the runtime
// configuration and the CPU's features, so the file is valid wherever that name is looked up.
func (w *worker) compileShared(ctx context.Context, job *CompileJob) (string, error) {
	bin, err := os.ReadFile(job.ModulePath)
	if err != nil {
		w.log.Error("reading module", "module_hash", job.ModuleHash, "err", err)
		return "", errors.New("module file is not readable")
	}
	tmp, err := os.MkdirTemp(w.cacheDir, "share-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cache, err := wazero.NewCompilationCacheWithDir(tmp)
	if err != nil {
		return "", err
	}
	defer cache.Close(ctx)
	r := wazero.NewRuntimeWithConfig(ctx, runtimeConfig(job.MemoryPages, cache))
	defer r.Close(ctx)
	if _, err := r.CompileModule(ctx, bin); err != nil {
		return "", err
	}
	files, err := filepath.Glob(filepath.Join(tmp, "wazero-*", "*"))
	if err != nil || len(files) != 1 {
		return "", nil // the interpreter writes no artifact: nothing to share
	}
	rel, err := filepath.Rel(tmp, files[0])
	if err != nil {
		return "", err
	}
	dst := filepath.Join(w.cacheDir, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(files[0], dst); err != nil {
		return "", err
	}
	return filepath.ToSlash(rel), nil
}

// InvalidModulePrefix starts the error of a Run whose module did not compile.
const InvalidModulePrefix = "invalid module: "

// run runs job; send writes a frame to the node (Compiling and Started, around a compile).
func (w *worker) run(ctx context.Context, job *RunJob, send func(*Response) error) *RunResult {
	t0 := time.Now()
	res := &RunResult{ExitCode: -1}
	var sendErr error
	cm, hit, err := w.compile(ctx, job.ModulePath, job.ModuleHash, job.MemoryPages, func() {
		sendErr = send(&Response{Compiling: &Compiling{}})
	})
	res.CompileDuration = time.Since(t0)
	res.CompileCacheHit = hit
	cpu0 := cpuTime() // the guest's CPU time, not the compiler's
	finish := func() *RunResult {
		res.ProcessCPU = cpuTime()
		res.CPU = res.ProcessCPU - cpu0
		res.RuntimeBytes = runtimeBytes()
		return res
	}
	switch below := memoryBelowMinimum(err); {
	case below != nil:
		res.Status, res.Error = schemas.StatusFailed, below.Error() // the request's memory_mb, not the module
		return finish()
	case err != nil:
		res.Status = schemas.StatusFailed
		res.Error = InvalidModulePrefix + cleanError(err)
		return finish()
	}
	deadlineFrom := t0 // where the node times the guest's deadline from: the job's arrival, or Started
	if (!hit || !job.Warm) && sendErr == nil {
		deadlineFrom = time.Now()
		sendErr = send(&Response{Started: &Started{CompileCacheHit: hit, CompileDuration: res.CompileDuration, CPU: cpu0}})
	}
	if sendErr != nil {
		res.Status = schemas.StatusFailed
		res.Error = "internal error"
		return finish()
	}

	// The guest's clock runs from here: building its arguments and environment is its cost
	// (thousands of env entries take wazero seconds), counted in its duration, CPU time and
	// memory, and within its deadline, which the node has been timing since Started (or, warm,
	// since it sent the job).
	w.releaseMemory() // the last run's, if serve has not yet
	mem := &jobMemory{spare: &w.spare}
	w.used = mem
	usage := newMemoryUsage(&mem.bytes)
	start := time.Now()

	stdout := &cappedWriter{max: job.StdoutMax}
	stderr := &cappedWriter{max: job.StderrMax}
	stdin := &stdinReader{r: bytes.NewReader(job.Stdin)}
	random := guestRand(job.Seed)                              // random_get's and /dev/urandom's: one stream, one seed
	fsys, err := w.guestFS(job, stdin, stdout, stderr, random) // within the scratch cap, counted from heap0
	if err == nil && job.StdinFile != "" {
		stdin.r, err = openStdin(fsys, job.StdinFile) // files.go
	}
	if err != nil {
		res.Duration = time.Since(start)
		res.Status, res.Error = schemas.StatusFailed, err.Error()
		return finish()
	}
	usage.scratch = fsys.Used // its files are heap it holds (see memoryUsage)
	var outputAt time.Time    // its output goes to the node from just before the deadline (Output)
	if job.Timeout > 0 {
		outputAt = deadlineFrom.Add(job.Timeout - OutputBefore)
	}
	// What the Output frames have brought the node so far: bytes kept, and written in all.
	var sentOut, sentErr int
	var wroteOut, wroteErr int64 = -1, -1 // -1: no frame yet
	stopReports := reportMemory(usage, send, outputAt, func() *Output {
		o := &Output{}
		o.Stdout, o.StdoutBytes = stdout.since(sentOut)
		o.Stderr, o.StderrBytes = stderr.since(sentErr)
		if o.StdoutBytes == wroteOut && o.StderrBytes == wroteErr {
			return nil // nothing new since the last frame
		}
		sentOut, sentErr = sentOut+len(o.Stdout), sentErr+len(o.Stderr)
		wroteOut, wroteErr = o.StdoutBytes, o.StderrBytes
		return o
	})

	// The guest's file system is its own (guestfs), nothing of the host's. Its clock is
	// wazero's deterministic fake unless the job asks for the real one; it never sleeps on the
	// host unless so. Its randomness is its own (guestRand). No start functions: _start is
	// called below, so that a module without one is an error rather than a silent success, and
	// so that its memory can be measured after it exits.
	mc := wazero.NewModuleConfig().
		WithName("").
		WithRandSource(random).
		WithArgs(append([]string{job.Name}, job.Args...)...).
		WithStdin(stdin).
		WithFSConfig(guestfs.FSConfig(fsys)).
		WithStdout(stdout).
		WithStderr(stderr).
		WithStartFunctions()
	if job.RealClock {
		mc = mc.WithSysWalltime().WithSysNanotime().WithSysNanosleep()
	}
	for _, kv := range job.Env {
		k, v, _ := strings.Cut(kv, "=")
		mc = mc.WithEnv(k, v)
	}
	if job.Workdir != "" && !slices.ContainsFunc(job.Env, func(kv string) bool { return strings.HasPrefix(kv, "PWD=") }) {
		mc = mc.WithEnv("PWD", job.Workdir) // Go's wasip1 runtime starts there
	}

	// The memories go back after the guest has stopped, once the result is sent (serve).
	gctx := guestfs.WithFS(experimental.WithMemoryAllocator(ctx, mem.allocator()), fsys)
	r, _ := w.runtimeFor(ctx, job.MemoryPages) // exists: compile succeeded
	mod, err := r.InstantiateModule(gctx, cm, mc)
	if err != nil {
		stopReports()
		res.Duration = time.Since(start)
		res.MemoryPeakBytes = usage.peakNow()
		res.Status = schemas.StatusFailed
		res.Error = "cannot instantiate module: " + cleanError(err)
		overMemory(res, job)
		return finish()
	}
	if fn := mod.ExportedFunction("_start"); fn == nil {
		err = errNoStart
	} else {
		_, err = fn.Call(gctx)
	}
	stopReports()
	res.MemoryPeakBytes = usage.peakNow() // before Close: the guest's tables are still held
	w.heapGrown = usage.heapGrowth()
	_ = mod.Close(ctx)
	res.Duration = time.Since(start)
	res.Stdout, res.StdoutBytes, res.StdoutTruncated = stdout.buf, stdout.n, stdout.n > int64(len(stdout.buf))
	res.Stderr, res.StderrBytes, res.StderrTruncated = stderr.buf, stderr.n, stderr.n > int64(len(stderr.buf))
	if job.StdinFile != "" {
		res.StdinFileBytes = stdin.n
	}
	classify(res, err)
	overMemory(res, job)
	collectOutputs(job, fsys, res)
	return finish()
}

// MemoryExceeded is the error of a guest that held more memory than its limit.
func MemoryExceeded(held, limit int64) string {
	return fmt.Sprintf("memory limit exceeded: the guest held %d MiB (linear memory, tables, the files it wrote and other runtime memory), its limit is %d MiB", held>>20, limit>>20)
}

// overMemory turns a run whose guest ended holding more than its limit (grown between two
// memory reports, or too fast for the node to kill it) into a memory-limit failure.
func overMemory(res *RunResult, job *RunJob) {
	if res.MemoryPeakBytes > MemoryLimit(job.MemoryPages) {
		res.Status, res.ExitCode = schemas.StatusKilled, -1
		res.Error = MemoryExceeded(res.MemoryPeakBytes, int64(job.MemoryPages)*65536)
	}
}

// reportMemory sends a Memory frame every MemoryReportEvery while the guest runs, when what
// the guest holds has changed since the last one, and from the time the guest runs past
// outputAt (zero: never) on, an Output frame with what output returns when that is not nil
// (what the guest wrote since the last one). stop waits for a report being sent, so that no frame follows
// it: the run's other frames are sent by the caller, never at the same time as a report. It
// costs a short run nothing but arming and stopping a timer.
func reportMemory(usage *memoryUsage, send func(*Response) error, outputAt time.Time, output func() *Output) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		last    int64
		t       *time.Timer
	)
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(MemoryReportEvery, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if n := usage.now(); n != last {
			last = n
			if send(&Response{Memory: &Memory{Bytes: n}}) != nil {
				return // the node is gone; the run's end will find out
			}
		}
		if !outputAt.IsZero() && !time.Now().Before(outputAt) {
			if o := output(); o != nil && send(&Response{Output: o}) != nil {
				return
			}
		}
		t.Reset(MemoryReportEvery)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// guestRand is the guest's random_get: a ChaCha8 stream seeded from crypto/rand for each run,
// so that no two runs (of one tenant or of two) see the same bytes, or, when the request gives
// a seed, seeded from it, so that the run can be reproduced. wazero's default is a fixed
// stream, the same for every run of every guest. A ChaCha8 costs one 32-byte read of the
// system's random source per run, and no system call per random_get.
func guestRand(seed *int64) io.Reader {
	var key [32]byte
	if seed != nil {
		key = sha256.Sum256(binary.LittleEndian.AppendUint64([]byte("wasmwiz seed\x00"), uint64(*seed)))
	} else {
		_, _ = crand.Read(key[:]) // never fails (crypto/rand panics rather than return short)
	}
	return rand.NewChaCha8(key)
}

var errNoStart = errors.New("module has no _start export (not a WASI command)")

// classify turns the outcome of _start into a status. The guest is never stopped from inside
// (the node kills the worker at the deadline), so every outcome is the guest's own.
func classify(res *RunResult, err error) {
	if err == nil {
		res.Status, res.ExitCode = schemas.StatusSucceeded, 0
		return
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		// A guest may pass any u32 to proc_exit, including the codes wazero reserves for
		// context errors, which it never raises here: all are ordinary exit codes.
		if code := exit.ExitCode(); code == 0 {
			res.Status, res.ExitCode = schemas.StatusSucceeded, 0
		} else {
			res.Status, res.ExitCode = schemas.StatusFailed, int(code)
		}
		return
	}
	res.Status, res.ExitCode = schemas.StatusFailed, -1
	if errors.Is(err, errNoStart) {
		res.Error = "invalid module: " + err.Error()
		return
	}
	res.Error = "trap: " + cleanError(err) + trapWhere(err.Error())
}

// trapFrames is how many functions of a trap's stack its error names, innermost first.
const trapFrames = 5

// trapWhere is " (in f, called from g, h)": the functions a trap happened in, from wazero's stack
// trace (the module's name section, else $<index>), on one line, or "" without a trace. The
// names are the guest's own; each is cut to 64 bytes of printable characters.
func trapWhere(s string) string {
	_, trace, ok := strings.Cut(s, "wasm stack trace:\n")
	if !ok {
		return ""
	}
	var frames []string
	more := false
	for _, line := range strings.Split(trace, "\n") {
		f, ok := strings.CutPrefix(line, "\t")
		if !ok || strings.HasPrefix(f, "\t") || strings.HasPrefix(f, "...") || f == "" {
			continue // a source line under a frame, or wazero's note of frames left out
		}
		if len(frames) == trapFrames {
			more = true
			break
		}
		if i := strings.IndexByte(f, '('); i >= 0 {
			f = f[:i]
		}
		f = strings.TrimPrefix(f, ".") // the guest module is named ""; host modules keep theirs
		f = strings.Map(func(r rune) rune {
			if unicode.IsPrint(r) {
				return r
			}
			return -1
		}, f)
		if len(f) > 64 {
			f = strings.ToValidUTF8(f[:64], "") + "…"
		}
		frames = append(frames, f)
	}
	if len(frames) == 0 {
		return ""
	}
	w := " (in " + frames[0]
	if len(frames) > 1 {
		w += ", called from " + strings.Join(frames[1:], ", ")
	}
	if more {
		w += ", …"
	}
	return w + ")"
}

// cleanError keeps the first line of a wazero error, without the "wasm error: " prefix and the
// stack trace that follows it.
// memoryMinimumError is a compile refused because the module's memory minimum is over the
// memory limit it was compiled for: a valid module run with too small a memory_mb.
type memoryMinimumError struct{ min, limit uint64 } // pages

func (e *memoryMinimumError) Error() string {
	mib := func(pages uint64) string { return strconv.FormatFloat(float64(pages)/16, 'f', -1, 64) + " MiB" }
	return fmt.Sprintf("the module's memory minimum of %d pages (%s) is over the execution's memory limit of %s: give it a memory_mb of at least %d",
		e.min, mib(e.min), mib(e.limit), (e.min+15)/16)
}

// wazeroMemoryMin matches wazero's refusal of a memory whose minimum is over the runtime's
// limit (internal/wasm.Memory.Validate, from the memory or the import section).
var wazeroMemoryMin = regexp.MustCompile(`min (\d+) pages \([^)]*\) over limit of (\d+) pages`)

// memoryBelowMinimum is err as a memoryMinimumError when it is wazero's refusal of a memory
// minimum over the limit, else nil.
func memoryBelowMinimum(err error) *memoryMinimumError {
	if err == nil {
		return nil
	}
	m := wazeroMemoryMin.FindStringSubmatch(err.Error())
	if m == nil {
		return nil
	}
	lo, err1 := strconv.ParseUint(m[1], 10, 32)
	limit, err2 := strconv.ParseUint(m[2], 10, 32)
	if err1 != nil || err2 != nil {
		return nil
	}
	return &memoryMinimumError{min: lo, limit: limit}
}

func cleanError(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "wasm error: ")
	if s == "" {
		return "unknown error"
	}
	return s
}

// cappedWriter keeps the first max bytes written and counts all of them. It never fails and
// never blocks, so a guest flooding its output only fills a counter.
type cappedWriter struct {
	mu  sync.Mutex // the memory reports read it while the guest writes (snapshot)
	max int
	buf []byte
	n   int64
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += int64(len(p))
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// since is a copy of what has been kept from byte off on, and how many bytes were written.
func (c *cappedWriter) since(off int) ([]byte, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf[min(off, len(c.buf)):]), c.n
}

func compilerSupported() bool {
	switch runtime.GOARCH {
	case "amd64", "arm64":
		switch runtime.GOOS {
		case "linux", "darwin", "freebsd", "netbsd", "windows":
			return true
		}
	}
	return false
}
