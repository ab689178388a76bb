package executor

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Config configures a Node. Zero values take the defaults documented on each field.
type Config struct {
	NodeID  string // default <hostname>-<random>
	Workers int    // worker processes; default DefaultWorkers()
	// SpareWorkers are started and warmed (with the modules run last) ahead of need and serve
	// nothing until a worker is lost: a guest that reaches its deadline is stopped by killing
	// its worker, and a spare takes its place at once. Default 1; negative: none.
	SpareWorkers  int
	WorkerCommand []string                // default DefaultWorkerCommand()
	WorkerEnv     []string                // KEY=value added to the workers' environment (tests re-exec themselves)
	CacheDir      string                  // required: <CacheDir>/modules holds module files, <CacheDir>/wazero wazero's compile cache
	Tiers         map[string]schemas.Tier // default schemas.DefaultTiers()
	// CompileTimeout, when set, caps every tier's compile budget (Tier.CompileBudget: a base plus
	// some time per MiB of the module, set in the tier table); a compile past its budget is
	// killed with its worker. Zero: the tiers' budgets alone.
	CompileTimeout time.Duration
	Replicas       int                   // the streams' replicas (reads from the results bucket's leader when > 1); default 1
	Logger         *slog.Logger          // default slog.Default()
	Registerer     prometheus.Registerer // may be nil: metrics are kept but not exported

	// LongRunning bounds the executions that have run longer than longAfter (10 ms) at once:
	// while that many are, the node starts nothing new, so that CPU-bound guests do not share
	// cores and stretch each other's wall time (which is what they are limited and billed by).
	// Default runtime.NumCPU(). Short executions are not bound by it: for them, workers beyond
	// the CPUs hide the round trip to a worker process.
	LongRunning int

	// WorkerMemoryLimit is the data-size limit (RLIMIT_DATA: private writable memory) set on
	// each worker process, an OS-level backstop behind wazero's memory limit for what wazero
	// does not count (tables, compiled code, runtime structures): a worker past it dies and its
	// job ends as "worker crashed". Default: the largest tier's memory and scratch space, plus
	// compiledCodeFactor times the largest module a tier allows (its machine code is mapped
	// writable while it loads, its decoded form lives in the heap), plus 1 GiB. RLIMIT_AS
	// would be the classic choice but counts address space the Go runtime merely reserves
	// (about 2 GiB in an idle worker), so it can only be loose; RLIMIT_DATA counts what can be
	// written to, which includes a guest's linear memory (one reservation of its limit, see
	// executor/worker). Negative disables it.
	WorkerMemoryLimit int64

	// ModuleCacheBytes bounds the module files kept in <CacheDir>/modules (least recently used
	// go first; files in use stay). Default 4 GiB; negative: no bound. wazero's compilation
	// cache in <CacheDir>/wazero has no bound of its own: clear it when it grows too large
	// (any time; it only costs recompilation).
	ModuleCacheBytes int64

	// CompileWorkers is how many uploads the node compiles at once, in workers of their own on
	// top of Workers, so that compiles (a compile bomb holds its worker for CompileTimeout)
	// never take the workers executions run in. Default 1.
	CompileWorkers int
}

// withDefaults returns c with every zero value replaced by its default; c is not changed.
// Defaults that look at the machine (NodeID: the hostname; WorkerCommand: this executable)
// read it, and nothing else.
func (c Config) withDefaults() (Config, error) {
	if c.NodeID == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "executor"
		}
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.NodeID = host + "-" + hex.EncodeToString(b[:])
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers()
	}
	if c.LongRunning <= 0 {
		c.LongRunning = runtime.NumCPU()
	}
	if len(c.WorkerCommand) == 0 {
		cmd, err := DefaultWorkerCommand()
		if err != nil {
			return c, fmt.Errorf("executor: worker command: %w", err)
		}
		c.WorkerCommand = cmd
	}
	if c.Tiers == nil {
		c.Tiers = schemas.DefaultTiers()
	}
	switch {
	case c.SpareWorkers == 0:
		c.SpareWorkers = 1
	case c.SpareWorkers < 0:
		c.SpareWorkers = 0
	}
	if c.CompileWorkers <= 0 {
		c.CompileWorkers = 1
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ModuleCacheBytes == 0 {
		c.ModuleCacheBytes = 4 << 30
	}
	if c.WorkerMemoryLimit == 0 {
		var most, module int64 // linear memory and scratch files, both in the worker's heap or mappings
		for _, t := range c.Tiers {
			most = max(most, int64(t.MemoryMB)*schemas.MiB+t.FileLimits().ScratchBytes)
			module = max(module, t.ModuleSize)
		}
		c.WorkerMemoryLimit = most + compiledCodeFactor*module + 1<<30
	}
	return c, nil
}

// compiledCodeFactor bounds what loading a compiled module costs a worker's RLIMIT_DATA per
// byte of the module: wazero's machine code is about 4.2 times the module's bytes (yosys 30.8
// MB -> 130 MB, clang 75.5 MB -> 307 MB; TestCompiledCodeFactor measures it) and is mapped
// writable while it is read from the compilation cache, next to the module's decoded form in
// the heap. Without it a worker whose spare guest memory was reserved by an earlier run failed
// to load clang ("error mmapping executable (len=305683034): cannot allocate memory").
const compiledCodeFactor = 6

// WorkerBinary is the name of the slim worker binary (cmd/wasmwiz-worker).
const WorkerBinary = "wasmwiz-worker"

// DefaultWorkerCommand is the slim worker binary if it lies beside this executable (it starts in
// a third of the CPU time: every timeout costs a worker start), else this executable's `worker`
// subcommand.
func DefaultWorkerCommand() ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	slim := filepath.Join(filepath.Dir(exe), WorkerBinary)
	if fi, err := os.Stat(slim); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return []string{slim}, nil
	}
	return []string{exe, "worker"}, nil
}

// DefaultWorkers is three worker processes per CPU, at least four. One guest runs in a worker
// at a time; a short guest's worker is busy for well under half of its round trip (the job's
// and the answer's way through the pipes and the schedulers of both processes), so more
// workers than CPUs keep the CPUs busy. Config.LongRunning keeps long guests to one per CPU.
func DefaultWorkers() int { return max(4, 3*runtime.NumCPU()) }

// Validate checks the configuration as New would use it (defaults applied); it changes nothing.
func (c Config) Validate() error {
	c, err := c.withDefaults()
	if err != nil {
		return err
	}
	var errs []error
	if c.CacheDir == "" {
		errs = append(errs, errors.New("executor: cache dir is required"))
	}
	if len(c.NodeID) > 200 {
		errs = append(errs, fmt.Errorf("executor: node id %q is too long", c.NodeID))
	}
	if err := schemas.ValidateTiers(c.Tiers); err != nil {
		errs = append(errs, fmt.Errorf("executor: %w", err))
	}
	return errors.Join(errs...)
}

// compileBudget is how long a module of size bytes may compile for tier t: the tier's budget,
// capped by Config.CompileTimeout when that is set.
func (c Config) compileBudget(t schemas.Tier, size int64) time.Duration {
	b := t.CompileBudget(size)
	if c.CompileTimeout > 0 {
		b = min(b, c.CompileTimeout)
	}
	return b
}

// warmTimeout bounds a new worker's warm-up compiles: the largest budget of any tier.
func (c Config) warmTimeout() time.Duration {
	var most time.Duration
	for _, t := range c.Tiers {
		most = max(most, c.compileBudget(t, t.ModuleSize))
	}
	return most
}
