package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/backoff"
	"github.com/wasmwiz/wasmwiz/internal/history"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

const (
	// fetchWait bounds one pull request. It is also how long a draining node may wait for its
	// last pull requests to end.
	fetchWait = time.Second
	// starveAfter is how many dispatches in a row a tier with waiting work may be passed over
	// for higher tiers before it is served (see pick).
	starveAfter = 3
	// activeWindow is how long after its last request a tier still counts as active: while a
	// tier is active, lower tiers leave it the node's last free slot (see scheduler).
	activeWindow = 10 * time.Second
	// progressEvery is how often the node tells JetStream that a request it holds (queued,
	// running or recording its result) is still being handled (InProgress), well inside the
	// requests' short AckWait (streams.AckWait: 5 s).
	progressEvery = time.Second
	// natsTimeout bounds each KV, object store and publish call of the node.
	natsTimeout = 10 * time.Second
	// askRunningTimeout bounds the question "is anybody running this execution?": only a node
	// running it answers, so silence until then means nobody is.
	askRunningTimeout = time.Second
	// prefetchPerWorker × workers is how many requests of each tier a node holds fetched but not
	// started; it fetches again once half of that has started, so that pulls come in batches.
	prefetchPerWorker = 4
	// finishingPerWorker × workers bounds the executions in flight in a node, counting those
	// whose guest has run and which are recording their results.
	finishingPerWorker = 4
)

// Node is an executor node: it pulls execution requests, runs them in its worker processes and
// records their results, and serves compile requests.
type Node struct {
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	log   *slog.Logger
	m     *metrics
	ready atomic.Bool

	// Set by Run.
	pool      *pool
	mods      *moduleCache
	bundles   *moduleCache          // files.go
	artifacts *artifacts            // compiled modules shared with other nodes (artifacts.go)
	outputs   jetstream.ObjectStore // outputs.go
	results   jetstream.KeyValue
	modRefs   jetstream.KeyValue // the gateways' module records, read while a module compiles (artifacts.go)
	storage   jetstream.KeyValue // per-tenant result usage (storage.go)
	charges   chargeQueues       // one tenant's results charged in batches (storage.go)
	history   history.Batches    // the history records of the executions it ends
	// resultsTTL is the results bucket's TTL: how long a stored result counts against its tenant.
	resultsTTL time.Duration
	sched      *scheduler
	slots      chan struct{} // one per worker: executions until their guest has run
	handles    chan struct{} // executions in flight, including those recording their results
	compile    chan struct{} // bounds compile requests in flight
	// compiling bounds compiles at once to the CompileWorkers workers added for them.
	compiling chan struct{}
	work      sync.WaitGroup

	drainMu  sync.Mutex
	draining bool // set when Run starts draining: no new compile jobs

	heldMu sync.Mutex
	held   map[*queued]time.Time // started requests, with when progress was last reported
	here   map[string]int        // executions whose guest runs here or whose result is being recorded
}

// New checks cfg and prepares a node on nc. It does no I/O: Run makes the cache directories,
// declares the streams and starts the workers.
func New(cfg Config, nc *nats.Conn) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, errors.New("executor: no NATS connection")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("executor: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("executor: metrics: %w", err)
	}
	for name := range cfg.Tiers {
		m.fetchFailures.WithLabelValues(name) // exported as 0 until a pull fails
		m.deadLetters.WithLabelValues(name)
		m.resultsCut.WithLabelValues(name)
	}
	return &Node{cfg: cfg, nc: nc, js: js, log: cfg.Logger.With("role", "executor", "node_id", cfg.NodeID), m: m,
		held: map[*queued]time.Time{}, here: map[string]int{}}, nil
}

// NodeID is the node's id, as reported in results.
func (n *Node) NodeID() string { return n.cfg.NodeID }

// Ready reports whether the node is serving: streams ensured, connected to NATS, at least one
// worker alive, not draining.
func (n *Node) Ready() bool {
	return n.ready.Load() && n.nc.IsConnected() && n.pool.ready()
}

// Run serves until ctx ends, then drains: it stops fetching, gives back (Nak) requests it
// fetched but did not start, lets started executions finish (each is bounded by its deadline
// and the compile timeout), stops the workers and returns.
func (n *Node) Run(ctx context.Context) error {
	// The gateway (or admin bootstrap) makes the streams; an executor may not (SECURITY.md).
	if err := streams.Wait(ctx, n.js, streams.ExecutorLookups(streams.TierNames(n.cfg.Tiers)), func(missing string) {
		n.log.Warn("executor waiting for the streams the gateway or `wasmwiz admin bootstrap` makes", "missing", missing)
	}); err != nil {
		return fmt.Errorf("executor: streams: %w", err)
	}
	var err error
	if n.results, err = n.js.KeyValue(ctx, schemas.BucketResults); err != nil {
		return fmt.Errorf("executor: results bucket: %w", err)
	}
	n.results = streams.LeaderReads(n.js, n.results, n.cfg.Replicas)
	if n.modRefs, err = n.js.KeyValue(ctx, schemas.BucketModuleOwner); err != nil {
		return fmt.Errorf("executor: module records: %w", err)
	}
	n.modRefs = streams.LeaderReads(n.js, n.modRefs, n.cfg.Replicas)
	if st, err := n.results.Status(ctx); err != nil {
		return fmt.Errorf("executor: results bucket: %w", err)
	} else if n.resultsTTL = st.TTL(); n.resultsTTL <= 0 {
		n.resultsTTL = streams.DefaultResultsTTL
	}
	if n.storage, err = n.js.KeyValue(ctx, schemas.BucketStorage); err != nil {
		return fmt.Errorf("executor: storage bucket: %w", err)
	}
	n.storage = streams.LeaderReads(n.js, n.storage, n.cfg.Replicas)
	store, err := n.js.ObjectStore(ctx, schemas.ObjectModules)
	if err != nil {
		return fmt.Errorf("executor: module store: %w", err)
	}
	if n.mods, err = newModuleCache(filepath.Join(n.cfg.CacheDir, "modules"), store, n.m, n.cfg.ModuleCacheBytes); err != nil {
		return fmt.Errorf("executor: module cache: %w", err)
	}
	n.mods.replicated = n.cfg.Replicas > 1
	if err := os.MkdirAll(filepath.Join(n.cfg.CacheDir, "wazero"), 0o755); err != nil {
		return fmt.Errorf("executor: cache dir: %w", err)
	}
	compiled, err := n.js.ObjectStore(ctx, schemas.ObjectCompiled)
	if err != nil {
		return fmt.Errorf("executor: compiled store: %w", err)
	}
	n.artifacts = newArtifacts(n.js, compiled, filepath.Join(n.cfg.CacheDir, "wazero"), n.log, n.m)
	n.mods.onFetch = n.artifacts.fetch
	if err := n.openBundles(ctx); err != nil {
		return err
	}
	if n.outputs, err = n.js.ObjectStore(ctx, schemas.ObjectOutputs); err != nil {
		return fmt.Errorf("executor: outputs store: %w", err)
	}

	n.pool, err = newPool(ctx, poolConfig{
		command:        n.cfg.WorkerCommand,
		env:            n.cfg.WorkerEnv,
		cacheDir:       filepath.Join(n.cfg.CacheDir, "wazero"),
		size:           n.cfg.Workers + n.cfg.CompileWorkers, // executions use Workers (slots), compiles the rest
		spares:         n.cfg.SpareWorkers,
		compileTimeout: n.cfg.warmTimeout(),
		memoryLimit:    n.cfg.WorkerMemoryLimit,
	}, n.log, n.m)
	if err != nil {
		return fmt.Errorf("executor: workers: %w", err)
	}
	defer n.pool.close()

	// Work keeps NATS usable while draining: it is not canceled with ctx.
	work := context.WithoutCancel(ctx)
	n.slots = make(chan struct{}, n.cfg.Workers)
	n.handles = make(chan struct{}, finishingPerWorker*n.cfg.Workers)
	n.compile = make(chan struct{}, 2*n.cfg.Workers)
	n.compiling = make(chan struct{}, n.cfg.CompileWorkers)

	ping, err := n.nc.Subscribe(schemas.SubjectExecutorPing, func(m *nats.Msg) {
		if n.Ready() {
			_ = m.Respond([]byte(n.cfg.NodeID))
		}
	})
	if err != nil {
		return fmt.Errorf("executor: subscribe ping: %w", err)
	}
	defer ping.Unsubscribe()
	compileSub, err := n.nc.QueueSubscribe(schemas.SubjectCompile, schemas.QueueExecutors, func(m *nats.Msg) {
		n.serveCompile(work, m)
	})
	if err != nil {
		return fmt.Errorf("executor: subscribe compile: %w", err)
	}
	defer compileSub.Unsubscribe()
	runningSub, err := n.nc.Subscribe(schemas.SubjectExecutorRunning, func(m *nats.Msg) {
		if n.runsHere(string(m.Data)) {
			_ = m.Respond([]byte(n.cfg.NodeID))
		}
	})
	if err != nil {
		return fmt.Errorf("executor: subscribe running: %w", err)
	}
	defer runningSub.Unsubscribe()

	n.sched = newScheduler(n.cfg.Tiers, n.cfg.Workers)
	n.sched.limit = prefetchPerWorker * n.cfg.Workers
	n.sched.longMax = n.cfg.LongRunning
	for _, q := range n.sched.queues {
		if q.cons, err = n.js.Consumer(ctx, schemas.ExecStream(q.tier.Name), schemas.ExecConsumer(q.tier.Name)); err != nil {
			return fmt.Errorf("executor: consumer %s: %w", schemas.ExecConsumer(q.tier.Name), err)
		}
	}

	stopping := make(chan struct{})
	var loops sync.WaitGroup
	for _, q := range n.sched.queues {
		loops.Go(func() { n.fetchLoop(q, stopping) })
	}
	loops.Go(func() { n.progressLoop(stopping) })
	loops.Go(func() { n.dispatchLoop(work, stopping) })

	n.ready.Store(true)
	n.log.Info("serving", "workers", n.cfg.Workers, "tiers", len(n.cfg.Tiers))
	<-ctx.Done()

	// Drain.
	n.ready.Store(false)
	n.log.Info("draining")
	_ = compileSub.Unsubscribe()
	n.drainMu.Lock()
	n.draining = true
	n.drainMu.Unlock()
	close(stopping)
	loops.Wait() // fetchers end within fetchWait; the dispatcher starts nothing more
	for _, it := range n.sched.takeAll() {
		_ = it.msg.Nak()
	}
	n.work.Wait() // started executions and compiles: each bounded by its own deadlines
	if err := n.nc.Flush(); err != nil {
		n.log.Warn("flush on drain", "err", err)
	}
	n.log.Info("drained")
	return nil
}

// fetchLoop keeps a tier's queue inside the node filled up to its limit, never more: requests
// stay in the stream, where any node can take them, until this node can start them soon. It
// fetches once half the queue has room, so that a busy node pulls in batches rather than one
// request per pull.
func (n *Node) fetchLoop(q *tierQueue, stopping <-chan struct{}) {
	failures := n.m.fetchFailures.WithLabelValues(q.tier.Name)
	var fl failLog
	retry := backoff.Backoff{Min: fetchBackoffMin, Max: fetchBackoffMax, Jitter: true}
	for {
		select {
		case <-stopping:
			return
		default:
		}
		want := n.sched.room(q)
		if want < max(1, n.sched.limit/2) {
			select {
			case <-q.space:
			case <-stopping:
				return
			}
			continue
		}
		err := n.fetchOnce(q, want, stopping)
		if err == nil {
			if d, count := fl.recovered(); count > 0 {
				n.log.Info("fetching again", "tier", q.tier.Name, "failures", count, "after_ms", d.Milliseconds())
			}
			retry.Reset()
			continue
		}
		// Every failure waits, whether Fetch refused the pull or the pull ended in an error
		// (no responders while the consumer has no leader, leadership changed, consumer
		// deleted): without the wait a node with nothing to do spins on a failing pull.
		failures.Inc()
		wait := retry.Next()
		if count, ok := fl.failed(time.Now()); ok {
			n.log.Warn("fetch failed, backing off", "tier", q.tier.Name, "err", err,
				"failures", count, "backoff_ms", wait.Milliseconds())
		}
		select {
		case <-time.After(wait):
		case <-stopping:
			return
		}
	}
}

const (
	// fetchBackoffMin and fetchBackoffMax bound the wait after a failed pull; it doubles on
	// every failure in a row, and jitter (each wait drawn from [d/2, d]) keeps nodes from
	// pulling in step.
	fetchBackoffMin = 100 * time.Millisecond
	fetchBackoffMax = 5 * time.Second
	// fetchLogEvery is how often a failing pull is logged at most (per tier); the lines in
	// between are counted, not written.
	fetchLogEvery = 30 * time.Second
)

// errPullEndedEarly is a pull that ended before its wait with no message and no error: the
// server holds a healthy pull until it expires, so it counts as a failure (it must not spin).
var errPullEndedEarly = errors.New("pull ended early with no message")

// fetchOnce pulls up to want requests of q into the scheduler. An error means the pull failed:
// the pull request was refused, or it ended in an error other than "no messages".
func (n *Node) fetchOnce(q *tierQueue, want int, stopping <-chan struct{}) error {
	start := time.Now()
	batch, err := q.cons.Fetch(want, jetstream.FetchMaxWait(fetchWait))
	if err != nil {
		return err
	}
	got := 0
	for msg := range batch.Messages() {
		got++
		select {
		case <-stopping:
			_ = msg.Nak() // draining: let another node have it at once
			continue
		default:
		}
		n.sched.add(q, msg, n.prepare(msg, true))
	}
	err = batch.Error()
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
		err = nil
	}
	if err == nil && got == 0 && time.Since(start) < fetchWait/2 {
		select {
		case <-stopping: // the connection may be closing under a draining node
		default:
			err = errPullEndedEarly
		}
	}
	return err
}

// failLog rate-limits the log lines of a failure that repeats: the first failure of a run is
// logged, then at most one line per fetchLogEvery, each with the count so far.
type failLog struct {
	count  int       // failures in a row
	since  time.Time // first failure of the run
	logged time.Time // last line written
}

// failed records a failure at now and reports whether to log it, with the count so far.
func (f *failLog) failed(now time.Time) (count int, log bool) {
	if f.count == 0 {
		f.since = now
	}
	f.count++
	if f.count == 1 || now.Sub(f.logged) >= fetchLogEvery {
		f.logged = now
		return f.count, true
	}
	return f.count, false
}

// recovered ends a run of failures and reports how long it lasted and how many there were.
func (f *failLog) recovered() (time.Duration, int) {
	if f.count == 0 {
		return 0, 0
	}
	d, count := time.Since(f.since), f.count
	*f = failLog{}
	return d, count
}

// dispatchLoop starts queued requests as execution slots free up, choosing by priority.
//
// A slot is held from the pick until the guest has run; the result's recording (results KV,
// event, reply, ack: three round trips) happens after the slot is given back, so the workers
// run the next guests meanwhile. handles bounds the executions in flight in all.
func (n *Node) dispatchLoop(work context.Context, stopping <-chan struct{}) {
	for {
		// Wait for work first, then for a slot, so that the choice is made when the slot is
		// free, among everything that arrived meanwhile.
		for {
			ok, retry := n.sched.pickable()
			if ok {
				break
			}
			var recheck <-chan time.Time
			if retry > 0 { // the last slot is kept for a tier that may go quiet meanwhile
				recheck = time.After(retry)
			}
			select {
			case <-n.sched.wake:
			case <-recheck:
			case <-stopping:
				return
			}
		}
		select {
		case n.handles <- struct{}{}:
		case <-stopping:
			return
		}
		select {
		case n.slots <- struct{}{}:
		case <-stopping:
			<-n.handles
			return
		}
		it, q, ok := n.sched.pick()
		if !ok {
			<-n.slots
			<-n.handles
			continue
		}
		n.work.Add(1)
		n.hold(it)
		go func() {
			defer n.work.Done()
			defer func() { <-n.handles }()
			defer n.release(it)
			var once sync.Once
			free := func() { once.Do(func() { n.sched.done(q, it); <-n.slots }) }
			defer free()
			n.handle(work, q, it, free)
		}()
	}
}

// progressLoop tells JetStream that the requests the node holds, waiting or started, are still
// being handled.
func (n *Node) progressLoop(stopping <-chan struct{}) {
	t := time.NewTicker(progressEvery / 2)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			for _, msg := range n.sched.stale(progressEvery) {
				_ = msg.InProgress()
			}
			for _, msg := range n.staleHeld(progressEvery) {
				_ = msg.InProgress() // after the ack it is refused, harmlessly
			}
		case <-stopping:
			return
		}
	}
}

// hold records a started request until release, for progressLoop.
func (n *Node) hold(it *queued) {
	n.heldMu.Lock()
	n.held[it] = it.progress
	n.heldMu.Unlock()
}

func (n *Node) release(it *queued) {
	n.heldMu.Lock()
	delete(n.held, it)
	n.heldMu.Unlock()
}

// staleHeld returns the started requests whose progress was last reported more than d ago and
// marks them reported.
func (n *Node) staleHeld(d time.Duration) []jetstream.Msg {
	now := time.Now()
	n.heldMu.Lock()
	defer n.heldMu.Unlock()
	var out []jetstream.Msg
	for it, at := range n.held {
		if now.Sub(at) >= d {
			n.held[it] = now
			out = append(out, it.msg)
		}
	}
	return out
}

// runHere marks execution id as running on this node until the returned func is called.
func (n *Node) runHere(id string) (done func()) {
	n.heldMu.Lock()
	n.here[id]++
	n.heldMu.Unlock()
	return func() {
		n.heldMu.Lock()
		if n.here[id]--; n.here[id] <= 0 {
			delete(n.here, id)
		}
		n.heldMu.Unlock()
	}
}

func (n *Node) runsHere(id string) bool {
	n.heldMu.Lock()
	defer n.heldMu.Unlock()
	return n.here[id] > 0
}

// runningSomewhere reports whether this node or another one is running execution id now.
func (n *Node) runningSomewhere(id string) bool {
	if n.runsHere(id) {
		return true
	}
	_, err := n.nc.Request(schemas.SubjectExecutorRunning, []byte(id), askRunningTimeout)
	return err == nil
}
