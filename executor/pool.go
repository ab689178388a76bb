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
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmwiz/wasmwiz/executor/worker"
	"github.com/wasmwiz/wasmwiz/schemas"
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
	memory     int64 // what the guest held when last reported (worker.Memory), 0 if never
	oom        bool  // the worker's Go runtime ran out of memory: its RLIMIT_DATA backstop
}

func (e *crashedError) Error() string        { return fmt.Sprintf("worker crashed after %v", e.after) }
func (e *crashedError) Is(target error) bool { return target == errWorkerCrashed }

// killCause is why the supervisor killed a worker.
type killCause int32

const (
	causeOther    killCause = iota + 1 // replaced, handshake failed, pool closing
	causeDeadline                      // its job's deadline (or the compile timeout) passed
	causeMemory                        // its guest held more than its memory limit
)

// killedError reports a job whose worker was killed by the supervisor: at the guest's deadline
// (a timeout), past the compile timeout (compiling), or for the guest's memory.
type killedError struct {
	cpu       time.Duration   // the guest's CPU time, from the dead worker's rusage (0 if unknown)
	compiling bool            // killed before the guest started: compilation overran
	memory    bool            // killed because its guest held more than its limit
	after     time.Duration   // from the guest's start (or the job's) to the kill
	held      int64           // the most the guest held, as reported (worker.Memory) or resident, 0 if never
	started   *worker.Started // how the module was found, if the worker said (nil: found compiled, as expected)
	output    *worker.Output  // what the guest had written just before its deadline, if the worker said
	// starved: a compile job (worker.Request.Compile) stopped at schemas.CompileWallFactor
	// times its budget on the wall clock before its worker had had its budget of CPU time: the
	// node was too busy to give it one (see compileDeadline), which says nothing of the
	// module's cost.
	starved bool
}

func (e *killedError) Error() string {
	switch {
	case e.starved:
		return fmt.Sprintf("compilation got too little CPU time in %v and was killed with its worker", e.after)
	case e.compiling:
		return fmt.Sprintf("compilation ran past %v and was killed with its worker", e.after)
	case e.memory:
		return fmt.Sprintf("guest held %d MiB, over its memory limit, and was killed with its worker after %v", e.held>>20, e.after)
	}
	return fmt.Sprintf("execution reached its deadline and was killed with its worker after %v", e.after)
}

type poolConfig struct {
	command        []string
	env            []string
	cacheDir       string
	size           int
	spares         int           // workers started and warmed ahead, serving nothing until one is lost
	compileTimeout time.Duration // of the warm-up compiles of a new worker (modules compiled before, loaded from the cache on disk)
	memoryLimit    int64         // RLIMIT_DATA of each worker; <= 0 for none
}

// pool supervises the worker processes. Each runs one job at a time; a job holds its worker
// from acquire to release. A worker whose guest reaches its deadline or goes over its memory
// limit is killed (its whole process group, SIGKILL); so is one that overruns a compile. A lost
// worker (killed, or dead on its own) is replaced at once by a spare, started and warmed ahead
// with the modules run last, so that a timeout costs the node neither a worker nor a cold
// compile; a new spare is started in the background (refillLoop).
type pool struct {
	cfg poolConfig
	log *slog.Logger
	m   *metrics
	// Idle workers: tokens holds one token per worker in idle, so that waiting for a worker
	// can be a select; idle itself (under mu) lets acquire choose which one.
	tokens chan struct{}

	mu     sync.Mutex
	idle   []*proc            // most recently released last
	all    map[*proc]struct{} // serving (idle or busy), started and not lost
	spares []*proc            // started and warmed, not serving yet
	alive  int
	busy   int
	closed bool
	done   chan struct{}
	ctx    context.Context // canceled by close: stops replacements starting
	cancel context.CancelFunc
	wg     sync.WaitGroup // refillLoop
	refill chan struct{}  // wakes refillLoop (capacity 1)
	recent recentModules  // what new workers are warmed with
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
	logged chan struct{}        // closed when its stderr ends
	killed atomic.Bool
	cause  atomic.Int32 // the first killCause
	killAt atomic.Int64 // when it was first killed, UnixNano
	oom    atomic.Bool  // its stderr said its Go runtime ran out of memory (RLIMIT_DATA)
	dead   atomic.Bool  // its stdout ended: it will answer nothing more
	engine string
	warm   warmSet
	cpu    time.Duration // the process's CPU time after its last job: the next guest's start
	// rss is the worker's resident memory when idle, read at rssAt (at most every rssEvery,
	// when it is acquired): the base of the resident-memory backstop (watchRSS).
	rss   int64
	rssAt time.Time

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
func (pr *proc) kill() { pr.killFor(causeOther) }

// killFor kills the worker's process group; the first cause given is the one reported.
func (pr *proc) killFor(c killCause) {
	if pr.cause.CompareAndSwap(0, int32(c)) {
		pr.killAt.Store(time.Now().UnixNano())
	}
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
	p := &pool{cfg: cfg, log: log, m: m, tokens: make(chan struct{}, cfg.size), done: make(chan struct{}), all: map[*proc]struct{}{},
		refill: make(chan struct{}, 1)}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	p.wg.Add(1)
	go p.refillLoop()
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
	p.kick() // the spares start in the background
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
		logged: make(chan struct{}),
	}
	if err := limitWorker(pr.pid, p.cfg.memoryLimit); err != nil {
		p.log.Warn("cannot set worker limits", "worker_pid", pr.pid, "err", err)
	}
	pr.bw = bufio.NewWriterSize(inW, 256<<10)
	pr.enc = gob.NewEncoder(pr.bw)
	go func() {
		defer close(pr.logged)
		forwardStderr(p.log, pr.pid, errR, func(line string) {
			if strings.Contains(line, "out of memory") {
				pr.oom.Store(true)
			}
		})
	}()
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
		pr.rss, _ = residentBytes(pr.pid)
		pr.rssAt = time.Now()
	case <-ctx.Done():
		pr.kill()
		return nil, ctx.Err()
	}
	p.log.Debug("worker started", "worker_pid", pr.pid, "engine", pr.engine)
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
		if time.Since(pr.rssAt) > rssEvery {
			if n, err := residentBytes(pr.pid); err == nil {
				pr.rss = n
			}
			pr.rssAt = time.Now()
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

// lose kills pr, puts a spare in its place if there is one, and has refillLoop start what is
// missing.
func (p *pool) lose(pr *proc, reason string, busy bool) {
	pr.kill()
	p.m.workerRestarts.WithLabelValues(reason).Inc()
	p.mu.Lock()
	p.alive--
	delete(p.all, pr)
	if busy {
		p.busy--
	}
	var spare *proc
	if !p.closed && len(p.spares) > 0 {
		spare = p.spares[0]
		p.spares = p.spares[1:]
		p.alive++
		p.all[spare] = struct{}{}
	}
	p.mu.Unlock()
	if spare != nil {
		p.putIdle(spare) // acquire checks that it is still alive
	}
	p.gauges()
	p.log.Warn("replacing worker", "worker_pid", pr.pid, "reason", reason, "spare", spare != nil)
	p.kick()
}

// kick wakes refillLoop.
func (p *pool) kick() {
	select {
	case p.refill <- struct{}{}:
	default:
	}
}

// refillLoop starts workers until the pool has size serving and cfg.spares spare, whenever
// kicked: at most one per CPU at a time, each on its own goroutine (a start is mostly CPU: the
// Go runtime and package initialisation of a large binary, ~50 ms). A worker that goes straight
// into service is not warmed first: the node is short of it meanwhile; a spare is.
func (p *pool) refillLoop() {
	defer p.wg.Done()
	var (
		starting atomic.Int32
		failures atomic.Int32 // in a row: each waits longer before it lets the next start
		running  sync.WaitGroup
	)
	defer running.Wait()
	for {
		select {
		case <-p.done:
			return
		case <-p.refill:
		}
		for {
			p.mu.Lock()
			closed := p.closed
			need := p.cfg.size - p.alive + p.cfg.spares - len(p.spares) - int(starting.Load())
			p.mu.Unlock()
			if closed || need <= 0 || int(starting.Load()) >= max(1, runtime.NumCPU()) {
				break
			}
			starting.Add(1)
			running.Go(func() {
				defer p.kick()
				defer starting.Add(-1)
				if err := p.startOne(); err != nil {
					if p.ctx.Err() != nil {
						return // closing
					}
					p.log.Error("cannot start a worker", "err", err)
					delay := min(50*time.Millisecond<<min(failures.Add(1), 7), 5*time.Second)
					select {
					case <-p.done:
					case <-time.After(delay):
					}
					return
				}
				failures.Store(0)
			})
		}
	}
}

// startOne starts a worker and puts it into service if the pool is short of one, else warms
// it and keeps it as a spare.
func (p *pool) startOne() error {
	pr, err := p.start(p.ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	short := p.alive < p.cfg.size
	p.mu.Unlock()
	if !short {
		if err := p.warmUp(pr); err != nil {
			return err
		}
	}
	p.mu.Lock()
	switch {
	case p.closed:
		p.mu.Unlock()
		p.stop(pr)
		return nil
	case p.alive < p.cfg.size:
		p.alive++
		p.all[pr] = struct{}{}
		p.mu.Unlock()
		p.putIdle(pr)
	case len(p.spares) < p.cfg.spares:
		p.spares = append(p.spares, pr)
		p.mu.Unlock()
	default: // more were started than needed: two losses raced with a start
		p.mu.Unlock()
		p.stop(pr)
		return nil
	}
	p.gauges()
	return nil
}

// warmUp has a new worker compile the modules run last (warmModules of them, most recent first,
// each compiled successfully before), which it loads from the compilation cache on disk, so that
// its first jobs find them compiled. It stops early when the pool is short of a serving worker:
// this one is needed as it is.
func (p *pool) warmUp(pr *proc) error {
	for _, job := range p.recent.list() {
		p.mu.Lock()
		short := p.alive < p.cfg.size
		p.mu.Unlock()
		if short {
			return nil
		}
		if _, err := os.Stat(job.ModulePath); err != nil {
			continue // evicted from the node's module cache meanwhile
		}
		resp, err := pr.call(&worker.Request{Compile: &job}, p.cfg.compileTimeout)
		if err != nil {
			pr.kill()
			p.recent.remove(&worker.Request{Compile: &job})
			return fmt.Errorf("warming a new worker: %w", err)
		}
		if resp.Compile.Error == "" {
			pr.warm.add(warmKey(job.ModuleHash, job.MemoryPages))
			pr.cpu = resp.Compile.ProcessCPU
		}
	}
	return nil
}

// call sends req to a worker that serves no job and waits for the answer to a compile, killing
// the worker past timeout.
func (pr *proc) call(req *worker.Request, timeout time.Duration) (worker.Response, error) {
	t := time.AfterFunc(timeout, pr.kill)
	defer t.Stop()
	if err := pr.send(req); err != nil {
		return worker.Response{}, err
	}
	r, ok := <-pr.resp
	switch {
	case !ok:
		return r, errors.New("the worker died")
	case r.Compile == nil:
		return r, errors.New("unexpected frame")
	}
	return r, nil
}

// warmModules is how many of the modules run last a new spare worker compiles before it waits.
const warmModules = 8

// recentModules remembers the last warmModules distinct modules (and memory limits) the pool ran.
type recentModules struct {
	mu   sync.Mutex
	jobs []worker.CompileJob // oldest first
}

func (r *recentModules) add(path, hash string, pages uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.jobs); n > 0 && r.jobs[n-1].ModuleHash == hash && r.jobs[n-1].MemoryPages == pages {
		return // the common case, at no cost
	}
	r.jobs = slices.DeleteFunc(r.jobs, func(j worker.CompileJob) bool { return j.ModuleHash == hash && j.MemoryPages == pages })
	r.jobs = append(r.jobs, worker.CompileJob{ModulePath: path, ModuleHash: hash, MemoryPages: pages})
	if len(r.jobs) > warmModules {
		r.jobs = r.jobs[1:]
	}
}

// remove forgets the module of req.
func (r *recentModules) remove(req *worker.Request) {
	var hash string
	var pages uint32
	switch {
	case req.Run != nil:
		hash, pages = req.Run.ModuleHash, req.Run.MemoryPages
	case req.Compile != nil:
		hash, pages = req.Compile.ModuleHash, req.Compile.MemoryPages
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.jobs = slices.DeleteFunc(r.jobs, func(j worker.CompileJob) bool { return j.ModuleHash == hash && j.MemoryPages == pages })
}

// list is the modules, most recent first.
func (r *recentModules) list() []worker.CompileJob {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := slices.Clone(r.jobs)
	slices.Reverse(l)
	return l
}

// ready reports whether at least one worker is alive.
func (p *pool) ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed && p.alive > 0
}

func (p *pool) gauges() {
	p.mu.Lock()
	busy, alive, spares := p.busy, p.alive, len(p.spares)
	p.mu.Unlock()
	p.m.workersBusy.Set(float64(busy))
	p.m.workersIdle.Set(float64(max(0, alive-busy)))
	p.m.workersSpare.Set(float64(spares))
}

// do sends req to a worker and waits for its final response. The worker is killed if it has
// not answered within first, or, once its guest runs, within second, or if its guest holds more
// than memLimit bytes (0: no limit).
func (p *pool) do(ctx context.Context, key string, req *worker.Request, first, second time.Duration, memLimit int64) (worker.Response, error) {
	for attempt := 0; ; attempt++ {
		pr, warm, err := p.acquire(ctx, key)
		if err != nil {
			return worker.Response{}, err
		}
		if req.Run != nil {
			req.Run.Warm = warm
		}
		resp, sent, err := p.exchange(pr, req, first, second, memLimit)
		switch {
		case err == nil && resp.Run != nil && resp.Run.Error != "" && resp.Run.ExitCode == -1 && !resp.Run.CompileCacheHit:
			// Perhaps not compiled (an invalid module): nothing to warm a new worker with.
		case err == nil && resp.Run != nil:
			p.recent.add(req.Run.ModulePath, req.Run.ModuleHash, req.Run.MemoryPages)
		case err == nil && resp.Compile != nil && resp.Compile.Error == "":
			p.recent.add(req.Compile.ModulePath, req.Compile.ModuleHash, req.Compile.MemoryPages)
		case err != nil:
			var ke *killedError
			if errors.As(err, &ke) && !ke.compiling {
				p.recent.add(req.Run.ModulePath, req.Run.ModuleHash, req.Run.MemoryPages) // compiled, then killed
			}
		}
		if err == nil {
			return resp, nil
		}
		if !sent && attempt == 0 {
			continue // the worker was dead before it got the job: try another one
		}
		return worker.Response{}, err
	}
}

// appendOutput adds an Output frame (what the guest wrote since the previous one) to what the
// earlier frames brought, o (nil for none).
func appendOutput(o, more *worker.Output) *worker.Output {
	if o == nil {
		o = &worker.Output{}
	}
	o.Stdout = append(o.Stdout, more.Stdout...)
	o.Stderr = append(o.Stderr, more.Stderr...)
	o.StdoutBytes, o.StderrBytes = more.StdoutBytes, more.StderrBytes
	return o
}

// exchange runs one job on pr, which the caller has acquired; exchange releases or loses it.
//
// A Run the worker should find compiled (Warm) runs its guest at once, under the second
// deadline; any other job starts under the first (compiling) and switches to the second when
// the worker reports Started. A warm Run that turns out cold is announced by Compiling, which
// switches back to the first. While a guest runs, its memory is watched twice: by the worker's
// reports (worker.Memory: linear memory and Go heap) and by the worker's resident memory above
// what it held idle (watchRSS, a backstop for a worker too stuck to report, see
// executor/worker's collectAfter); either over memLimit kills it.
func (p *pool) exchange(pr *proc, req *worker.Request, first, second time.Duration, memLimit int64) (resp worker.Response, sent bool, err error) {
	start := time.Now()
	started := req.Run != nil && req.Run.Warm
	var startedFrame *worker.Started
	var output *worker.Output // the guest's output from just before its deadline on (worker.Output)
	cpu0 := pr.cpu            // the worker's CPU time when the guest started
	var held int64            // what the guest held, as last reported
	deadline := first
	if started {
		deadline = second
	}
	var starved atomic.Bool
	var timer *time.Timer
	timer = time.AfterFunc(deadline, func() {
		if req.Compile != nil {
			if more, ok := compileDeadline(pr, cpu0, first, time.Since(start)); ok {
				timer.Reset(more)
				return
			} else if more < 0 {
				starved.Store(true)
			}
		}
		pr.killFor(causeDeadline)
	})
	defer timer.Stop()
	var rss *rssWatch
	if started && memLimit > 0 {
		rss = watchRSS(pr, pr.rss, memLimit+rssSlack)
	}
	defer func() { rss.stop() }()
	if err := pr.send(req); err != nil {
		if pr.killed.Load() {
			p.lose(pr, pr.lossReason(started), true)
			return resp, true, pr.killedError(started, start, 0, held, rss)
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
			rss.stop()
			timer.Reset(first)
		case r.Started != nil:
			if !timer.Stop() {
				continue // the kill is under way; the channel will close
			}
			started, cpu0, startedFrame = true, r.Started.CPU, r.Started
			start = time.Now()
			timer.Reset(second)
			if memLimit > 0 {
				// A compile has just grown the worker (compiled code): the base is read again.
				base, _ := residentBytes(pr.pid)
				pr.rss, pr.rssAt = base, start
				rss.stop()
				rss = watchRSS(pr, base, memLimit+rssSlack)
			}
		case r.Output != nil:
			output = appendOutput(output, r.Output)
		case r.Memory != nil:
			held = max(held, r.Memory.Bytes)
			if memLimit > 0 && r.Memory.Bytes > memLimit {
				pr.killFor(causeMemory)
			}
		case r.Run != nil || r.Compile != nil:
			if r.Run != nil {
				pr.cpu = r.Run.ProcessCPU
			} else {
				pr.cpu = r.Compile.ProcessCPU
			}
			switch {
			case !timer.Stop() || pr.killed.Load():
				// Finished just as the kill fired: the answer is good, the worker is gone.
				p.lose(pr, pr.lossReason(started), true)
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
		p.lose(pr, pr.lossReason(started), true)
		ke := pr.killedError(started, start, cpu0, held, rss)
		ke.started, ke.output, ke.starved = startedFrame, output, starved.Load()
		return resp, true, ke
	}
	p.lose(pr, "crashed", true)
	after := time.Since(start)
	select { // its last words say whether it ran out of memory
	case <-pr.logged:
	case <-time.After(time.Second):
	}
	return resp, true, &crashedError{after: after, cpu: guestCPU(pr, started, cpu0), memory: max(held, rss.peak()), oom: pr.oom.Load()}
}

// killedError describes pr's kill: it ran from start (the guest's start when started) until it
// was killed.
func (pr *proc) killedError(started bool, start time.Time, cpu0 time.Duration, held int64, rss *rssWatch) *killedError {
	after := time.Since(start)
	if at := pr.killAt.Load(); at != 0 {
		after = max(0, time.Unix(0, at).Sub(start))
	}
	return &killedError{
		compiling: !started,
		memory:    killCause(pr.cause.Load()) == causeMemory,
		after:     after,
		cpu:       guestCPU(pr, started, cpu0),
		held:      max(held, rss.peak()),
	}
}

// rssSlack is how far a worker's resident memory may grow past its guest's limit above what it
// held idle before the backstop kills it: the worker's own growth meanwhile (compiled code of a
// module compiled since the base was read, the Go runtime's own structures, freed pages not yet
// returned). The worker's reports are the exact measure; this one catches a worker that cannot
// report (see watchRSS).
const rssSlack = 64 << 20

// rssEvery is how old the idle resident memory of a worker may be when a job starts.
const rssEvery = time.Second

// rssWatch samples a worker's resident memory (/proc/<pid>/statm) every worker.MemoryReportEvery
// while its guest runs, and kills it for its memory when it has grown more than limit over base.
// The worker's own reports stop when a stop-the-world phase of its Go runtime waits for a guest
// that never calls into Go (a table grown, then a tight loop), so the node looks for itself.
// A nil *rssWatch watches nothing.
type rssWatch struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
	grown   int64 // the most it has grown over base
}

func watchRSS(pr *proc, base, limit int64) *rssWatch {
	w := &rssWatch{}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = time.AfterFunc(worker.MemoryReportEvery, func() {
		n, err := residentBytes(pr.pid)
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.stopped || err != nil {
			return
		}
		w.grown = max(w.grown, n-base)
		if n-base > limit {
			pr.killFor(causeMemory)
			return
		}
		w.t.Reset(worker.MemoryReportEvery)
	})
	return w
}

func (w *rssWatch) stop() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.t.Stop()
}

// peak is how much the worker grew over its base, at most, while watched.
func (w *rssWatch) peak() int64 {
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.grown
}

// compileDeadline says whether a compile job that started at cpu0 of its worker's CPU time,
// with a budget of CPU time and after elapsed on the wall clock, may go on, and for how long
// before it is looked at again. A compile's budget is CPU time: on a busy node (other
// compiles, guests, other processes) a compile gets less than a core, and one that needs 19 s
// of CPU took 28 s on a loaded 2-core machine, and was called too expensive by a 30 s budget
// on the wall clock when it was the node that was slow. It may take schemas.CompileWallFactor
// (3) times its budget on the wall clock: past that, or when its CPU time is unknown (not
// Linux), it is stopped; more < 0 then says it was stopped there short of CPU (starved), not
// for its cost.
func compileDeadline(pr *proc, cpu0, budget, elapsed time.Duration) (more time.Duration, ok bool) {
	used, err := processCPU(pr.pid)
	if err != nil {
		return 0, false
	}
	left := budget - (used - cpu0)
	if left <= 0 {
		return 0, false
	}
	if wall := schemas.CompileWallFactor*budget - elapsed; wall > 0 {
		return max(min(left, wall), 10*time.Millisecond), true
	}
	return -1, false
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

// lossReason is the restarts metric's reason for a worker the supervisor killed.
func (pr *proc) lossReason(started bool) string {
	if killCause(pr.cause.Load()) == causeMemory {
		return "memory"
	}
	return reason(started)
}

func reason(started bool) string {
	if started {
		return "deadline"
	}
	return "compile_timeout"
}

// run executes a guest. The worker gets the compile timeout to compile (or find) the module,
// then the job's timeout to run it, and is killed at either if its guest has not finished: the
// guest runs without deadline checks of its own.
func (p *pool) run(ctx context.Context, job *worker.RunJob, compileBudget time.Duration) (*worker.RunResult, error) {
	r, err := p.do(ctx, warmKey(job.ModuleHash, job.MemoryPages), &worker.Request{Run: job}, compileBudget, job.Timeout, worker.MemoryLimit(job.MemoryPages))
	if err != nil {
		return nil, err
	}
	if r.Run == nil {
		return nil, fmt.Errorf("%w: answered a run with another frame", errWorkerCrashed)
	}
	return r.Run, nil
}

// compile compiles a module in a worker, killing it past budget.
func (p *pool) compile(ctx context.Context, job *worker.CompileJob, budget time.Duration) (*worker.CompileResult, error) {
	r, err := p.do(ctx, warmKey(job.ModuleHash, job.MemoryPages), &worker.Request{Compile: job}, budget, budget, 0)
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
	spares := p.spares
	p.spares = nil
	p.mu.Unlock()
	for _, pr := range spares {
		p.stop(pr)
	}
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
// most 100 lines per 10 s, so a worker cannot flood the node's log; seen is called with every
// line, logged or not.
func forwardStderr(log *slog.Logger, pid int, r io.ReadCloser, seen func(string)) {
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
				log.Warn("worker stderr lines dropped", "worker_pid", pid, "dropped", dropped)
			}
			return
		}
		text := string(line)
		seen(text)
		for isPrefix { // skip the rest of an over-long line
			_, isPrefix, err = br.ReadLine()
			if err != nil {
				break
			}
		}
		if time.Since(window) > 10*time.Second {
			if dropped > 0 {
				log.Warn("worker stderr lines dropped", "worker_pid", pid, "dropped", dropped)
			}
			window, lines, dropped = time.Now(), 0, 0
		}
		if lines >= 100 {
			dropped++
			continue
		}
		lines++
		log.Warn("worker stderr", "worker_pid", pid, "line", text)
	}
}
