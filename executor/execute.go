package executor

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/executor/worker"
	"github.com/wasmwiz/wasmwiz/internal/history"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmwiz/wasmwiz/internal/backoff"
	"github.com/wasmwiz/wasmwiz/internal/telemetry"
	"github.com/wasmwiz/wasmwiz/schemas"
	"github.com/wasmwiz/wasmwiz/wasmmodule"
)

// handle takes one request from fetch to Ack. Every delivery may be a redelivery. free gives
// the execution slot back; handle calls it once the guest has run.
func (n *Node) handle(ctx context.Context, q *tierQueue, it *queued, free func()) {
	msg := it.msg
	ctx, span := tracer.Start(telemetry.Extract(ctx, msg.Headers()), "execute",
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attribute.String("wasmwiz.tier", q.tier.Name)))
	defer span.End()
	attrs := []any{"tier", q.tier.Name}
	if id := msg.Headers().Get(schemas.HeaderRequestID); id != "" {
		attrs = append(attrs, "request_id", id)
	}
	pre := it.pre
	if pre == nil {
		pre = n.prepare(msg, false)
	}
	req, err := &pre.req, pre.reqErr
	if err != nil {
		n.log.With(attrs...).Error("bad request, terminated", "subject", msg.Subject(),
			"execution_id", msg.Headers().Get(schemas.HeaderExecutionID), "err", err)
		_ = msg.TermWithReason("bad request")
		return
	}
	log := n.log.With(append(attrs, "execution_id", req.ExecutionID, "tenant_id", req.TenantID)...)
	if req.Tier != q.tier.Name {
		// The subject decides the tier (it is what the gateway published under and what
		// the consumer filters on); the body is only informative.
		log.Warn("request tier differs from its subject's", "request_tier", req.Tier)
	}
	err = n.execute(ctx, log, q.tier, msg, req, pre, free)
	if err == nil {
		return
	}
	delivered := uint64(1)
	if meta, merr := msg.Metadata(); merr == nil {
		delivered = meta.NumDelivered
	}
	if delivered >= streams.MaxDeliver {
		log.Error("giving up on request, moving it to the dead letters", "err", err, "deliveries", delivered)
		if derr := n.deadLetter(ctx, msg, err.Error()); derr != nil {
			log.Error("dead letter", "err", derr)
			_ = msg.Nak() // better another try than a lost request
			return
		}
		_ = msg.TermWithReason("moved to " + schemas.SubjectDLQ)
		n.m.deadLetters.WithLabelValues(q.tier.Name).Inc()
		// The request ends with a final result either way: its own if its guest ran (then the
		// event is what failed, and the run must be billed: the event is published once more;
		// if that fails too, reconcile lists a result without an event and wasmwiz dlq replay
		// publishes it), or a given-up one, which never started and bills nothing.
		res := n.giveUp(ctx, log, q.tier, req)
		if res != nil {
			hctx, cancel := context.WithTimeout(ctx, natsTimeout)
			if err := history.Publish(hctx, n.js, res.TenantID, schemas.SummaryOf(res, req.ModuleName)); err != nil {
				log.Warn("history of a dead-lettered execution", "err", err)
			}
			cancel()
		}
		if res != nil && res.StartedAt != nil {
			if err := n.publishEvent(ctx, msg.Headers(), res); err != nil {
				log.Error("event of a dead-lettered execution not published; wasmwiz accounting reconcile lists it", "err", err)
			}
		}
		return
	}
	log.Warn("request failed for an internal reason, will be redelivered", "err", err, "deliveries", delivered)
	_ = msg.NakWithDelay(time.Duration(delivered) * time.Second)
}

// giveUp stores a final failed result for a request moved to the dead letters, if it can, so
// that readers of the result see an end rather than "running" forever. It returns the final
// result the execution ends with: one stored before (kept) or the given-up one; nil if neither
// could be stored or read.
func (n *Node) giveUp(ctx context.Context, log *slog.Logger, tier schemas.Tier, req *schemas.ExecRequest) *schemas.Result {
	now := time.Now().UTC()
	res := &schemas.Result{
		ID: req.ExecutionID, TenantID: req.TenantID, KeyID: req.KeyID, Tier: tier.Name, ModuleID: req.ModuleID,
		Status: schemas.StatusFailed, ExitCode: -1, Error: "internal error: the execution could not be completed",
		CreatedAt: req.CreatedAt, FinishedAt: &now, NodeID: n.cfg.NodeID,
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	entry, err := n.results.Get(pctx, req.ExecutionID)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = n.results.Create(pctx, req.ExecutionID, b)
	case err == nil:
		var prev schemas.Result
		if json.Unmarshal(entry.Value(), &prev) == nil && prev.Status.Final() {
			return &prev
		}
		_, err = n.results.Update(pctx, req.ExecutionID, b, entry.Revision())
	}
	if err != nil {
		log.Warn("store given-up result", "err", err)
		return nil
	}
	return res
}

func checkRequest(r *schemas.ExecRequest) error {
	switch {
	case !schemas.ValidExecutionID(r.ExecutionID):
		return fmt.Errorf("bad execution id %q", r.ExecutionID)
	case !schemas.ValidToken(r.TenantID):
		return fmt.Errorf("bad tenant id %q", r.TenantID)
	}
	if _, err := schemas.ParseModuleID(r.ModuleID); err != nil {
		return err
	}
	return nil
}

// execute runs one request and records it. An error means an internal failure (NATS, the
// pool): the request should be delivered again; everything about the guest is a Result.
func (n *Node) execute(ctx context.Context, log *slog.Logger, tier schemas.Tier, msg jetstream.Msg, req *schemas.ExecRequest, pre *prepared, free func()) error {
	// A result already stored means an earlier delivery got as far as recording it: finish
	// what that delivery may not have (event, reply, ack) without running the guest again.
	entry, err := pre.result(ctx, n.results, req.ExecutionID)
	switch {
	case err == nil:
		var prev schemas.Result
		if jerr := json.Unmarshal(entry.Value(), &prev); jerr == nil && prev.Status.Final() {
			log.Info("redelivered execution already has a result", "status", prev.Status)
			return n.finish(ctx, log, msg, req.ModuleName, &prev, false)
		}
		if prev.Status == schemas.StatusRunning {
			if done, err := n.awaitElsewhere(ctx, log, msg, req.ExecutionID, req.ModuleName); done {
				return err
			}
		}
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return fmt.Errorf("read result: %w", err)
	case isRedelivery(msg):
		// No result and no "running" yet (a short guest never writes one), but this is a
		// redelivery: the delivery before it may still be on another node, its guest done and
		// its result being stored (JetStream redelivers when progress reports are lost with a
		// consumer leader). Wait for that one rather than run the guest a second time.
		if done, err := n.awaitElsewhere(ctx, log, msg, req.ExecutionID, req.ModuleName); done {
			return err
		}
	}

	started := time.Now().UTC()
	res := &schemas.Result{
		ID:         req.ExecutionID,
		TenantID:   req.TenantID,
		KeyID:      req.KeyID,
		Tier:       tier.Name,
		ModuleID:   req.ModuleID,
		Status:     schemas.StatusRunning,
		ExitCode:   -1,
		StdinBytes: int64(len(req.Stdin)),
		CreatedAt:  req.CreatedAt,
		StartedAt:  &started,
		NodeID:     n.cfg.NodeID,
	}
	if !req.CreatedAt.IsZero() {
		n.m.queueWait.WithLabelValues(tier.Name).Observe(max(0, started.Sub(req.CreatedAt).Seconds()))
	}
	defer n.runHere(req.ExecutionID)()
	stopRunning := n.markRunning(log, res)
	err = n.run(ctx, log, tier, req, res)
	stopRunning()
	free() // the worker is done with it; recording the result needs no slot
	if err != nil {
		return err
	}
	finished := time.Now().UTC()
	res.FinishedAt = &finished
	n.m.executions.WithLabelValues(tier.Name, string(res.Status)).Inc()
	n.m.duration.WithLabelValues(tier.Name).Observe(res.DurationMS / 1000)
	// One line per execution at debug: at thousands per second an info line each would cost more
	// than the rest of the node's bookkeeping. The record of every execution is its event.
	log.Debug("execution finished", "status", res.Status, "exit_code", res.ExitCode,
		"duration_ms", res.DurationMS, "cpu_ms", res.CPUMS, "memory_peak_bytes", res.MemoryPeakBytes)
	return n.finish(ctx, log, msg, req.ModuleName, res, true)
}

// awaitElsewhere handles a delivery of an execution that another delivery still runs, here or
// on another node: JetStream redelivers a request whose progress reports it missed (a consumer
// leader change loses a few seconds of them). Rather than run the guest a second time, it waits
// for that run's result and finishes with it (reply, event, ack: all idempotent). done is false
// when nobody runs it any more (its node died after writing "running"): then this delivery runs
// it. It keeps its execution slot meanwhile, which is rare enough not to matter.
func (n *Node) awaitElsewhere(ctx context.Context, log *slog.Logger, msg jetstream.Msg, id, moduleName string) (done bool, err error) {
	if !n.runningSomewhere(id) {
		return false, nil
	}
	log.Info("redelivered execution is still running elsewhere; waiting for its result")
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return true, ctx.Err()
		}
		running := n.runningSomewhere(id)
		gctx, cancel := context.WithTimeout(ctx, natsTimeout)
		entry, err := n.results.Get(gctx, id)
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return true, fmt.Errorf("read result: %w", err)
		}
		var prev schemas.Result
		if err == nil && json.Unmarshal(entry.Value(), &prev) == nil && prev.Status.Final() {
			return true, n.finish(ctx, log, msg, moduleName, &prev, false)
		}
		if !running {
			log.Warn("the execution's other run ended without a result; running it here")
			return false, nil
		}
	}
}

// runningAfter is how long an execution runs before its "running" status is written. Most
// executions finish sooner, and their final result is the only write.
const runningAfter = 50 * time.Millisecond

// markRunning writes res's "running" status if the execution is still running after
// runningAfter. The returned stop must be called before the final result is stored: it waits
// for a status write under way to be sent, and publishes on one connection keep their order, so
// "running" never lands after the final result. Nothing else depends on it: it is not waited for.
func (n *Node) markRunning(log *slog.Logger, res *schemas.Result) (stop func()) {
	status := *res // run fills res meanwhile
	sent := make(chan struct{})
	t := time.AfterFunc(runningAfter, func() {
		defer close(sent)
		b, err := json.Marshal(&status)
		if err == nil {
			_, err = n.js.PublishAsync("$KV."+schemas.BucketResults+"."+status.ID, b)
		}
		if err != nil {
			log.Warn("write running status", "err", err)
		}
	})
	return func() {
		if !t.Stop() {
			<-sent
		}
	}
}

// run fills res with the outcome of the guest. An error is an internal failure.
func (n *Node) run(ctx context.Context, log *slog.Logger, tier schemas.Tier, req *schemas.ExecRequest, res *schemas.Result) error {
	fail := func(status schemas.Status, msg string) {
		res.Status, res.ExitCode, res.Error = status, -1, msg
	}
	if len(req.Stdin) > tier.StdinMax {
		fail(schemas.StatusFailed, fmt.Sprintf("stdin is larger than the tier allows (%d bytes)", tier.StdinMax))
		return nil
	}
	hexDigest, _ := schemas.ParseModuleID(req.ModuleID) // checked by checkRequest
	mctx, cancel := context.WithTimeout(ctx, natsTimeout)
	path, err := n.mods.get(mctx, hexDigest, tier.ModuleSize)
	cancel()
	var merr *moduleError
	switch {
	case errors.Is(err, errModuleNotFound):
		fail(schemas.StatusFailed, "module not found")
		return nil
	case errors.As(err, &merr):
		fail(schemas.StatusFailed, merr.msg)
		return nil
	case err != nil:
		return fmt.Errorf("load module: %w", err)
	}
	defer n.mods.release(hexDigest)
	if req.CompileDeadline != nil {
		// The module's upload is compiling it, here or on another node: its artifact is
		// worth waiting for rather than compiling the module a second time (artifacts.go).
		if refused := n.awaitCompile(ctx, log, req.TenantID, hexDigest, *req.CompileDeadline); refused != "" {
			fail(schemas.StatusFailed, worker.InvalidModulePrefix+refused)
			return nil
		}
	}

	job := &worker.RunJob{
		ModulePath:  path,
		ModuleHash:  hexDigest,
		Name:        cmp.Or(req.Argv0, req.ModuleName),
		Args:        req.Args,
		Stdin:       req.Stdin,
		StdinFile:   req.StdinFile,
		Timeout:     clampDuration(time.Duration(req.TimeoutMS)*time.Millisecond, tier.WallTime),
		MemoryPages: uint32(clampInt(req.MemoryMB, tier.MemoryMB) * 16), // 16 pages of 64 KiB per MiB
		StdoutMax:   clampInt(req.StdoutMax, tier.StdoutMax),
		StderrMax:   clampInt(req.StderrMax, tier.StdoutMax),
		Seed:        req.Seed,
		RealClock:   req.Clock == schemas.ClockReal,
	}
	if job.Name == "" {
		job.Name = "main.wasm"
	}
	for _, k := range slices.Sorted(maps.Keys(req.Env)) {
		job.Env = append(job.Env, k+"="+req.Env[k])
	}
	releaseFiles, msg, err := n.guestFiles(ctx, tier, req, job) // files.go
	if err != nil {
		return err
	} else if msg != "" {
		fail(schemas.StatusFailed, msg)
		return nil
	}
	defer releaseFiles()
	budget := n.cfg.compileBudget(tier, n.mods.size(hexDigest))
	wres, err := n.pool.run(ctx, job, budget)
	var (
		killed  *killedError
		crashed *crashedError
	)
	switch {
	case errors.As(err, &killed):
		if !killed.compiling {
			if st := killed.started; st == nil {
				n.m.compiledHits.Inc()
			} else {
				n.compiled(st.CompileCacheHit, st.CompileDuration)
			}
		}
		switch {
		case killed.compiling:
			fail(schemas.StatusKilled, "module too expensive to compile: compilation ran past its budget of "+budget.String()+" and was killed with its worker")
		case killed.memory:
			fail(schemas.StatusKilled, worker.MemoryExceeded(killed.held, int64(job.MemoryPages)*65536))
		default:
			// The deadline's only enforcement: the guest runs without checks of its own.
			fail(schemas.StatusTimedOut, timeLimitExceeded(job.Timeout, tier.Name, tier.WallTime))
			if o := killed.output; o != nil { // what it had printed until just before
				res.Stdout, res.Stderr = o.Stdout, o.Stderr
				res.StdoutBytes, res.StderrBytes = o.StdoutBytes, o.StderrBytes
				res.StdoutTruncated, res.StderrTruncated = o.StdoutBytes > int64(len(o.Stdout)), o.StderrBytes > int64(len(o.Stderr))
			}
		}
		// Billed up to the kill: its wall time, its CPU time and the most it held.
		res.DurationMS, res.CPUMS, res.MemoryPeakBytes = ms(killed.after), ms(killed.cpu), killed.held
		if killed.memory || killed.compiling {
			log.Warn("worker killed", "err", err)
		} else {
			log.Debug("worker killed at the deadline", "err", err)
		}
		return nil
	case errors.As(err, &crashed):
		// The guest ran until its worker died (often of its memory backstop): report that
		// time, as for a kill, so that a crash is not a free run.
		if crashed.oom {
			fail(schemas.StatusKilled, "memory limit exceeded: the guest made its worker run out of memory")
		} else {
			fail(schemas.StatusKilled, "worker crashed")
		}
		res.DurationMS, res.CPUMS, res.MemoryPeakBytes = ms(crashed.after), ms(crashed.cpu), crashed.memory
		log.Warn("worker crashed during execution", "err", err)
		return nil
	case errors.Is(err, errWorkerCrashed):
		fail(schemas.StatusKilled, "worker crashed")
		log.Warn("worker crashed during execution", "err", err)
		return nil
	case err != nil:
		return fmt.Errorf("worker pool: %w", err)
	}
	n.compiled(wres.CompileCacheHit, wres.CompileDuration)
	res.Status, res.ExitCode, res.Error = wres.Status, wres.ExitCode, wres.Error
	if msg, ok := strings.CutPrefix(res.Error, worker.InvalidModulePrefix); ok {
		res.Error = worker.InvalidModulePrefix + wasmmodule.ExplainCompileError(msg)
	}
	res.Stdout, res.Stderr = wres.Stdout, wres.Stderr
	res.StdoutTruncated, res.StderrTruncated = wres.StdoutTruncated, wres.StderrTruncated
	res.StdoutBytes, res.StderrBytes = wres.StdoutBytes, wres.StderrBytes
	if req.StdinFile != "" {
		res.StdinBytes = wres.StdinFileBytes // what the guest read of it, billed as stdin
	}
	res.DurationMS = ms(wres.Duration)
	res.CPUMS = ms(wres.CPU)
	res.MemoryPeakBytes = wres.MemoryPeakBytes
	filesResult(res, wres)
	log.Debug("worker stats", "compile_cache_hit", wres.CompileCacheHit,
		"compile_ms", ms(wres.CompileDuration), "worker_runtime_bytes", wres.RuntimeBytes)
	return nil
}

// compiled counts how a run found its module: compiled already (hit), or compiled in took.
func (n *Node) compiled(hit bool, took time.Duration) {
	if hit {
		n.m.compiledHits.Inc()
	} else {
		n.m.cacheMisses.WithLabelValues("compiled").Inc()
		n.m.compileDuration.Observe(took.Seconds())
	}
}

// finish records a final result, in this order: results KV (the source of truth), reply,
// event, ack. Each step is idempotent, so a crash between two steps is repaired by the
// redelivery that follows: the request is acked only once its event is stored. The reply goes
// out as soon as the result is durable; the event, which only accounting and audit readers
// wait for, follows. store is false when the result came from the KV.
func (n *Node) finish(ctx context.Context, log *slog.Logger, msg jetstream.Msg, moduleName string, res *schemas.Result, store bool) error {
	var objects int64 // bytes of stdout and stderr stored as objects
	if store {
		objects = n.storeOutputs(ctx, log, res) // outputs.go
	}
	b, err := fitResult(res, int(n.nc.MaxPayload())-16<<10) // room for headers and the KV's envelope
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if store {
		// The result's bytes count against its tenant's result_bytes first (storage.go), riding
		// out an election like the store below; the charge's errors wrap JetStream's.
		whole, wholeB := res, b
		if err := storeWithRetry(ctx, storeResultFor, func(ctx context.Context) error {
			var cerr error
			res, b, cerr = n.chargeResult(ctx, whole, wholeB, objects)
			return cerr
		}); err != nil {
			return err
		}
		// The guest has run: a result that cannot be stored now means running it again later,
		// so the store rides out a results bucket without a leader (an election takes seconds)
		// for up to storeResultFor, the request held meanwhile (progress goes on).
		if err := storeWithRetry(ctx, storeResultFor, func(ctx context.Context) error {
			_, err := n.results.Put(ctx, res.ID, b)
			return err
		}); err != nil {
			return fmt.Errorf("store result: %w", err)
		}
	}
	n.reply(log, msg.Headers(), res, b)
	// The history record goes out beside the event, with the tenant's other records ending at
	// the same moment (history.Batches); both must be stored before the ack, so that a redelivery
	// repeats whichever was lost (the event is stored once: Nats-Msg-Id; a record stored twice
	// is merged when listed).
	hist := n.history.Record(n.js, res.TenantID, schemas.SummaryOf(res, moduleName))
	if err := n.publishEvent(ctx, msg.Headers(), res); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	if err := hist.Wait(wctx); err != nil {
		return fmt.Errorf("record history: %w", err)
	}
	// Ack, not AckSync: a lost ack only means a redelivery, which finds the stored result and
	// repeats the idempotent steps above without running the guest; waiting for the server's
	// confirmation would add a round trip to every execution.
	if err := msg.Ack(); err != nil {
		log.Warn("ack", "err", err)
	}
	return nil
}

// eventType is execution.completed when the guest ran to an exit code, execution.failed
// otherwise (trap, timeout, kill, a module that could not run).
func eventType(res *schemas.Result) string {
	if res.Status == schemas.StatusSucceeded || (res.Status == schemas.StatusFailed && res.ExitCode >= 0) {
		return schemas.EventExecutionCompleted
	}
	return schemas.EventExecutionFailed
}

func (n *Node) publishEvent(ctx context.Context, h nats.Header, res *schemas.Result) error {
	typ := eventType(res)
	ev := schemas.Event{
		ID:       res.ID + ":" + typ,
		Type:     typ,
		Version:  schemas.EventVersion,
		TenantID: res.TenantID,
		Execution: &schemas.ExecutionEvent{
			ExecutionID:     res.ID,
			KeyID:           res.KeyID,
			Tier:            res.Tier,
			ModuleID:        res.ModuleID,
			Status:          res.Status,
			ExitCode:        res.ExitCode,
			WallMS:          res.DurationMS,
			CPUMS:           res.CPUMS,
			MemoryPeakBytes: res.MemoryPeakBytes,
			StdinBytes:      res.StdinBytes,
			StdoutBytes:     res.StdoutBytes,
			StderrBytes:     res.StderrBytes,
			QueuedAt:        res.CreatedAt,
			NodeID:          res.NodeID,
		},
	}
	if res.StartedAt != nil {
		ev.Execution.StartedAt = *res.StartedAt
	}
	if res.FinishedAt != nil {
		ev.Time = *res.FinishedAt
		ev.Execution.FinishedAt = *res.FinishedAt
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	m := nats.NewMsg(schemas.EventSubject(typ, res.TenantID))
	m.Data = b
	m.Header.Set(schemas.HeaderExecutionID, res.ID)
	if id := h.Get(schemas.HeaderRequestID); id != "" {
		m.Header.Set(schemas.HeaderRequestID, id)
	}
	telemetry.Inject(ctx, m.Header)
	pctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	// The event id as Nats-Msg-Id: a redelivered execution publishes the same fact again and
	// the stream stores it once.
	if _, err := n.js.PublishMsg(pctx, m, jetstream.WithMsgID(ev.ID)); err != nil {
		return fmt.Errorf("publish event: %w", err)
	}
	return nil
}

// reply sends the result to the requester's inbox if somebody may still be waiting.
func (n *Node) reply(log *slog.Logger, h nats.Header, res *schemas.Result, body []byte) {
	to := h.Get(schemas.HeaderReply)
	if to == "" {
		return
	}
	if d := h.Get(schemas.HeaderDeadline); d != "" {
		if msec, err := strconv.ParseInt(d, 10, 64); err == nil && time.Now().UnixMilli() > msec {
			return // nobody waits any more; the result is in the KV
		}
	}
	m := nats.NewMsg(to)
	m.Data = body
	m.Header.Set(schemas.HeaderExecutionID, res.ID)
	if id := h.Get(schemas.HeaderRequestID); id != "" {
		m.Header.Set(schemas.HeaderRequestID, id)
	}
	if err := n.nc.PublishMsg(m); err != nil {
		log.Warn("reply", "err", err)
	}
}

// deadLetter copies a request to the dead letters with the reason it was given up on.
func (n *Node) deadLetter(ctx context.Context, msg jetstream.Msg, reason string) error {
	m := nats.NewMsg(schemas.SubjectDLQ)
	m.Data = msg.Data()
	for k, v := range msg.Headers() {
		m.Header[k] = slices.Clone(v)
	}
	m.Header.Set(schemas.HeaderDLQReason, reason)
	m.Header.Set(schemas.HeaderDLQSubject, msg.Subject())
	pctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	_, err := n.js.PublishMsg(pctx, m)
	return err
}

// fitResult encodes res, cutting its output further if the JSON would not fit in one NATS
// message of limit bytes (servers default to 1 MiB; base64 makes 1 MiB of stdout 1.33 MiB).
// The cut output is marked truncated; the byte counts still say what the guest wrote.
func fitResult(res *schemas.Result, limit int) ([]byte, error) {
	for {
		b, err := json.Marshal(res)
		if err != nil || len(b) <= limit {
			return b, err
		}
		over := len(b) - limit
		cut := over*3/4 + 1024 // base64 expands by 4/3
		if len(res.Stdout)+len(res.Stderr)+outputBytes(res) == 0 {
			// Only the output files' records are left: the last ones go, roughly as many as
			// the excess takes (their paths are bounded, but a small max_payload may still not
			// hold a thousand of them). Never a result too big to store: that would run the
			// guest again at each redelivery.
			if len(res.Files) == 0 {
				return b, nil
			}
			drop := min(len(res.Files), 1+len(res.Files)*over/len(b))
			res.Files, res.FilesTruncated = res.Files[:len(res.Files)-drop], true
			continue
		}
		if cutOutputFiles(res, cut) { // files.go
			continue
		}
		// A stored output's inline part is only a preview: cutting it loses nothing.
		if len(res.Stdout) >= len(res.Stderr) {
			res.Stdout = res.Stdout[:max(0, len(res.Stdout)-cut)]
			res.StdoutTruncated = res.StdoutTruncated || !res.StdoutStored
		} else {
			res.Stderr = res.Stderr[:max(0, len(res.Stderr)-cut)]
			res.StderrTruncated = res.StderrTruncated || !res.StderrStored
		}
	}
}

// timeLimitExceeded is the error of an execution stopped at its deadline: it names the limit
// and where it came from, so that a user sees whether asking for more, or a higher tier, would
// help.
func timeLimitExceeded(limit time.Duration, tier string, wallTime time.Duration) string {
	if limit < wallTime {
		return fmt.Sprintf("execution exceeded its time limit of %v, the request's timeout_ms (the %s tier allows %v)", limit, tier, wallTime)
	}
	return fmt.Sprintf("execution exceeded its time limit of %v, the %s tier's wall time", limit, tier)
}

func clampDuration(asked, limit time.Duration) time.Duration {
	if asked <= 0 || asked > limit {
		return limit
	}
	return asked
}

func clampInt(asked, limit int) int {
	if asked <= 0 || asked > limit {
		return limit
	}
	return asked
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// precheckFresh is how old a result lookup made while the request waited in the node may be
// when the request starts; an older one is made again. Every delivery reads the results KV
// before running the guest (see execute); reading it while the request waits for a slot takes
// that round trip out of the slot. It widens the window in which another delivery of the same
// execution could store a result unseen by at most this much, against the guest's whole run
// time that the read-then-run order leaves open anyway.
const precheckFresh = 50 * time.Millisecond

// prepared is a fetched request made ready to start while it waits for a slot: decoded,
// checked, and its stored result looked up, so that a slot, once given, goes straight to a
// worker.
type prepared struct {
	req    schemas.ExecRequest
	reqErr error // the request is malformed: it is terminated, never run

	done  chan struct{} // closed when the lookup has answered (or was not needed)
	none  bool          // surely no stored result: the first delivery of a new execution
	entry jetstream.KeyValueEntry
	err   error
	at    time.Time // when the lookup answered
}

// prepare decodes and checks msg and, if lookup and it is well formed, starts looking up its
// stored result. The first delivery of an execution id the gateway drew at random
// (HeaderNewExecution) has none to look up: nothing has run it yet.
func (n *Node) prepare(msg jetstream.Msg, lookup bool) *prepared {
	p := &prepared{done: make(chan struct{})}
	p.reqErr = json.Unmarshal(msg.Data(), &p.req)
	if p.reqErr == nil {
		p.reqErr = checkRequest(&p.req)
	}
	if p.reqErr == nil {
		// The subject is what the stream's per-tenant cap counted; the body must agree.
		if _, tenant, err := schemas.ParseExecSubject(msg.Subject()); err != nil || tenant != p.req.TenantID {
			p.reqErr = fmt.Errorf("request of tenant %q on subject %q", p.req.TenantID, msg.Subject())
		}
	}
	if p.reqErr != nil || !lookup {
		close(p.done)
		return p
	}
	if msg.Headers().Get(schemas.HeaderNewExecution) == "true" {
		if meta, err := msg.Metadata(); err == nil && meta.NumDelivered == 1 {
			p.none = true
			close(p.done)
			return p
		}
	}
	go func() {
		defer close(p.done)
		ctx, cancel := context.WithTimeout(context.Background(), natsTimeout)
		defer cancel()
		p.entry, p.err = n.results.Get(ctx, p.req.ExecutionID)
		p.at = time.Now()
	}()
	return p
}

// result is the stored result of execution id: the lookup's answer when it is fresh, else a
// new read.
func (p *prepared) result(ctx context.Context, results jetstream.KeyValue, id string) (jetstream.KeyValueEntry, error) {
	select {
	case <-p.done:
		if p.none {
			return nil, jetstream.ErrKeyNotFound
		}
		if !p.at.IsZero() && time.Since(p.at) <= precheckFresh {
			return p.entry, p.err
		}
	case <-ctx.Done():
	}
	gctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	return results.Get(gctx, id)
}

// storeResultFor bounds how long a run's result is tried again while the results bucket cannot
// take it.
const storeResultFor = 30 * time.Second

// isRedelivery reports whether msg has been delivered before.
func isRedelivery(msg jetstream.Msg) bool {
	meta, err := msg.Metadata()
	return err == nil && meta.NumDelivered > 1
}

// storeWithRetry runs op, each try bounded by natsTimeout/2, again with backoff while JetStream
// cannot answer for the moment (no responders, a timeout, 503 while a stream elects a leader),
// until it succeeds, fails otherwise or for has passed.
func storeWithRetry(ctx context.Context, total time.Duration, op func(context.Context) error) error {
	until := time.Now().Add(total)
	b := backoff.Backoff{Min: 100 * time.Millisecond, Max: time.Second, Jitter: true}
	for {
		tctx, cancel := context.WithTimeout(ctx, natsTimeout/2)
		err := op(tctx)
		cancel()
		if err == nil || !unavailable(err) || ctx.Err() != nil || time.Now().After(until) {
			return err
		}
		if !backoff.Sleep(ctx, b.Next()) {
			return err
		}
	}
}

// unavailable reports whether err says JetStream could not answer for the moment rather than
// that it refused.
func unavailable(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		(errors.As(err, &apiErr) && apiErr.Code == 503)
}
