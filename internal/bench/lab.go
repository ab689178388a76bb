// Package bench is WasmWiz's measuring kit: a load generator (Generate, over REST or direct
// NATS) and the lab behind `wasmwiz bench` (Run), which measures a running system side by side
// with its floors (wazero alone, the bus alone, a bare HTTP → JetStream → wazero service) and its
// peers (a new runtime per request, a wazero CLI process per request).
package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// The bench's modes.
const (
	modeLimit       = "limit"            // wazero instantiate + run of a compiled module, in-process, checking deadlines at loop back-edges
	modeLimitFree   = "limit-nodeadline" // the same without deadline checks, as the workers run guests
	modeBus         = "bus"              // JetStream publish → work-queue pull → reply, no work
	modeBare        = "bare"             // HTTP → JetStream → in-process wazero (no deadline checks) → reply → HTTP
	modeNATS        = "nats"             // the product over direct NATS
	modeREST        = "rest"             // the product over REST
	modePeerCompile = "peer-compile"     // new runtime + compile + run per request, in-process
	modePeerProcess = "peer-process"     // one wazero CLI process per request
)

// Modes are the bench's modes, in the order of its table.
var Modes = []string{modeLimit, modeLimitFree, modeBus, modeBare, modeNATS, modeREST, modeWrk, modePeerCompile, modePeerProcess}

type benchModule struct {
	Name   string `json:"name"`
	Bytes  int    `json:"bytes"`
	wasm   []byte
	stdin  []byte
	args   []string
	file   string                // on disk, for the wazero CLI
	id     string                // uploaded: sha256:…
	cm     wazero.CompiledModule // in the limit runtime (deadline checks)
	cmFree wazero.CompiledModule // in the limit-nodeadline runtime, which bare uses too
}

type benchCell struct {
	Module      string  `json:"module"`
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency"`
	InFlight    int     `json:"in_flight"` // what ran: peers are capped at 2×CPUs (CPU-bound; more only queues)
	Report      *Report `json:"report"`
	// NATS is what each execution cost the NATS server (modes that use it, when the system
	// can count: System.NATSCounts).
	NATS *cellNATS `json:"nats,omitempty"`
	// CPU time per request (µs) of this process (NATS, gateway, node, accounting, the floors
	// and the load generator together) and of its child processes (the executor's workers),
	// read before and after the cell: what bounds the rate when the CPUs are the limit.
	CPUProcessUS float64 `json:"cpu_process_us_per_exec"`
	CPUWorkersUS float64 `json:"cpu_workers_us_per_exec"`
	// Time the same threads waited, runnable, for a CPU (µs per request, Linux schedstat): on a
	// machine shared with other work, the part of the latency that is the machine's.
	WaitProcessUS float64 `json:"runq_wait_process_us_per_exec"`
	WaitWorkersUS float64 `json:"runq_wait_workers_us_per_exec"`
}

type benchRatio struct {
	Module      string  `json:"module"`
	Concurrency int     `json:"concurrency"`
	Name        string  `json:"name"` // e.g. rest/bare
	Value       float64 `json:"value"`
}

type benchOutput struct {
	CPUs        int          `json:"cpus"`
	GoVersion   string       `json:"go_version"`
	CellSeconds float64      `json:"cell_seconds"`
	Workers     int          `json:"workers"`
	Cells       []benchCell  `json:"cells"`
	Ratios      []benchRatio `json:"ratios"`
	// RSS (bytes) sampled during the last rest cell at the largest concurrency: the bench
	// process (gateway, NATS, executor node, accounting and the load generator together) and
	// the executor's worker processes.
	RSSProcess int64    `json:"rss_process_bytes"`
	RSSWorkers int64    `json:"rss_workers_bytes"`
	Notes      []string `json:"notes,omitempty"`
	// /proc/loadavg before and after: other work on the machine skews every cell.
	LoadBefore string `json:"loadavg_before,omitempty"`
	LoadAfter  string `json:"loadavg_after,omitempty"`
}

// System is the running WasmWiz under test.
type System struct {
	URL     string // the REST API
	NATSURL string // its NATS server (the floors' streams run there too)
	Key     string // an API key on the unlimited tier
	Workers int    // the executor's worker processes
	// NATSCounts, when set, reads the NATS server's totals (by connection and stream), so that
	// cells of the modes that use NATS report the messages and stream writes per execution.
	NATSCounts func() (NATSCounts, error)
}

// Config is what to measure, and how. The zero values of CellDuration, Concurrency, Modules and
// Modes mean 2s, 1,16,64, every module and every mode.
type Config struct {
	CellDuration time.Duration
	Concurrency  []int
	Modules      []string
	Modes        []string
	JSON         bool
	Progress     io.Writer // nil: no progress line
	CPUProfile   string    // write CPU profiles of this process (<path>.<module>.c<N>), one per ProfileMode cell
	MemProfile   string    // write an allocation profile (alloc_space since start) after the run
	ProfileMode  string    // the mode whose cells CPUProfile covers (default rest)
	Wazero       string    // wazero CLI for peer-process (default: on PATH, else go install'ed into the user cache dir)
}

func (c Config) withDefaults() Config {
	if c.CellDuration <= 0 {
		c.CellDuration = 2 * time.Second
	}
	if len(c.Concurrency) == 0 {
		c.Concurrency = []int{1, 16, 64}
	}
	if len(c.Modules) == 0 {
		c.Modules = ModuleNames
	}
	if len(c.Modes) == 0 {
		c.Modes = Modes
	}
	if c.ProfileMode == "" {
		c.ProfileMode = modeREST
	}
	return c
}

// Validate reports the first bad setting.
func (c Config) Validate() error {
	c = c.withDefaults()
	for _, n := range c.Concurrency {
		if n < 1 {
			return fmt.Errorf("bad concurrency %d", n)
		}
	}
	for _, m := range c.Modes {
		if !slices.Contains(Modes, m) {
			return fmt.Errorf("unknown mode %q (have %s)", m, strings.Join(Modes, ", "))
		}
	}
	for _, m := range c.Modules {
		if !slices.Contains(ModuleNames, m) {
			return fmt.Errorf("unknown module %q (have %s)", m, strings.Join(ModuleNames, ", "))
		}
	}
	if !slices.Contains(Modes, c.ProfileMode) {
		return fmt.Errorf("unknown profile mode %q", c.ProfileMode)
	}
	return nil
}

// Run measures sys (and, beside it, in this process, its floors and peers), interleaved: each
// mode on each module at each concurrency (closed loop), and writes the table (or JSON) to stdout.
func Run(ctx context.Context, cfg Config, sys System, stdout io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	levels, modes := cfg.Concurrency, slices.Clone(cfg.Modes)
	prog := cfg.Progress
	say := func(format string, a ...any) {
		if prog != nil {
			fmt.Fprintf(prog, "\r\033[K"+format, a...)
		}
	}
	out := &benchOutput{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), CellSeconds: cfg.CellDuration.Seconds(),
		Workers: sys.Workers, LoadBefore: loadAvg()}

	tmp, err := os.MkdirTemp("", "wasmwiz-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var closers []func()
	defer func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}()

	// The modules.
	mods, err := prepareModules(cfg.Modules, tmp, say, out)
	if err != nil {
		return err
	}

	// The floors' own plumbing, in the same process and NATS server.
	lim, err := newLimitRunner(ctx, true)
	if err != nil {
		return err
	}
	defer lim.close(ctx)
	limFree, err := newLimitRunner(ctx, false)
	if err != nil {
		return err
	}
	defer limFree.close(ctx)
	bus, err := startBus(ctx, sys.NATSURL, limFree, &closers)
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	rest := NewRESTTarget(sys.URL, sys.Key, 256)
	nt, err := NewNATSTarget(sys.NATSURL, sys.Key)
	if err != nil {
		return err
	}
	defer nt.Close()
	var wz string
	if slices.Contains(modes, modePeerProcess) {
		say("finding the wazero CLI…")
		if wz, err = findWazero(ctx, cfg.Wazero); err != nil {
			out.Notes = append(out.Notes, "peer-process skipped: "+firstLine(err.Error()))
			modes = slices.DeleteFunc(modes, func(m string) bool { return m == modePeerProcess })
		}
	}
	var wrk string
	if slices.Contains(modes, modeWrk) {
		if wrk, err = exec.LookPath("wrk"); err != nil {
			out.Notes = append(out.Notes, "rest-wrk skipped: no wrk on PATH (Debian: apt-get install wrk)")
			modes = slices.DeleteFunc(modes, func(m string) bool { return m == modeWrk })
		}
	}
	wzCache := filepath.Join(tmp, "wazero-cli-cache")
	for _, m := range mods {
		if m.cm, err = lim.rt.CompileModule(ctx, m.wasm); err != nil {
			return fmt.Errorf("compile %s: %w", m.Name, err)
		}
		if m.cmFree, err = limFree.rt.CompileModule(ctx, m.wasm); err != nil {
			return fmt.Errorf("compile %s: %w", m.Name, err)
		}
		if m.id, err = rest.Upload(ctx, m.Name, m.wasm); err != nil {
			return fmt.Errorf("upload %s: %w", m.Name, err)
		}
	}

	op := func(mode string, m *benchModule) func(context.Context) string {
		switch mode {
		case modeLimit:
			return func(ctx context.Context) string { return lim.run(ctx, m.cm, m) }
		case modeLimitFree:
			return func(ctx context.Context) string { return limFree.run(ctx, m.cmFree, m) }
		case modeBus:
			return bus.busOp
		case modeBare:
			body, _ := json.Marshal(bareRequest{Module: m.Name, Stdin: m.stdin})
			return func(ctx context.Context) string { return bus.bareOp(ctx, body) }
		case modeNATS, modeREST, modeWrk: // rest-wrk warms up with the in-process client
			body := executionBody(m)
			if mode == modeNATS {
				return func(ctx context.Context) string { return nt.Execute(ctx, body) }
			}
			return func(ctx context.Context) string { return rest.Execute(ctx, body) }
		case modePeerCompile:
			return func(ctx context.Context) string { return peerCompile(ctx, m) }
		case modePeerProcess:
			return func(ctx context.Context) string { return peerProcess(ctx, wz, wzCache, m) }
		}
		panic("unknown mode " + mode)
	}
	bus.modules(mods)

	// Warm every path once per module (compile caches, connections), then measure.
	for _, m := range mods {
		for _, mode := range modes {
			say("warming %s %s…", m.Name, mode)
			if o := op(mode, m)(ctx); o != OutcomeOK {
				return fmt.Errorf("warm-up of %s on %s: %s", mode, m.Name, o)
			}
		}
	}

	total := len(mods) * len(levels) * len(modes)
	i := 0
	for _, m := range mods {
		for _, c := range levels {
			for _, mode := range modes {
				i++
				if ctx.Err() != nil {
					return ctx.Err()
				}
				label := fmt.Sprintf("[%d/%d] %-5s %-16s c=%-3d ", i, total, m.Name, mode, c)
				do := op(mode, m)
				if mode == modeWrk {
					do = nil
				}
				if err := runCell(ctx, cfg, sys, m, mode, c, c == levels[len(levels)-1], label, do, out, wrkRun(wrk, tmp, sys, m)); err != nil {
					return err
				}
			}
		}
	}
	say("")
	out.LoadAfter = loadAvg()
	if cfg.MemProfile != "" {
		if err := writeAllocProfile(cfg.MemProfile); err != nil {
			return err
		}
	}
	out.ratios(mods, levels)
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	out.print(stdout, mods, levels, modes)
	return nil
}

// executionBody is the body of POST /v1/executions (and of executions.create) that runs m.
func executionBody(m *benchModule) []byte {
	body, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: m.id, StdinBase64: b64(m.stdin), Args: m.args[1:]})
	return body
}

// wrkRun runs a rest-wrk cell of m: wrk (at path wrk) sends POST /v1/executions to sys.
func wrkRun(wrk, dir string, sys System, m *benchModule) func(context.Context, int, time.Duration) (*Report, error) {
	return func(ctx context.Context, c int, d time.Duration) (*Report, error) {
		script, err := wrkScript(dir, sys.Key, executionBody(m))
		if err != nil {
			return nil, err
		}
		return runWrk(ctx, wrk, script, strings.TrimRight(sys.URL, "/")+"/v1/executions", c, d)
	}
}

// prepareModules gets each named guest and writes it into dir (for the wazero CLI); a guest that
// cannot be had (the Go guest without a toolchain) is noted and skipped.
func prepareModules(names []string, dir string, say func(string, ...any), out *benchOutput) ([]*benchModule, error) {
	var mods []*benchModule
	for _, name := range names {
		if name == "probe" {
			say("building the Go wasip1 guest…")
		}
		wasm, stdin, err := guest(name)
		if err != nil {
			out.Notes = append(out.Notes, name+" skipped: "+firstLine(err.Error()))
			continue
		}
		m := &benchModule{Name: name, Bytes: len(wasm), wasm: wasm, stdin: stdin, args: []string{name}, file: filepath.Join(dir, name+".wasm")}
		if err := os.WriteFile(m.file, m.wasm, 0o644); err != nil {
			return nil, err
		}
		mods = append(mods, m)
	}
	return mods, nil
}

// runCell measures one mode on one module at concurrency c and appends the cell to out. Peers
// run at most 2 × CPUs in flight; the rest cell at the largest concurrency samples RSS; cells of
// cfg.ProfileMode get a CPU profile each (<path>.<module>.c<N>; a CPU profile cannot be paused,
// and `go tool pprof` merges several given together).
func runCell(ctx context.Context, cfg Config, sys System, m *benchModule, mode string, c int, largest bool, label string,
	do func(context.Context) string, out *benchOutput, wrk func(context.Context, int, time.Duration) (*Report, error)) error {
	inflight := c
	if mode == modePeerCompile || mode == modePeerProcess {
		inflight = min(c, 2*runtime.NumCPU())
	}
	if cfg.CPUProfile != "" && mode == cfg.ProfileMode {
		prof, err := os.Create(fmt.Sprintf("%s.%s.c%d", cfg.CPUProfile, m.Name, c))
		if err != nil {
			return err
		}
		defer prof.Close()
		if err := pprof.StartCPUProfile(prof); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
		out.Notes = append(out.Notes, "CPU profile: "+prof.Name())
	}
	var sampler *rssSampler
	if mode == modeREST && largest {
		sampler = startRSSSampler()
	}
	count := sys.NATSCounts != nil && (mode == modeREST || mode == modeWrk || mode == modeNATS || mode == modeBare || mode == modeBus)
	var before NATSCounts
	if count {
		var err error
		if before, err = sys.NATSCounts(); err != nil {
			return fmt.Errorf("NATS counts: %w", err)
		}
	}
	cpuSelf, cpuChildren := cpuNow()
	waitSelf, waitChildren := runqWait()
	var rep *Report
	if do == nil {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "\r\033[K%swrk…", label)
		}
		var err error
		if rep, err = wrk(ctx, inflight, cfg.CellDuration); err != nil {
			return err
		}
	} else {
		rep = Generate(ctx, LoadConfig{Concurrency: inflight, Duration: cfg.CellDuration, Progress: cfg.Progress, Label: label}, do)
	}
	if sampler != nil {
		out.RSSProcess, out.RSSWorkers = sampler.stop()
	}
	cell := benchCell{Module: m.Name, Mode: mode, Concurrency: c, InFlight: inflight, Report: rep}
	if rep.Requests > 0 {
		self, children := cpuNow()
		cell.CPUProcessUS = float64(self-cpuSelf) / float64(rep.Requests)
		cell.CPUWorkersUS = float64(max(0, children-cpuChildren)) / float64(rep.Requests)
		wSelf, wChildren := runqWait()
		cell.WaitProcessUS = float64(wSelf-waitSelf) / float64(rep.Requests)
		cell.WaitWorkersUS = float64(max(0, wChildren-waitChildren)) / float64(rep.Requests)
	}
	if count {
		time.Sleep(natsSettle) // what follows the replies (events, acks, accounting) belongs to this cell
		after, err := sys.NATSCounts()
		if err != nil {
			return fmt.Errorf("NATS counts: %w", err)
		}
		cell.NATS = perExec(before, after, rep.Requests)
	}
	out.Cells = append(out.Cells, cell)
	return nil
}

// writeAllocProfile writes the allocations since the start (alloc_space) to path.
func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

func (o *benchOutput) cell(module, mode string, c int) *benchCell {
	for i := range o.Cells {
		if x := &o.Cells[i]; x.Module == module && x.Mode == mode && x.Concurrency == c {
			return x
		}
	}
	return nil
}

func (o *benchOutput) ratios(mods []*benchModule, levels []int) {
	for _, m := range mods {
		for _, c := range levels {
			rest := o.cell(m.Name, modeREST, c)
			if rest == nil {
				continue
			}
			for _, other := range []string{modeWrk, modeBare, modeLimit, modeLimitFree, modePeerCompile, modePeerProcess} {
				if x := o.cell(m.Name, other, c); x != nil && x.Report.OKPerSecond > 0 {
					o.Ratios = append(o.Ratios, benchRatio{Module: m.Name, Concurrency: c, Name: "rest/" + other, Value: rest.Report.OKPerSecond / x.Report.OKPerSecond})
				}
			}
		}
	}
}

func (o *benchOutput) print(w io.Writer, mods []*benchModule, levels []int, modes []string) {
	fmt.Fprintf(w, "wasmwiz bench: %d CPUs, %s, %d workers, %.1fs per cell, closed loop; exec/s counts succeeded executions, latency in ms\n\n",
		o.CPUs, o.GoVersion, o.Workers, o.CellSeconds)
	fmt.Fprintf(w, "%-6s %-16s", "module", "mode")
	for _, c := range levels {
		fmt.Fprintf(w, " | %22s", fmt.Sprintf("c=%d: exec/s  p50  p99", c))
	}
	fmt.Fprintln(w, " | errors")
	for _, m := range mods {
		for _, mode := range modes {
			fmt.Fprintf(w, "%-6s %-16s", m.Name, mode)
			var errs int64
			for _, c := range levels {
				x := o.cell(m.Name, mode, c)
				if x == nil {
					fmt.Fprintf(w, " | %22s", "-")
					continue
				}
				r := x.Report
				errs += r.Errors
				mark := " "
				if x.InFlight != x.Concurrency {
					mark = "*"
				}
				fmt.Fprintf(w, " | %8.0f%s %6s %6s", r.OKPerSecond, mark, fmtMS(r.Latency.P50), fmtMS(r.Latency.P99))
			}
			fmt.Fprintf(w, " | %d\n", errs)
		}
	}
	fmt.Fprintf(w, "\n* peers run at most %d in flight (2 × CPUs): they are CPU-bound, more would only queue.\n", 2*o.CPUs)
	fmt.Fprintln(w, "limit checks deadlines at every loop back-edge (WithCloseOnContextDone); limit-nodeadline, bare, the workers and the peers")
	fmt.Fprintln(w, "do not: the workers' deadline is the node killing them (see docs/performance.md).")
	if slices.Contains(modes, modeWrk) {
		fmt.Fprintln(w, "rest-wrk is rest sent by wrk (a process of its own, up to 2 threads) instead of this process's client; it counts 2xx answers.")
	}
	fmt.Fprintln(w, "\nratios of exec/s:")
	for _, m := range mods {
		for _, c := range levels {
			var parts []string
			for _, r := range o.Ratios {
				if r.Module == m.Name && r.Concurrency == c {
					parts = append(parts, fmt.Sprintf("%s %.2f", r.Name, r.Value))
				}
			}
			if len(parts) > 0 {
				fmt.Fprintf(w, "  %-6s c=%-3d %s\n", m.Name, c, strings.Join(parts, "  "))
			}
		}
	}
	o.printCPU(w, levels)
	o.printNATS(w)
	if o.RSSProcess > 0 {
		fmt.Fprintf(w, "\nRSS during rest at c=%d (peak of samples): bench process (NATS, gateway, node, accounting, load generator) %d MiB, %d workers %d MiB\n",
			levels[len(levels)-1], o.RSSProcess>>20, o.Workers, o.RSSWorkers>>20)
	}
	if o.LoadBefore != "" {
		fmt.Fprintf(w, "load average (1, 5, 15 min) before %s, after %s\n", o.LoadBefore, o.LoadAfter)
	}
	for _, n := range o.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func fmtMS(ms float64) string {
	if ms >= 100 {
		return strconv.FormatFloat(ms, 'f', 0, 64)
	}
	return strconv.FormatFloat(ms, 'f', 2, 64)
}

// limitRunner runs compiled modules in this process with one shared wazero runtime, which
// checks deadlines at loop back-edges (WithCloseOnContextDone) when checks is set.
type limitRunner struct {
	rt wazero.Runtime
}

func newLimitRunner(ctx context.Context, checks bool) (*limitRunner, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(checks))
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return nil, err
	}
	return &limitRunner{rt: rt}, nil
}

func (l *limitRunner) close(ctx context.Context) { _ = l.rt.Close(ctx) }

func (l *limitRunner) run(ctx context.Context, cm wazero.CompiledModule, m *benchModule) string {
	_, o := runCompiled(ctx, l.rt, cm, m)
	return o
}

// runCompiled instantiates and runs cm once; it answers the stdout and the outcome.
func runCompiled(ctx context.Context, rt wazero.Runtime, cm wazero.CompiledModule, m *benchModule) ([]byte, string) {
	var stdout, stderr bytes.Buffer
	cfg := wazero.NewModuleConfig().WithName("").WithArgs(m.args...).
		WithStdin(bytes.NewReader(m.stdin)).WithStdout(&stdout).WithStderr(&stderr)
	mod, err := rt.InstantiateModule(ctx, cm, cfg)
	if mod != nil {
		_ = mod.Close(ctx)
	}
	var ee *sys.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 0) {
		return nil, "error:guest"
	}
	return stdout.Bytes(), OutcomeOK
}

// peerCompile is what the original WasmWiz did per request: a new runtime, compile, run.
func peerCompile(ctx context.Context, m *benchModule) string {
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return "error:wasi"
	}
	cm, err := rt.CompileModule(ctx, m.wasm)
	if err != nil {
		return "error:compile"
	}
	_, o := runCompiled(ctx, rt, cm, m)
	return o
}

// peerProcess runs one wazero CLI process (with its on-disk compilation cache, the kindest
// setting for this peer).
func peerProcess(ctx context.Context, wz, cacheDir string, m *benchModule) string {
	args := append([]string{"run", "-cachedir", cacheDir, m.file}, m.args[1:]...)
	cmd := exec.CommandContext(ctx, wz, args...)
	cmd.Stdin = bytes.NewReader(m.stdin)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Run(); err != nil {
		return "error:process"
	}
	return OutcomeOK
}

// findWazero finds the wazero CLI: the flag, PATH, or a go install into the user cache dir.
func findWazero(ctx context.Context, flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if p, err := exec.LookPath("wazero"); err == nil {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "wasmwiz", "bin")
	if _, err := os.Stat(filepath.Join(bin, "wazero")); err == nil {
		return filepath.Join(bin, "wazero"), nil
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			return "", errors.New("no wazero CLI on PATH and no go toolchain to install it")
		}
	}
	cmd := exec.CommandContext(ctx, goBin, "install", "github.com/tetratelabs/wazero/cmd/wazero@v1.12.0")
	cmd.Env = append(os.Environ(), "GOBIN="+bin)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install wazero: %v: %s", err, msg)
	}
	return filepath.Join(bin, "wazero"), nil
}

// benchBus is the floors' message path: its own work-queue streams on the same NATS server.
// "bus" answers every message at once; "bare" runs the module in-process with wazero first.
type benchBus struct {
	js      jetstream.JetStream
	pub     *nats.Conn
	prefix  string
	mu      sync.Mutex
	waiting map[string]chan []byte
	mods    map[string]*benchModule
	lim     *limitRunner
	srv     *http.Server
	url     string
	hc      *http.Client
}

type bareRequest struct {
	Module string `json:"module"`
	Stdin  []byte `json:"stdin"`
}

type bareResult struct {
	Stdout   []byte `json:"stdout"`
	ExitCode int    `json:"exit_code"`
}

// startBus starts the floors' plumbing on the NATS server at natsURL; closing what it opens
// is appended to *closers.
func startBus(ctx context.Context, natsURL string, lim *limitRunner, closers *[]func()) (*benchBus, error) {
	dial := func(name string) (*nats.Conn, error) {
		nc, err := nats.Connect(natsURL, nats.Name(name))
		if err == nil {
			*closers = append(*closers, nc.Close)
		}
		return nc, err
	}
	pub, err := dial("bench-floor-client")
	if err != nil {
		return nil, err
	}
	work, err := dial("bench-floor-worker")
	if err != nil {
		return nil, err
	}
	b := &benchBus{pub: pub, prefix: "_INBOX.bench." + nuid.Next(), waiting: map[string]chan []byte{}, mods: map[string]*benchModule{}, lim: lim}
	if b.js, err = jetstream.New(pub); err != nil {
		return nil, err
	}
	wjs, err := jetstream.New(work)
	if err != nil {
		return nil, err
	}
	sub, err := pub.Subscribe(b.prefix+".*", func(m *nats.Msg) {
		id := m.Subject[len(b.prefix)+1:]
		b.mu.Lock()
		ch := b.waiting[id]
		b.mu.Unlock()
		if ch != nil {
			ch <- m.Data
		}
	})
	if err != nil {
		return nil, err
	}
	sub.SetPendingLimits(-1, -1)
	for _, kind := range []string{"bus", "bare"} {
		name := "BENCH_" + strings.ToUpper(kind)
		st, err := wjs.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"bench." + kind + ".>"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
		if err != nil {
			return nil, err
		}
		cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "floor", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 10_000})
		if err != nil {
			return nil, err
		}
		handle := b.answerBus
		if kind == "bare" {
			handle = func(m jetstream.Msg) { go b.answerBare(ctx, m) }
		}
		if _, err := cons.Consume(handle, jetstream.PullMaxMessages(256)); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.url = "http://" + ln.Addr().String() + "/run"
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serveHTTP)}
	go func() { _ = b.srv.Serve(ln) }()
	*closers = append(*closers, func() { _ = b.srv.Close() })
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 256, 256
	b.hc = &http.Client{Transport: tr, Timeout: time.Minute}
	return b, nil
}

func (b *benchBus) modules(mods []*benchModule) {
	for _, m := range mods {
		b.mods[m.Name] = m
	}
}

// roundTrip publishes data to subject (waiting for the stream's ack) and waits for the reply.
func (b *benchBus) roundTrip(ctx context.Context, subject string, data []byte) ([]byte, error) {
	id := nuid.Next()
	ch := make(chan []byte, 1)
	b.mu.Lock()
	b.waiting[id] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.waiting, id)
		b.mu.Unlock()
	}()
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set("Reply-To", b.prefix+"."+id)
	if _, err := b.js.PublishMsg(ctx, msg); err != nil {
		return nil, err
	}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case r := <-ch:
		return r, nil
	case <-t.C:
		return nil, errors.New("timeout")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *benchBus) busOp(ctx context.Context) string {
	if _, err := b.roundTrip(ctx, "bench.bus.t", nil); err != nil {
		return "error:bus"
	}
	return OutcomeOK
}

func (b *benchBus) answerBus(m jetstream.Msg) {
	_ = b.pub.Publish(m.Headers().Get("Reply-To"), nil)
	_ = m.Ack()
}

func (b *benchBus) answerBare(ctx context.Context, m jetstream.Msg) {
	var req bareRequest
	res := bareResult{ExitCode: -1}
	if json.Unmarshal(m.Data(), &req) == nil {
		if mod := b.mods[req.Module]; mod != nil {
			run := *mod
			run.stdin = req.Stdin
			if out, o := runCompiled(ctx, b.lim.rt, mod.cmFree, &run); o == OutcomeOK {
				res = bareResult{Stdout: out, ExitCode: 0}
			}
		}
	}
	body, _ := json.Marshal(res)
	_ = b.pub.Publish(m.Headers().Get("Reply-To"), body)
	_ = m.Ack()
}

func (b *benchBus) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req bareRequest
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	reply, err := b.roundTrip(r.Context(), "bench.bare.t", body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	var res bareResult
	if err := json.Unmarshal(reply, &res); err != nil || res.ExitCode != 0 {
		http.Error(w, "execution failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

func (b *benchBus) bareOp(ctx context.Context, body []byte) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url, bytes.NewReader(body))
	if err != nil {
		return "error:request"
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.hc.Do(req)
	if err != nil {
		return "error:transport"
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return strconv.Itoa(resp.StatusCode)
	}
	return OutcomeOK
}

// rssSampler samples the RSS of this process and of its child processes (the workers).
type rssSampler struct {
	stopc          chan struct{}
	done           chan struct{}
	self, children int64
}

func startRSSSampler() *rssSampler {
	s := &rssSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stopc:
				return
			case <-t.C:
				self, children := rssNow()
				s.self, s.children = max(s.self, self), max(s.children, children)
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() (int64, int64) {
	close(s.stopc)
	<-s.done
	return s.self, s.children
}

// rssNow reads VmRSS of this process and the sum over its children (Linux /proc; 0 elsewhere).
func rssNow() (self, children int64) {
	self = procRSS(strconv.Itoa(os.Getpid()))
	for _, pid := range childPIDs() {
		children += procRSS(pid)
	}
	return self, children
}

// childPIDs lists this process's children (the executor's workers; Linux /proc, none elsewhere).
// Each thread's children file names the children it started: a few reads, where scanning
// every process's stat costs the RSS sampler (5 times a second during the largest rest cell)
// a read per process on the machine, ~2.5 % of that cell's CPU on a shared machine with ~140.
func childPIDs() []string {
	self := strconv.Itoa(os.Getpid())
	if _, err := os.Stat("/proc/" + self + "/task/" + self + "/children"); err == nil {
		if tasks, err := os.ReadDir("/proc/" + self + "/task"); err == nil {
			var pids []string
			for _, t := range tasks {
				b, _ := os.ReadFile("/proc/" + self + "/task/" + t.Name() + "/children") // a thread may have ended
				pids = append(pids, strings.Fields(string(b))...)
			}
			return pids
		}
	}
	var pids []string
	entries, _ := os.ReadDir("/proc")
	want := self + " "
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: the ppid follows the state after the last ')'.
		s := string(stat)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+4 && strings.HasPrefix(s[i+4:], want) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// runqWait is how long the threads of this process and of its live children have waited,
// runnable, for a CPU (/proc/<pid>/task/<tid>/schedstat, in ns, summed; 0 where there is none),
// in microseconds: time the scheduler owed them, which grows with whatever else the machine
// runs.
func runqWait() (self, children int64) {
	self = taskWait(strconv.Itoa(os.Getpid()))
	for _, pid := range childPIDs() {
		children += taskWait(pid)
	}
	return self / 1000, children / 1000
}

func taskWait(pid string) int64 {
	tasks, _ := os.ReadDir("/proc/" + pid + "/task")
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/" + pid + "/task/" + t.Name() + "/schedstat")
		if err != nil {
			continue
		}
		// on-CPU ns, run-queue wait ns, time slices
		if f := strings.Fields(string(b)); len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			ns += n
		}
	}
	return ns
}

// cpuNow is the CPU time (user and system) this process and its live children have used, in
// microseconds: the process's own from getrusage, the children's from /proc (in clock ticks,
// assumed 100 per second, as on every Linux this runs on). A child that has exited is not counted.
func cpuNow() (self, children int64) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		self = ru.Utime.Nano()/1000 + ru.Stime.Nano()/1000
	}
	for _, pid := range childPIDs() {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		// After the comm: state(3) ppid(4) … utime(14) stime(15): fields 11 and 12 after ')'.
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		children += (ut + st) * 10_000
	}
	return self, children
}

func procRSS(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// loadAvg is the first three fields of /proc/loadavg ("" elsewhere).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
