package executor

import (
	"bufio"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmwiz/wasmwiz/executor/worker"
)

var (
	errPoolClosed    = errors.New("worker pool is closed")
	errWorkerCrashed = errors.New("worker crashed")
)

// crashedError reports a job whose worker died on its own (a crash, its memory backstop)
// after running it for after (since the guest started, or since the job was sent); it is
// errWorkerCrashed.
type crashedError struct {
	after, cpu time.Duration
	memory     int64 // the guest's linear memory when last reported (worker.Memory), 0 if never
}

func (e *crashedError) Error() string        { return fmt.Sprintf("worker crashed after %v", e.after) }
func (e *crashedError) Is(target error) bool { return target == errWorkerCrashed }

// killedError reports a job whose worker was killed by the supervisor.
type killedError struct {
	cpu       time.Duration // the guest's CPU time, from the dead worker's rusage (0 if unknown)
	compiling bool          // killed before the guest started: compilation overran
	after     time.Duration
	memory    int64 // the guest's linear memory when last reported (worker.Memory), 0 if never
}

func (e *killedError) Error() string {
	if e.compiling {
		return fmt.Sprintf("compilation ran past %v and was killed with its worker", e.after)
	}
	return fmt.Sprintf("execution ignored its deadline and was killed with its worker after %v", e.after)
}

type poolConfig struct {
	command        []string
	env            []string
	cacheDir       string
	size           int
	killGrace      time.Duration
	compileTimeout time.Duration
	memoryLimit    int64 // RLIMIT_DATA of each worker; <= 0 for none
}

// pool supervises the worker processes. Each runs one job at a time; a job holds its worker
// from acquire to release. A worker that overruns its deadline is killed (its whole process
// group, SIGKILL) and replaced in the background; so is one that dies on its own.
type pool struct {
	cfg poolConfig
	log *slog.Logger
	m   *metrics
	// Idle workers: tokens holds one token per worker in idle, so that waiting for a worker
	// can be a select; idle itself (under mu) lets acquire choose which one.
	tokens chan struct{}

	mu     sync.Mutex
	idle   []*proc            // most recently released last
	all    map[*proc]struct{} // started and not lost
	alive  int
	busy   int
	closed bool
	done   chan struct{}
	ctx    context.Context // canceled by close: stops replacements starting
	cancel context.CancelFunc
	wg     sync.WaitGroup // replacements
}

// proc is one worker process.
type proc struct {
	cmd    *exec.Cmd
	pid    int
	stdin  *os.File
	bw     *bufio.Writer
	enc    *gob.Encoder
	resp   chan worker.Response // closed when the worker's stdout ends
	exited chan struct{}        // closed when the process has been reaped
	killed atomic.Bool
	dead   atomic.Bool // its stdout ended: it will answer nothing more
	engine string
	warm   warmSet
	cpu    time.Duration // the process's CPU time after its last job: the next guest's start

	mu     sync.Mutex
	reaped bool // the pid may belong to another process now: never signal it
}

func (pr *proc) send(req *worker.Request) error {
	if err := pr.enc.Encode(req); err != nil {
		return err
	}
	return pr.bw.Flush()
}

// kill kills the worker's process group on the supervisor's behalf.
func (pr *proc) kill() {
	pr.killed.Store(true)
	pr.signal()
}

// signal kills the worker's process group.
func (pr *proc) signal() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if !pr.reaped {
		killGroup(pr.pid)
	}
}

func newPool(ctx context.Context, cfg poolConfig, log *slog.Logger, m *metrics) (*pool, error) {
	p := &pool{cfg: cfg, log: log, m: m, tokens: make(chan struct{}, cfg.size), done: make(chan struct{}), all: map[*proc]struct{}{}}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for range cfg.size {
		pr, err := p.start(ctx)
		if err != nil {
			p.close()
			return nil, err
		}
		p.mu.Lock()
		p.alive++
		p.all[pr] = struct{}{}
		p.mu.Unlock()
		p.putIdle(pr)
	}
	p.gauges()
	return p, nil
}

// start starts one worker and waits for its handshake.
func (p *pool) start(ctx context.Context) (*proc, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd := exec.Command(p.cfg.command[0], p.cfg.command[1:]...)
	cmd.Env = append(workerEnviron(), p.cfg.env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	// The child has its copies; the node keeps only its own ends, so that the worker's exit
	// is seen as the end of its stdout.
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start worker: %w", err)
	}
	pr := &proc{
		cmd:    cmd,
		pid:    cmd.Process.Pid,
		stdin:  inW,
		resp:   make(chan worker.Response, 2),
		exited: make(chan struct{}),
	}
	if err := limitWorker(pr.pid, p.cfg.memoryLimit); err != nil {
		p.log.Warn("executor: cannot set worker limits", "worker_pid", pr.pid, "err", err)
	}
	pr.bw = bufio.NewWriterSize(inW, 256<<10)
	pr.enc = gob.NewEncoder(pr.bw)
	go forwardStderr(p.log, pr.pid, errR)
	go func() {
		dec := gob.NewDecoder(bufio.NewReaderSize(outR, 256<<10))
		for {
			var r worker.Response
			if err := dec.Decode(&r); err != nil {
				break
			}
			pr.resp <- r
		}
		pr.dead.Store(true)
		close(pr.resp)
		outR.Close()
		// Reap after the pipe is drained. A worker that closed its stdout without exiting is
		// no worker: kill it so Wait returns.
		pr.signal()
		waitExited(pr.pid) // a zombie keeps its pid until it is reaped below
		pr.mu.Lock()
		pr.reaped = true
		pr.mu.Unlock()
		_ = cmd.Wait()
		inW.Close()
		close(pr.exited)
	}()

	hs := time.AfterFunc(10*time.Second, pr.kill)
	defer hs.Stop()
	if err := pr.send(&worker.Request{Hello: &worker.Hello{CacheDir: p.cfg.cacheDir}}); err != nil {
		pr.kill()
		return nil, fmt.Errorf("worker handshake: %w", err)
	}
	select {
	case r, ok := <-pr.resp:
		if !ok || r.Ready == nil {
			pr.kill()
			return nil, errors.New("worker handshake: worker exited (is the worker command right?)")
		}
		if r.Ready.Error != "" {
			pr.kill()
			return nil, fmt.Errorf("worker handshake: %s", r.Ready.Error)
		}
		pr.engine, pr.cpu = r.Ready.Engine, r.Ready.ProcessCPU
	case <-ctx.Done():
		pr.kill()
		return nil, ctx.Err()
	}
	p.log.Debug("executor: worker started", "worker_pid", pr.pid, "engine", pr.engine)
	return pr, nil
}

// acquire takes an idle worker, waiting for one. It prefers a worker that has recently run
// the module key (its compiled module is likely still in that worker's cache), then the most
// recently used one.
func (p *pool) acquire(ctx context.Context, key string) (pr *proc, warm bool, err error) {
	for {
		select {
		case <-p.tokens:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-p.done:
			return nil, false, errPoolClosed
		}
		p.mu.Lock()
		i := len(p.idle) - 1
		warm = false
		for j := len(p.idle) - 1; j >= 0 && key != ""; j-- {
			if p.idle[j].warm.has(key) {
				i, warm = j, true
				break
			}
		}
		pr = p.idle[i]
		p.idle = append(p.idle[:i], p.idle[i+1:]...)
		p.mu.Unlock()
		if pr.dead.Load() { // died while idle (OOM killer, operator)
			p.lose(pr, "crashed", false)
			continue
		}
		p.mu.Lock()
		p.busy++
		p.mu.Unlock()
		p.gauges()
		if key != "" {
			pr.warm.add(key)
		}
		return pr, warm, nil
	}
}

// putIdle makes pr available. It never blocks: there are never more workers than tokens.
func (p *pool) putIdle(pr *proc) {
	p.mu.Lock()
	p.idle = append(p.idle, pr)
	p.mu.Unlock()
	p.tokens <- struct{}{}
}

func (p *pool) release(pr *proc) {
	p.mu.Lock()
	p.busy--
	p.mu.Unlock()
	p.putIdle(pr)
	p.gauges()
}

// lose kills pr and starts a replacement in the background.
func (p *pool) lose(pr *proc, reason string, busy bool) {
	pr.kill()
	p.m.workerRestarts.WithLabelValues(reason).Inc()
	p.mu.Lock()
	p.alive--
	delete(p.all, pr)
	if busy {
		p.busy--
	}
	closed := p.closed
	if !closed {
		p.wg.Add(1)
	}
	p.mu.Unlock()
	p.gauges()
	p.log.Warn("executor: replacing worker", "worker_pid", pr.pid, "reason", reason)
	if closed {
		return
	}
	go func() {
		defer p.wg.Done()
		for delay := 50 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
			npr, err := p.start(p.ctx)
			if err == nil {
				p.mu.Lock()
				if p.closed {
					p.mu.Unlock()
					p.stop(npr)
					return
				}
				p.alive++
				p.all[npr] = struct{}{}
				p.mu.Unlock()
				p.putIdle(npr)
				p.gauges()
				return
			}
			p.log.Error("executor: cannot start a worker", "err", err)
			select {
			case <-p.done:
				return
			case <-time.After(delay):
			}
		}
	}()
}

// ready reports whether at least one worker is alive.
func (p *pool) ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed && p.alive > 0
}

func (p *pool) gauges() {
	p.mu.Lock()
	busy, alive := p.busy, p.alive
	p.mu.Unlock()
	p.m.workersBusy.Set(float64(busy))
	p.m.workersIdle.Set(float64(max(0, alive-busy)))
}

// do sends req to a worker and waits for its final response. The worker is killed if it has
// not answered within first, or, once its guest runs, within second.
func (p *pool) do(ctx context.Context, key string, req *worker.Request, first, second time.Duration) (worker.Response, error) {
	for attempt := 0; ; attempt++ {
		pr, warm, err := p.acquire(ctx, key)
		if err != nil {
			return worker.Response{}, err
		}
		if req.Run != nil {
			req.Run.Warm = warm
		}
		resp, sent, err := p.exchange(pr, req, first, second)
		if err == nil {
			return resp, nil
		}
		if !sent && attempt == 0 {
			continue // the worker was dead before it got the job: try another one
		}
		return worker.Response{}, err
	}
}

// exchange runs one job on pr, which the caller has acquired; exchange releases or loses it.
//
// A Run the worker should find compiled (Warm) runs its guest at once, under the second
// deadline; any other job starts under the first (compiling) and switches to the second when
// the worker reports Started. A warm Run that turns out cold is announced by Compiling, which
// switches back to the first.
func (p *pool) exchange(pr *proc, req *worker.Request, first, second time.Duration) (resp worker.Response, sent bool, err error) {
	start := time.Now()
	started := req.Run != nil && req.Run.Warm
	cpu0 := pr.cpu   // the worker's CPU time when the guest started
	var memory int64 // the guest's linear memory, as last reported
	deadline := first
	if started {
		deadline = second
	}
	timer := time.AfterFunc(deadline, pr.kill)
	defer timer.Stop()
	if err := pr.send(req); err != nil {
		if pr.killed.Load() {
			p.lose(pr, reason(started), true)
			return resp, true, &killedError{compiling: !started, after: time.Since(start)}
		}
		p.lose(pr, "crashed", true)
		return resp, false, errWorkerCrashed
	}
	for r := range pr.resp {
		switch {
		case r.Compiling != nil:
			if !timer.Stop() {
				continue // the kill is under way; the channel will close
			}
			started = false
			timer.Reset(first)
		case r.Started != nil:
			if !timer.Stop() {
				continue // the kill is under way; the channel will close
			}
			started, cpu0 = true, r.Started.CPU
			start = time.Now()
			timer.Reset(second)
		case r.Memory != nil:
			memory = max(memory, r.Memory.Bytes)
		case r.Run != nil || r.Compile != nil:
			if r.Run != nil {
				pr.cpu = r.Run.ProcessCPU
			} else {
				pr.cpu = r.Compile.ProcessCPU
			}
			switch {
			case !timer.Stop() || pr.killed.Load():
				// Finished just as the kill fired: the answer is good, the worker is gone.
				p.lose(pr, reason(started), true)
			case r.Run != nil && p.cfg.memoryLimit > 0 && r.Run.RuntimeBytes > p.cfg.memoryLimit/4:
				// The guest left the worker's Go runtime holding much of its memory backstop
				// (tables are Go heap, and Go never unmaps it): the next guest, perhaps another
				// tenant's, would die of it. Replace the worker.
				p.lose(pr, "recycled", true)
			default:
				p.release(pr)
			}
			return r, true, nil
		default:
			p.lose(pr, "crashed", true)
			return resp, true, fmt.Errorf("%w: unexpected frame", errWorkerCrashed)
		}
	}
	if pr.killed.Load() {
		p.lose(pr, reason(started), true)
		after := time.Since(start)
		return resp, true, &killedError{compiling: !started, after: after, cpu: guestCPU(pr, started, cpu0), memory: memory}
	}
	p.lose(pr, "crashed", true)
	after := time.Since(start)
	return resp, true, &crashedError{after: after, cpu: guestCPU(pr, started, cpu0), memory: memory}
}

// guestCPU is the CPU time a guest used in a worker that died running it: the dead process's
// total less what it had used when the guest started. It waits briefly for the process to be
// reaped (it has been killed); 0 when the guest had not started or the total is unknown.
func guestCPU(pr *proc, started bool, cpu0 time.Duration) time.Duration {
	if !started {
		return 0
	}
	select {
	case <-pr.exited:
	case <-time.After(time.Second):
		return 0
	}
	ps := pr.cmd.ProcessState
	if ps == nil {
		return 0
	}
	return max(0, ps.UserTime()+ps.SystemTime()-cpu0)
}

// workerEnviron is the part of the node's environment a worker inherits: what the Go runtime
// and the system need, nothing else. The node's environment may hold credentials (database
// URLs, NATS credentials); guests never see the worker's environment, but a worker is the
// process that runs hostile code, so it gets none of them.
func workerEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "HOME", "TMPDIR", "LANG", "TZ", "GODEBUG", "GOTRACEBACK", "GOCOVERDIR":
			env = append(env, kv)
		}
	}
	return env
}

func reason(started bool) string {
	if started {
		return "deadline"
	}
	return "compile_timeout"
}

// run executes a guest. The worker gets the compile timeout to compile (or find) the module,
// then the job's timeout plus the kill grace to run it.
func (p *pool) run(ctx context.Context, job *worker.RunJob) (*worker.RunResult, error) {
	r, err := p.do(ctx, warmKey(job.ModuleHash, job.MemoryPages), &worker.Request{Run: job}, p.cfg.compileTimeout, job.Timeout+p.cfg.killGrace)
	if err != nil {
		return nil, err
	}
	if r.Run == nil {
		return nil, fmt.Errorf("%w: answered a run with another frame", errWorkerCrashed)
	}
	return r.Run, nil
}

// compile compiles a module in a worker, killing it past the compile timeout.
func (p *pool) compile(ctx context.Context, job *worker.CompileJob) (*worker.CompileResult, error) {
	r, err := p.do(ctx, warmKey(job.ModuleHash, job.MemoryPages), &worker.Request{Compile: job}, p.cfg.compileTimeout, p.cfg.compileTimeout)
	if err != nil {
		return nil, err
	}
	if r.Compile == nil {
		return nil, fmt.Errorf("%w: answered a compile with another frame", errWorkerCrashed)
	}
	return r.Compile, nil
}

// close stops every worker: idle ones are asked to exit (their stdin closes) and killed if
// they do not within a second. Callers finish their jobs first.
func (p *pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.cancel()
	p.mu.Unlock()
	p.wg.Wait()
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, pr := range idle {
		p.stop(pr)
		p.mu.Lock()
		p.alive--
		delete(p.all, pr)
		p.mu.Unlock()
	}
	p.gauges()
}

func warmKey(hash string, pages uint32) string {
	return hash + "/" + strconv.FormatUint(uint64(pages), 10)
}

// warmSet remembers the modules a worker ran last, mirroring (approximately) the worker's own
// cache of compiled modules, which holds the 64 most recent.
type warmSet struct {
	mu   sync.Mutex
	keys []string // oldest first
}

const warmSize = 64

func (w *warmSet) has(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(w.keys, key)
}

func (w *warmSet) add(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if i := slices.Index(w.keys, key); i >= 0 {
		w.keys = append(w.keys[:i], w.keys[i+1:]...)
	}
	w.keys = append(w.keys, key)
	if len(w.keys) > warmSize {
		w.keys = w.keys[1:]
	}
}

func (p *pool) stop(pr *proc) {
	pr.stdin.Close()
	select {
	case <-pr.exited:
	case <-time.After(time.Second):
		pr.kill()
		<-pr.exited
	}
}

// forwardStderr logs a worker's stderr line by line, keeping at most 4 KiB of a line and at
// most 100 lines per 10 s, so a worker cannot flood the node's log.
func forwardStderr(log *slog.Logger, pid int, r io.ReadCloser) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 4096)
	var (
		window  = time.Now()
		lines   int
		dropped int
	)
	for {
		line, isPrefix, err := br.ReadLine()
		if err != nil {
			if dropped > 0 {
				log.Warn("executor: worker stderr lines dropped", "worker_pid", pid, "dropped", dropped)
			}
			return
		}
		text := string(line)
		for isPrefix { // skip the rest of an over-long line
			_, isPrefix, err = br.ReadLine()
			if err != nil {
				break
			}
		}
		if time.Since(window) > 10*time.Second {
			if dropped > 0 {
				log.Warn("executor: worker stderr lines dropped", "worker_pid", pid, "dropped", dropped)
			}
			window, lines, dropped = time.Now(), 0, 0
		}
		if lines >= 100 {
			dropped++
			continue
		}
		lines++
		log.Warn("executor: worker stderr", "worker_pid", pid, "line", text)
	}
}
