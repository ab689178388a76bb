package worker

import (
	"time"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// The pipe protocol. The node writes Requests to the worker's stdin and reads Responses from its
// stdout, both as one encoding/gob stream per direction (gob sends each type once per stream, and
// []byte fields are copied as they are, so a round trip costs little beyond the payload).
//
//	node → worker: Hello, then any number of Run or Compile, one at a time
//	worker → node: Ready; per Run: [Compiling, Started,] [Memory...] [Output] [Memory...] Run; per Compile: Compile
//
// A Run whose module the worker has compiled already, as the supervisor expected (RunJob.Warm),
// is answered with the Run frame alone: the supervisor held it to the execution deadline from
// the start. A Run that needs a compile is announced by Compiling (the supervisor switches to the
// compile deadline) and followed by Started when the compile is over and the guest's own clock
// runs (back to the execution deadline); so is a hit the supervisor did not expect, by Started
// alone. A guest that runs past MemoryReportEvery is followed by Memory frames whenever what it
// holds has changed, so that the node can kill a guest over its memory limit and knows how much
// a guest it kills was holding. A guest still running just before its deadline is followed by
// Output frames, its stdout and stderr so far and then what it adds, which the node returns
// with a guest it kills there. The worker never stops a guest itself: the node times the deadline and kills the
// worker when it passes. Exactly
// one field of a Request or Response is set.

// Request is one frame from the node to a worker.
type Request struct {
	Hello   *Hello
	Run     *RunJob
	Compile *CompileJob
}

// Response is one frame from a worker to the node.
type Response struct {
	Ready     *Ready
	Compiling *Compiling
	Started   *Started
	Memory    *Memory
	Output    *Output
	Run       *RunResult
	Compile   *CompileResult
}

// Hello is the first frame a worker reads.
type Hello struct {
	// CacheDir holds wazero's compilation cache, shared by all workers of the node. Empty
	// disables the file cache (the in-memory cache of compiled modules still works).
	CacheDir string
	// CompiledCacheSize bounds the in-memory cache of compiled modules; 0 means 64.
	CompiledCacheSize int
}

// Ready answers Hello.
type Ready struct {
	PID        int
	Engine     string        // "compiler" or "interpreter"
	Error      string        // non-empty if the worker cannot serve (it exits after sending Ready)
	ProcessCPU time.Duration // the worker process's CPU time so far
}

// RunJob runs a WASI command module once.
type RunJob struct {
	ModulePath  string // file holding the module bytes; read only when the module is not compiled yet
	ModuleHash  string // hex sha256 of the module, the cache key
	Name        string // argv[0]
	Args        []string
	Env         []string // KEY=value
	Stdin       []byte
	StdinFile   string        // a file of the guest's file system to read as stdin instead (after Files and Mounts)
	Timeout     time.Duration // the deadline, timed and enforced by the node (it kills the worker); the worker does not look at it
	MemoryPages uint32        // linear memory limit in 64 KiB pages; the guest's whole memory is held to it (see Memory)
	StdoutMax   int
	StderrMax   int
	// Warm says the node expects the module compiled in this worker. If it is, the result is the
	// only frame; if not, or if the node did not expect it, Started tells the node the guest runs.
	Warm bool
	// The guest's files (see files.go): inline files written into its scratch space, read-only
	// bundles mounted from the node's cache, the working directory, and the files to return.
	Files      []InlineFile
	Mounts     []Mount
	Workdir    string
	Outputs    []string // absolute paths, path.Match wildcards allowed in each component
	ScratchMax int64    // bytes of writable file data and inodes
	OutputsMax int64    // bytes of output files returned
	// Seed, when set, makes the guest's random bytes a function of it (reproducible); otherwise
	// they are seeded from the system's random source, different for every run.
	Seed *int64
	// RealClock gives the guest the host's wall and monotonic clocks and real sleep; otherwise
	// its clocks are wazero's deterministic fakes (wall time starts at 2022-01-01T00:00:00Z and
	// every reading advances 1 ms) and sleeps return at once.
	RealClock bool
}

// InlineFile is a small input file written into the guest's scratch space.
type InlineFile struct {
	Path string // absolute
	Data []byte
}

// Mount is a bundle mounted read-only at Path. The worker reads the archive in place, and keeps
// its index for the next executions that mount it.
type Mount struct {
	Path       string // absolute
	BundleHash string // hex sha256 of the archive, the cache key
	BundlePath string // the node's cached (decompressed) tar archive
	Writable   bool   // copy the files into scratch (charged) instead of sharing them read-only
	Preopen    string // also preopen the mount under this name (a path relative to "/")
}

// OutputFile is a file returned after a run.
type OutputFile struct {
	Path      string
	Data      []byte
	Size      int64 // the whole file
	Truncated bool  // Data holds fewer than Size bytes
}

// Compiling is sent when a Run's module is not compiled in the worker yet: compiling it starts.
type Compiling struct{}

// Started is sent when the module is compiled and about to be instantiated, unless it was
// compiled already and the node expected so (RunJob.Warm).
type Started struct {
	CompileCacheHit bool
	CompileDuration time.Duration
	CPU             time.Duration // the worker process's CPU time so far: the supervisor bills a killed guest the rest
}

// Memory reports what a running guest holds (its linear memory and the Go heap the worker has
// grown for it: tables and the rest), sent at most every MemoryReportEvery and only when it has
// changed. The supervisor kills a guest whose report is over its limit (RunJob.MemoryPages), and
// bills a guest it kills the largest size reported.
type Memory struct {
	Bytes int64
}

// Output is what a guest still running OutputBefore its deadline has written (as capped by its
// job) since the previous Output frame: the first carries everything so far, the next ones,
// at the memory reports' tick, what came after. The node kills a guest that reaches its
// deadline with its worker, and without these frames what it had printed (a script's progress
// before its endless loop) was lost with it; the node returns their concatenation.
type Output struct {
	Stdout, Stderr           []byte // kept since the previous frame
	StdoutBytes, StderrBytes int64  // written in all, capped or not
}

// OutputBefore is how long before its deadline a running guest's output starts going to the
// node (Output), by the memory reports' tick (every MemoryReportEvery) until the kill: output
// written in the last tick (25 ms) before the kill is lost with the worker. Sent from this far
// ahead, it leaves a worker slowed down by that much (a loaded machine) time to send what came
// before; a deadline shorter than that sends it from the first tick on.
const OutputBefore = 8 * MemoryReportEvery

// MemoryReportEvery is how often a running guest's memory is looked at. A guest that finishes
// sooner sends no report: its result carries its memory.
const MemoryReportEvery = 25 * time.Millisecond

// RunResult answers a RunJob.
type RunResult struct {
	Status          schemas.Status // succeeded, failed, or killed (it held more memory than its limit: MemoryExceeded)
	ExitCode        int            // -1 when the guest did not exit (trap, timeout, could not start)
	Error           string
	Stdout          []byte
	Stderr          []byte
	StdoutTruncated bool
	StderrTruncated bool
	StdoutBytes     int64 // everything the guest wrote, kept or not
	StderrBytes     int64
	StdinFileBytes  int64         // read by the guest from RunJob.StdinFile
	Duration        time.Duration // setting up args and env, instantiate, _start
	CompileDuration time.Duration
	CompileCacheHit bool
	CPU             time.Duration // user + system time of the worker process during the run
	MemoryPeakBytes int64         // the most the guest held: linear memory and Go heap grown (see Memory)
	RuntimeBytes    int64         // memory the worker's Go runtime has mapped after the job (tables are Go heap)
	ProcessCPU      time.Duration // the worker process's CPU time at the end: the next guest's start, for a kill's bill
	Outputs         []OutputFile
	OutputsMore     bool  // more files matched than are returned
	ScratchPeak     int64 // the most scratch space the guest's files held, bytes
	ScratchFull     bool  // a write was refused: the scratch space was full
}

// CompileJob compiles a module (upload check, cache warm-up).
type CompileJob struct {
	ModulePath  string
	ModuleHash  string
	MemoryPages uint32
	// Share asks for a compile afresh (not loaded from the file cache or the worker's compiled
	// modules), whose artifact, the file wazero writes for it, is named in
	// CompileResult.CacheFile (for the node to share with other nodes). Uploads always set it.
	Share bool
}

// CompileResult answers a CompileJob. Error is wazero's message when the module is invalid.
type CompileResult struct {
	Error      string
	Duration   time.Duration
	CacheHit   bool
	ProcessCPU time.Duration // the worker process's CPU time at the end
	// CacheFile is, for a Share job, the artifact's path under Hello.CacheDir
	// ("wazero-<version>-<arch>-<os>/<hex key>"), or empty when the engine writes none.
	CacheFile string
}
