package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/wasmwiz/wasmwiz/internal/telemetry"
	"github.com/wasmwiz/wasmwiz/schemas"
)

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newExecutionID is "ex_" + 26 base32 characters: 128 random bits, or, with an idempotency
// key, 128 bits of SHA-256(tenant, key), so the same key always names the same execution.
func newExecutionID(tenant, idempotencyKey string) string {
	var b [16]byte
	if idempotencyKey == "" {
		_, _ = rand.Read(b[:])
	} else {
		sum := sha256.Sum256([]byte(tenant + "\x00" + idempotencyKey))
		copy(b[:], sum[:])
	}
	return "ex_" + idEncoding.EncodeToString(b[:])
}

const maxIdemKeyBytes = 255

// execOutcome is what createExecution answers: a final result (200) or an accepted one (202).
type execOutcome struct {
	Execution *schemas.Execution
	Accepted  bool
	Limit     *Decision // nil for idempotent replays, which use no quota
}

// inlineModule is a module that came with the request (module_base64, or /api/execute's form).
type inlineModule struct {
	name string
	wasm []byte
}

// errInlineNeedsWrite refuses an inline module to a key that may not store modules: an inline
// module is stored as one of the tenant's modules, exactly like an upload.
var errInlineNeedsWrite = schemas.Errorf(schemas.CodeForbidden,
	"an inline module is stored as one of your modules and needs the %s scope; upload it with a key that has that scope and run it by module_id", schemas.ScopeModulesWrite)

// createExecution validates, admits (rate limits), publishes and, unless async, waits for one
// execution.
func (g *Server) createExecution(ctx context.Context, p *Principal, req *schemas.ExecutionRequest, idemKey string) (*execOutcome, error) {
	return g.execute(ctx, p, req, idemKey, nil)
}

// execute is createExecution with an optional inline module given as bytes (the compat endpoint),
// which then stands in for module_id and module_base64.
//
// The order matters. Everything that needs no lookup is checked first; then an Idempotency-Key
// already claimed by this body is a replay, which uses no quota; otherwise the rate limit
// admits the request before anything costly happens (storing and compiling an inline module),
// and only an admitted request claims its Idempotency-Key. A refused request claims nothing,
// so sending it again is refused again: only an admitted execution can be replayed.
func (g *Server) execute(ctx context.Context, p *Principal, req *schemas.ExecutionRequest, idemKey string, inline *inlineModule) (*execOutcome, error) {
	g.inflight.Add(1)
	defer g.inflight.Done()
	er, inline, err := prepareExecution(p, req, idemKey, inline)
	if err != nil {
		return nil, err
	}
	// Buckets whose stream elects a leader are tried again up to here (as the queue is): half
	// the request's wait, at most storeRetryFor.
	storeUntil := time.Now().Add(min(storeRetryFor, g.syncWait(p.Tier, er.TimeoutMS)/2))
	// All of the request's ride-outs (the rate limiter, the module, the queue, the queued
	// record too) end there: the client gets its answer within about that.
	ctx = withRideOutBudget(ctx, storeUntil)
	a, done, err := g.admitExecution(ctx, p, req, er, idemKey, inline, storeUntil)
	if err != nil || done != nil {
		return done, err
	}
	return g.runExecution(ctx, p, req.Async, er, a)
}

// prepareExecution checks what needs no lookup and makes the execution request, with the
// inline module decoded from module_base64 if the request carries one.
func prepareExecution(p *Principal, req *schemas.ExecutionRequest, idemKey string, inline *inlineModule) (*schemas.ExecRequest, *inlineModule, error) {
	if len(idemKey) > maxIdemKeyBytes {
		return nil, nil, schemas.Errorf(schemas.CodeInvalid, "Idempotency-Key is longer than %d bytes", maxIdemKeyBytes)
	}
	if inline != nil {
		req.ModuleID, req.ModuleBase64 = "", "" // the compat endpoint sets neither
	}
	er, err := validateRequest(p, req, inline != nil)
	if err != nil {
		return nil, nil, err
	}
	if inline == nil && req.ModuleBase64 != "" {
		wasm, _ := base64.StdEncoding.DecodeString(req.ModuleBase64) // checked by validateRequest
		inline = &inlineModule{name: "inline", wasm: wasm}
	}
	if inline != nil && !p.can(schemas.ScopeModulesWrite) {
		return nil, nil, errInlineNeedsWrite
	}
	er.ExecutionID = newExecutionID(p.TenantID, idemKey)
	return er, inline, nil
}

// admission is what an execution holds once admitted: its rate-limit admission (nil for a
// replay, which uses none) and its Idempotency-Key's claim (nil without a key, or for a replay).
type admission struct {
	p      *Principal
	limit  *Decision
	claim  *idemClaim
	idem   bool // the request has an Idempotency-Key
	replay bool
}

// release gives back the rate-limit admission of a request that will not run.
func (a *admission) release(ctx context.Context, g *Server) {
	if a.limit != nil {
		g.limiter.Release(context.WithoutCancel(ctx), a.p.Tier.Name, a.limit)
		a.limit = nil
	}
}

// admitExecution is the order execute's comment gives: a replay of an admitted request, or
// the result quota and the rate limit, then the module and mounts, then the Idempotency-Key's
// claim. done is set when the request is answered already (a replay of a finished execution).
func (g *Server) admitExecution(ctx context.Context, p *Principal, req *schemas.ExecutionRequest, er *schemas.ExecRequest, idemKey string, inline *inlineModule, storeUntil time.Time) (a *admission, done *execOutcome, err error) {
	a = &admission{p: p, idem: idemKey != ""}
	var bodyHash string // identifies the request as sent, for Idempotency-Key conflict checks
	if a.idem {
		bodyHash = requestHash(req)
		var res *schemas.Result
		if a.replay, res, err = g.findIdempotencyKey(ctx, p, er.ExecutionID, idemKey, bodyHash, storeUntil); err != nil {
			return nil, nil, err
		}
		if res != nil {
			return nil, &execOutcome{Execution: schemas.ExecutionView(res)}, nil
		}
	}
	// A replay of an admitted request uses no quota: it was counted when it was admitted.
	if !a.replay {
		if err := g.checkResultQuota(ctx, p); err != nil { // storage.go
			return nil, nil, err
		}
		if a.limit, err = g.admit(ctx, p); err != nil {
			return nil, nil, err
		}
	}
	if err := g.resolveModule(ctx, p, req, inline, er); err != nil {
		a.release(ctx, g)
		return nil, nil, err
	}
	if err := g.resolveMounts(ctx, p, er); err != nil { // files.go
		a.release(ctx, g)
		return nil, nil, err
	}
	if !a.idem || a.replay {
		return a, nil, nil
	}
	if a.claim, err = g.claimIdempotencyKey(ctx, p, er, idemKey, bodyHash, storeUntil); err != nil {
		a.release(ctx, g)
		return nil, nil, err
	}
	if a.claim == nil {
		// Another request with this key was admitted a moment ago: this one is its replay.
		a.release(ctx, g)
		var res *schemas.Result
		if _, res, err = g.findIdempotencyKey(ctx, p, er.ExecutionID, idemKey, bodyHash, storeUntil); err != nil {
			return nil, nil, err
		}
		if res != nil {
			return nil, &execOutcome{Execution: schemas.ExecutionView(res)}, nil
		}
	}
	return a, nil, nil
}

// runExecution publishes an admitted execution and, unless async, waits for its result.
func (g *Server) runExecution(ctx context.Context, p *Principal, async bool, er *schemas.ExecRequest, a *admission) (*execOutcome, error) {
	wait := g.syncWait(p.Tier, er.TimeoutMS)
	var replies <-chan *nats.Msg
	if !async {
		ch, done := g.waiters.add(er.ExecutionID)
		defer done()
		replies = ch
	}
	// Only a random id is surely new: an idempotency key names the same execution every time,
	// and its result may outlive the key's record.
	if err := g.publishExec(ctx, er, time.Now().Add(wait), !a.idem); err != nil {
		if ue := (*unconfirmedError)(nil); errors.As(err, &ue) {
			// It may still run: it keeps its admission and its Idempotency-Key, whose next
			// send replays it (the queue's duplicate window keeps one copy) or answers its result.
			return nil, err
		}
		a.release(ctx, g)
		if a.claim != nil {
			g.unclaimIdempotencyKey(ctx, a.claim)
		}
		if le := (*limitedError)(nil); errors.As(err, &le) {
			g.rejected(ctx, p, "in_flight", le.err.Message)
		}
		return nil, err
	}
	g.metrics.executionsPublished.WithLabelValues(p.Tier.Name).Inc()
	if async {
		g.recordQueued(ctx, er) // history.go; a synchronous execution's waits for queuedRecordAfter (await)
	}
	// Remaining and Reset are two reads; they run while the execution does.
	var status sync.WaitGroup
	if limit := a.limit; limit != nil && limit.Limit > 0 {
		status.Go(func() {
			if err := g.limiter.Status(context.WithoutCancel(ctx), p.TenantID, p.Tier, limit); err != nil {
				g.log.Warn("rate limit status", "tenant_id", p.TenantID, "err", err)
			}
		})
	}
	out, err := g.await(ctx, er, async, replies, wait)
	status.Wait()
	if err != nil {
		return nil, err // queued, but not recorded: it keeps its admission and its key
	}
	out.Limit = a.limit
	return out, nil
}

// compileWaitForExecution bounds how long an execution waits for its module's compile before
// it is queued anyway.
const compileWaitForExecution = 10 * time.Second

// resolveModule fills in the execution's module: the uploaded one named by module_id, or the
// inline one, stored (and compiled) like an upload.
func (g *Server) resolveModule(ctx context.Context, p *Principal, req *schemas.ExecutionRequest, inline *inlineModule, er *schemas.ExecRequest) error {
	var m *schemas.Module
	var err error
	if inline != nil {
		m, err = g.uploadModule(ctx, p, inline.name, inline.wasm, false)
	} else {
		m, err = g.getModule(ctx, p, req.ModuleID)
	}
	if err == nil && !m.Ready() {
		// A module still compiling: wait for it a while (a refusal is the caller's 422);
		// after that the execution queues with the compile's deadline, and the executor that
		// takes it waits for the compile's shared artifact (artifacts.go), compiling the module
		// itself only if none comes by then (within the tier's compile budget, apart from the
		// execution's own deadline).
		m, err = g.awaitModule(ctx, p, m, min(g.cfg.UploadWait, compileWaitForExecution))
	}
	if err != nil {
		return err
	}
	er.ModuleID, er.ModuleName = m.ID, m.Name
	if m.Status == schemas.ModuleCompiling {
		er.CompileDeadline = m.CompileDeadline // the executor waits for that compile's artifact
	}
	return nil
}

func idempotencyKV(tenant, idemKey string) string {
	return tenant + "." + hex.EncodeToString(sha256Sum(idemKey))
}

// findIdempotencyKey looks up (tenant, key). It reports whether an admitted request with this
// body already claimed it (a replay) and, if that execution finished, its result; the same key
// with another body is a conflict.
func (g *Server) findIdempotencyKey(ctx context.Context, p *Principal, executionID, idemKey, bodyHash string, until time.Time) (bool, *schemas.Result, error) {
	var e jetstream.KeyValueEntry
	err := g.rideOut(ctx, "idempotency store", until, func(ctx context.Context) (err error) {
		e, err = g.idempotency.Get(ctx, idempotencyKV(p.TenantID, idemKey))
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, unavailable("idempotency store", err)
	}
	var prev schemas.IdempotencyRecord
	if err := json.Unmarshal(e.Value(), &prev); err != nil {
		return false, nil, unavailable("idempotency store", err)
	}
	if prev.BodySHA256 != bodyHash {
		return false, nil, schemas.Errorf(schemas.CodeConflict, "Idempotency-Key was already used with a different request body")
	}
	// The same request again: if it finished, answer with its result. Otherwise the caller
	// publishes again; the stream's duplicate window drops the copy if the first one made it in,
	// and an executor never runs a finished execution twice.
	if r, err := g.loadResult(ctx, executionID); err == nil && r.Status.Final() {
		return true, r, nil
	}
	return true, nil, nil
}

// idemClaim is an Idempotency-Key record this request wrote.
type idemClaim struct {
	key      string
	revision uint64
}

// claimIdempotencyKey records (tenant, key) → execution and body for an admitted request. It
// returns nil when another request claimed the key first.
// A try that timed out may have been stored: the next one then finds the key taken, and the
// request goes on as the replay of its own claim (it publishes; the queue keeps one copy).
func (g *Server) claimIdempotencyKey(ctx context.Context, p *Principal, er *schemas.ExecRequest, idemKey, bodyHash string, until time.Time) (*idemClaim, error) {
	rec, _ := json.Marshal(schemas.IdempotencyRecord{ExecutionID: er.ExecutionID, BodySHA256: bodyHash, CreatedAt: er.CreatedAt})
	key := idempotencyKV(p.TenantID, idemKey)
	var rev uint64
	err := g.rideOut(ctx, "idempotency store", until, func(ctx context.Context) (err error) {
		rev, err = g.idempotency.Create(ctx, key, rec)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("idempotency store", err)
	}
	return &idemClaim{key: key, revision: rev}, nil
}

// unclaimIdempotencyKey removes a claim whose execution was not accepted after all (the queue
// refused it), unless the record changed since.
func (g *Server) unclaimIdempotencyKey(ctx context.Context, c *idemClaim) {
	if err := g.idempotency.Delete(context.WithoutCancel(ctx), c.key, jetstream.LastRevision(c.revision)); err != nil {
		g.log.Warn("release idempotency key", "err", err)
	}
}

// admit applies the tier's rate limits; a refusal is a 429 with the real Retry-After.
func (g *Server) admit(ctx context.Context, p *Principal) (*Decision, error) {
	// A refused or failed admission holds nothing, so it can be tried again while the
	// windows' streams elect leaders (a try that timed out after it was counted costs one
	// slot of the window).
	var d *Decision
	err := g.rideOut(ctx, "rate limiter", time.Now().Add(storeRetryFor), func(ctx context.Context) (err error) {
		d, err = g.limiter.Admit(ctx, p.TenantID, p.Tier)
		return err
	})
	if err != nil {
		g.metrics.rateLimitErrors.Inc()
		return nil, err
	}
	if !d.Allowed {
		per := map[string]string{schemas.WindowMinute: "minute", schemas.WindowDay: "day"}[d.Window]
		e := &limitedError{err: &schemas.Error{
			Code:       schemas.CodeRateLimited,
			Message:    fmt.Sprintf("rate limit reached: the %s tier allows %d executions per %s; retry in %ds", p.Tier.Name, d.Limit, per, seconds(d.RetryAfter)),
			RetryAfter: seconds(d.RetryAfter),
		}, d: d}
		g.rejected(ctx, p, "per_"+per, e.err.Message)
		return nil, e
	}
	return d, nil
}

// rejected counts a rate-limit rejection and publishes its ratelimit.rejected event.
func (g *Server) rejected(ctx context.Context, p *Principal, limit, reason string) {
	g.metrics.rateLimited.WithLabelValues(p.Tier.Name, limit).Inc()
	id := "ratelimit.rejected:" + newExecutionID(p.TenantID, "")
	g.publishEvent(ctx, schemas.EventRateLimitRejected, p.TenantID, id, func(e *schemas.Event) {
		e.RateLimit = &schemas.RateLimitEvent{KeyID: p.KeyID, Limit: limit, Reason: reason}
	})
}

// queuedRecordAfter is how long a synchronous execution runs before the gateway writes its
// queued record into the execution history. Most have ended by then, and their executor's final
// record is all a listing needs: the record cost 2 NATS messages and a stream write each (the
// executor's running status is written after as long, for the same reason). An asynchronous
// execution's is written when it is published.
const queuedRecordAfter = 50 * time.Millisecond

// await waits for a published execution's result, up to wait; then the results KV decides.
// An execution answered 202 can be looked up: when its queued record cannot be stored (the
// results bucket without a quorum), the answer is an *unconfirmedError instead, which names it.
func (g *Server) await(ctx context.Context, er *schemas.ExecRequest, async bool, replies <-chan *nats.Msg, wait time.Duration) (*execOutcome, error) {
	if async {
		if err := g.storeQueued(ctx, er); err != nil {
			return nil, &unconfirmedError{id: er.ExecutionID, err: err, queued: true}
		}
		return &execOutcome{Execution: queuedView(er), Accepted: true}, nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	record := time.NewTimer(queuedRecordAfter)
	defer record.Stop()
wait:
	for {
		select {
		case msg := <-replies:
			var r schemas.Result
			if err := json.Unmarshal(msg.Data, &r); err == nil && r.Status.Final() {
				if r.StorageQuotaExceeded {
					g.usageReads.forget(r.TenantID) // storage.go
				}
				return &execOutcome{Execution: schemas.ExecutionView(&r)}, nil
			}
			break wait
		case <-record.C:
			g.recordQueued(ctx, er) // history.go
		case <-timer.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	// The reply did not come in time (or was lost): the results KV is the source of truth. The
	// request's ride-out budget ended long ago (its wait is the execution's own): 2 s here.
	lctx, cancel := context.WithTimeout(withRideOutBudget(context.WithoutCancel(ctx), time.Now().Add(2*time.Second)), 2*time.Second)
	defer cancel()
	if r, err := g.loadResult(lctx, er.ExecutionID); err == nil && r.Status.Final() {
		return &execOutcome{Execution: schemas.ExecutionView(r)}, nil
	}
	serr := g.storeQueued(lctx, er)
	if r, err := g.loadResult(lctx, er.ExecutionID); err == nil {
		return &execOutcome{Execution: schemas.ExecutionView(r), Accepted: !r.Status.Final()}, nil
	}
	if serr != nil {
		return nil, &unconfirmedError{id: er.ExecutionID, err: serr, queued: true}
	}
	return &execOutcome{Execution: queuedView(er), Accepted: true}, nil
}

func sha256Sum(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

func queuedView(er *schemas.ExecRequest) *schemas.Execution {
	return &schemas.Execution{ID: er.ExecutionID, Status: schemas.StatusQueued, ModuleID: er.ModuleID, CreatedAt: er.CreatedAt}
}

// storeQueued records a queued execution unless the executor has written something already.
func (g *Server) storeQueued(ctx context.Context, er *schemas.ExecRequest) error {
	r := schemas.Result{ID: er.ExecutionID, TenantID: er.TenantID, KeyID: er.KeyID, Tier: er.Tier, ModuleID: er.ModuleID, Status: schemas.StatusQueued, ExitCode: -1, CreatedAt: er.CreatedAt}
	b, _ := json.Marshal(r)
	// Until it is stored the execution reads as 404, unless an executor has started it.
	err := g.rideOut(ctx, "results store", time.Now().Add(storeRetryFor), func(ctx context.Context) error {
		_, err := g.results.Create(ctx, er.ExecutionID, b)
		return err
	})
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		g.log.Warn("store queued execution", "execution_id", er.ExecutionID, "err", err)
		return err
	}
	return nil
}

// syncWait is how long a synchronous request waits: the execution's own timeout plus room for
// queueing, bounded by SyncWait when set.
func (g *Server) syncWait(t schemas.Tier, timeoutMS int64) time.Duration {
	w := time.Duration(timeoutMS)*time.Millisecond + 10*time.Second
	if g.cfg.SyncWait > 0 && w > g.cfg.SyncWait {
		w = g.cfg.SyncWait
	}
	return w
}

func (g *Server) publishExec(ctx context.Context, er *schemas.ExecRequest, deadline time.Time, fresh bool) error {
	body, err := json.Marshal(er)
	if err != nil {
		return err
	}
	// The request travels as one NATS message: stdin and inline files must fit in it, whatever
	// the tier's stdin_max says (headers take well under 4 KiB).
	if most := g.nc.MaxPayload() - 4<<10; int64(len(body)) > most {
		return schemas.Errorf(schemas.CodeTooLarge, "the execution request is %d bytes as a message, over the %d the message bus carries (its max_payload), over REST as over NATS; send less stdin or fewer inline files (stdin travels base64-encoded: at most about %d bytes), and put larger inputs in a bundle (POST /v1/bundles over REST, up to the tier's bundle_bytes), mounted, and name the file in stdin_file",
			len(body), most, most*3/4-64<<10)
	}
	msg := nats.NewMsg(schemas.ExecSubject(er.Tier, er.TenantID))
	msg.Data = body
	msg.Header.Set(schemas.HeaderExecutionID, er.ExecutionID)
	msg.Header.Set(schemas.HeaderReply, g.waiters.subject(er.ExecutionID))
	msg.Header.Set(schemas.HeaderDeadline, strconv.FormatInt(deadline.UnixMilli(), 10))
	if fresh {
		msg.Header.Set(schemas.HeaderNewExecution, "true")
	} else {
		// An idempotency key's execution may be published again: the stream's duplicate window
		// drops the copy. A random id is published once, and needs no entry in that window.
		msg.Header.Set(schemas.HeaderMsgID, er.ExecutionID)
	}
	if id := requestIDFrom(ctx); id != "" {
		msg.Header.Set(schemas.HeaderRequestID, id)
	}
	telemetry.Inject(ctx, msg.Header)
	// An executor replies before its ack reaches the server, so a client that sends its next
	// request as soon as the last one answered can find that one still counted in flight for a
	// moment. A refusal by the in-flight cap is therefore tried again briefly before it is final.
	for _, wait := range []time.Duration{2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 0} {
		if err = g.publishExecMsg(ctx, msg, er.ExecutionID, time.Now().Add(time.Until(deadline)/2)); err == nil || !strings.Contains(err.Error(), "maximum messages per subject exceeded") || wait == 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	if err != nil {
		if ue := (*unconfirmedError)(nil); errors.As(err, &ue) {
			return err
		}
		if strings.Contains(err.Error(), "maximum messages per subject exceeded") {
			return &limitedError{err: &schemas.Error{Code: schemas.CodeRateLimited, RetryAfter: 1,
				Message: fmt.Sprintf("too many executions in flight: the %s tier allows %d queued or running at once; retry when one finishes", er.Tier, g.cfg.Tiers[er.Tier].InFlight)}}
		}
		return unavailable("execution queue", err)
	}
	return nil
}

// validateRequest checks everything about a request that needs no lookup, and makes the message
// without its module; with inline set the module comes apart from the request (the compat
// endpoint). It is pure, so it is fuzzed (FuzzValidateRequest).
func validateRequest(p *Principal, req *schemas.ExecutionRequest, inline bool) (*schemas.ExecRequest, error) {
	t := p.Tier
	er := &schemas.ExecRequest{
		TenantID: p.TenantID, KeyID: p.KeyID, Tier: t.Name, Async: req.Async,
		Argv0: req.Argv0, Args: req.Args, Env: req.Env, CreatedAt: time.Now().UTC(), Seed: req.Seed, Clock: req.Clock,
		StdoutMax: t.StdoutMax, StderrMax: t.StdoutMax,
	}
	if !schemas.ValidClock(req.Clock) {
		return nil, schemas.Errorf(schemas.CodeInvalid, "clock must be %q or %q", schemas.ClockFixed, schemas.ClockReal)
	}
	switch {
	case req.TimeoutMS < 0:
		return nil, schemas.Errorf(schemas.CodeInvalid, "timeout_ms must not be negative")
	case req.TimeoutMS > t.WallTime.Milliseconds():
		return nil, schemas.Errorf(schemas.CodeInvalid, "timeout_ms %d is over the %s tier's %d", req.TimeoutMS, t.Name, t.WallTime.Milliseconds())
	case req.TimeoutMS == 0:
		er.TimeoutMS = t.WallTime.Milliseconds()
	default:
		er.TimeoutMS = req.TimeoutMS
	}
	switch {
	case req.MemoryMB < 0:
		return nil, schemas.Errorf(schemas.CodeInvalid, "memory_mb must not be negative")
	case req.MemoryMB > t.MemoryMB:
		return nil, schemas.Errorf(schemas.CodeInvalid, "memory_mb %d is over the %s tier's %d", req.MemoryMB, t.Name, t.MemoryMB)
	case req.MemoryMB == 0:
		er.MemoryMB = t.MemoryMB
	default:
		er.MemoryMB = req.MemoryMB
	}
	args := req.Args
	if req.Argv0 != "" {
		args = append([]string{req.Argv0}, req.Args...) // counted and checked like an arg
	}
	if err := checkArgsEnv(t, args, req.Env); err != nil {
		return nil, err
	}
	switch {
	case req.Stdin != "" && req.StdinBase64 != "":
		return nil, schemas.Errorf(schemas.CodeInvalid, "give stdin or stdin_base64, not both")
	case req.StdinBase64 != "":
		b, err := base64.StdEncoding.DecodeString(req.StdinBase64)
		if err != nil {
			return nil, schemas.Errorf(schemas.CodeInvalid, "stdin_base64 is not valid base64")
		}
		er.Stdin = b
	default:
		er.Stdin = []byte(req.Stdin)
	}
	if len(er.Stdin) > t.StdinMax {
		return nil, schemas.Errorf(schemas.CodeTooLarge, "stdin is %d bytes; the %s tier allows %d: put larger input in a file of a mount or an inline file and name it in stdin_file (wasmwiz run --stdin-file)",
			len(er.Stdin), t.Name, t.StdinMax)
	}
	switch {
	case inline:
	case req.ModuleID != "" && req.ModuleBase64 != "":
		return nil, schemas.Errorf(schemas.CodeInvalid, "give module_id or module_base64, not both")
	case req.ModuleID != "":
		if _, err := schemas.ParseModuleID(req.ModuleID); err != nil {
			return nil, schemas.Errorf(schemas.CodeNotFound, "module %s not found", truncateID(req.ModuleID))
		}
	case req.ModuleBase64 != "":
		if int64(base64.StdEncoding.DecodedLen(len(req.ModuleBase64))) > t.ModuleSize+3 {
			return nil, schemas.Errorf(schemas.CodeTooLarge, "module is over the %s tier's %d bytes", t.Name, t.ModuleSize)
		}
		if _, err := base64.StdEncoding.DecodeString(req.ModuleBase64); err != nil {
			return nil, schemas.Errorf(schemas.CodeInvalid, "module_base64 is not valid base64")
		}
	default:
		return nil, schemas.Errorf(schemas.CodeInvalid, "give module_id (an uploaded module) or module_base64")
	}
	if err := validateFiles(t, req, er); err != nil { // files.go
		return nil, err
	}
	return er, nil
}

// checkArgsEnv holds args and env to the tier's limits: how many of each, and their total bytes
// as the guest sees them (each arg and each NAME=value with a terminating NUL). A worker pays
// for every entry before the guest starts, so these are refused here, with 422.
func checkArgsEnv(t schemas.Tier, args []string, env map[string]string) error {
	if len(args) > t.ArgsMax {
		return schemas.Errorf(schemas.CodeInvalid, "%d args; the %s tier allows %d", len(args), t.Name, t.ArgsMax)
	}
	if len(env) > t.EnvMax {
		return schemas.Errorf(schemas.CodeInvalid, "%d env entries; the %s tier allows %d", len(env), t.Name, t.EnvMax)
	}
	size := 0
	for _, a := range args {
		size += len(a) + 1
		if strings.IndexByte(a, 0) >= 0 {
			return schemas.Errorf(schemas.CodeInvalid, "args must not contain NUL bytes")
		}
	}
	for k, v := range env {
		size += len(k) + len(v) + 2
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return schemas.Errorf(schemas.CodeInvalid, "env names must be non-empty without '=' or NUL, values without NUL")
		}
	}
	if size > t.ArgsEnvBytes {
		return schemas.Errorf(schemas.CodeInvalid, "args and env are %d bytes together; the %s tier allows %d", size, t.Name, t.ArgsEnvBytes)
	}
	return nil
}

func (g *Server) loadResult(ctx context.Context, id string) (*schemas.Result, error) {
	e, err := g.results.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	var r schemas.Result
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (g *Server) getExecution(ctx context.Context, p *Principal, id string) (*schemas.Execution, error) {
	r, err := g.ownResult(ctx, p, id, schemas.Errorf(schemas.CodeNotFound, "execution %s not found", truncateID(id)))
	if err != nil {
		return nil, err
	}
	return schemas.ExecutionView(r), nil
}

// ownResult loads the result of execution id if it belongs to p's tenant; a malformed id, a
// missing result and another tenant's result all answer notFound.
func (g *Server) ownResult(ctx context.Context, p *Principal, id string, notFound error) (*schemas.Result, error) {
	if !schemas.ValidExecutionID(id) {
		return nil, notFound
	}
	var r *schemas.Result
	err := g.rideOut(ctx, "results store", time.Now().Add(storeRetryFor), func(ctx context.Context) (err error) {
		r, err = g.loadResult(ctx, id)
		return err
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, notFound
		}
		return nil, unavailable("results store", err)
	}
	if r.TenantID != p.TenantID {
		return nil, notFound
	}
	return r, nil
}

type executionInput struct {
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255" doc:"the same key with the same body returns the same execution, never running it twice"`
	Body           schemas.ExecutionRequest
}

type executionOutput struct {
	Status             int
	Location           string `header:"Location"`
	RateLimitLimit     string `header:"RateLimit-Limit" doc:"executions allowed in the tightest window (absent on unlimited tiers)"`
	RateLimitRemaining string `header:"RateLimit-Remaining" doc:"executions left in that window"`
	RateLimitReset     string `header:"RateLimit-Reset" doc:"seconds until one more execution is available"`
	Body               *schemas.Execution
}

type executionIDInput struct {
	ID string `path:"id"`
}

// restCreateExecution is POST /v1/executions: 200 with a final result, 202 while it runs.
func (g *Server) restCreateExecution(ctx context.Context, p *Principal, in *executionInput) (*executionOutput, error) {
	out, err := g.createExecution(ctx, p, &in.Body, in.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	status := http.StatusOK
	if out.Accepted {
		status = http.StatusAccepted
	}
	o := &executionOutput{Status: status, Location: "/v1/executions/" + out.Execution.ID, Body: out.Execution}
	o.RateLimitLimit, o.RateLimitRemaining, o.RateLimitReset = out.Limit.headers()
	return o, nil
}

// microCreateExecution is executions.create: the body is the request, the Idempotency-Key a
// header; a result not final yet is answered as 202 (serveMicro).
func (g *Server) microCreateExecution(ctx context.Context, p *Principal, req micro.Request) (any, error) {
	var body schemas.ExecutionRequest
	if err := decodeJSON(req.Data(), &body); err != nil {
		return nil, err
	}
	out, err := g.createExecution(ctx, p, &body, req.Headers().Get(schemas.HeaderIdempotencyKey))
	if err != nil {
		return nil, err
	}
	return out.Execution, nil
}

func (g *Server) restGetExecution(ctx context.Context, p *Principal, in *executionIDInput) (*executionOutput, error) {
	e, err := g.getExecution(ctx, p, in.ID)
	return &executionOutput{Status: http.StatusOK, Body: e}, err
}

// requestHash identifies an execution request's content for Idempotency-Key checks; it hashes
// the decoded request, so formatting differences in the JSON do not matter.
func requestHash(req *schemas.ExecutionRequest) string {
	c := *req
	c.Async = false // how the caller waits is not part of what runs
	b, _ := json.Marshal(&c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
