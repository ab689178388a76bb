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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

const (
	maxArgs         = 1024
	maxArgEnvBytes  = 64 << 10
	maxIdemKeyBytes = 255
)

// execOutcome is what createExecution answers: a final result (200) or an accepted one (202).
type execOutcome struct {
	Execution *schemas.Execution
	Accepted  bool
	Limit     *Decision // nil for idempotent replays, which use no quota
}

// createExecution validates, admits (rate limits), publishes and, unless async, waits for one
// execution.
func (g *Gateway) createExecution(ctx context.Context, p *Principal, req *schemas.ExecutionRequest, idemKey string) (*execOutcome, error) {
	g.inflight.Add(1)
	defer g.inflight.Done()
	if len(idemKey) > maxIdemKeyBytes {
		return nil, schemas.Errorf(schemas.CodeInvalid, "Idempotency-Key is longer than %d bytes", maxIdemKeyBytes)
	}
	var bodyHash string // identifies the request as sent, for Idempotency-Key conflict checks
	if idemKey != "" {
		bodyHash = requestHash(req)
	}
	er, err := g.buildRequest(ctx, p, req)
	if err != nil {
		return nil, err
	}
	er.ExecutionID = newExecutionID(p.TenantID, idemKey)
	replay := false
	if idemKey != "" {
		var done *schemas.Result
		if replay, done, err = g.claimIdempotencyKey(ctx, p, er, idemKey, bodyHash); err != nil {
			return nil, err
		}
		if done != nil {
			return &execOutcome{Execution: schemas.ExecutionView(done)}, nil
		}
	}
	// A replay of an accepted request uses no quota: it was counted when first accepted.
	var limit *Decision
	if !replay {
		if limit, err = g.admit(ctx, p); err != nil {
			return nil, err
		}
	}
	wait := g.syncWait(p.Tier, er.TimeoutMS)
	var replies <-chan *nats.Msg
	if !req.Async {
		ch, done := g.waiters.add(er.ExecutionID)
		defer done()
		replies = ch
	}
	// Only a random id is surely new: an idempotency key names the same execution every time,
	// and its result may outlive the key's record.
	if err := g.publishExec(ctx, er, time.Now().Add(wait), idemKey == ""); err != nil {
		if limit != nil {
			g.limiter.Release(context.WithoutCancel(ctx), p.Tier.Name, limit)
		}
		if le := (*limitedError)(nil); errors.As(err, &le) {
			g.rejected(ctx, p, "in_flight", le.err.Message)
		}
		return nil, err
	}
	g.metrics.executionsPublished.WithLabelValues(p.Tier.Name).Inc()
	// Remaining and Reset are two reads; they run while the execution does.
	var status sync.WaitGroup
	if limit != nil && limit.Limit > 0 {
		status.Go(func() {
			if err := g.limiter.Status(context.WithoutCancel(ctx), p.TenantID, p.Tier, limit); err != nil {
				g.log.Warn("rate limit status", "tenant_id", p.TenantID, "err", err)
			}
		})
	}
	out := g.await(ctx, er, req.Async, replies, wait)
	status.Wait()
	out.Limit = limit
	return out, nil
}

// claimIdempotencyKey records (tenant, key) → execution and body. It reports whether the key
// was already used for this body (a replay) and, if that execution finished, its result.
func (g *Gateway) claimIdempotencyKey(ctx context.Context, p *Principal, er *schemas.ExecRequest, idemKey, bodyHash string) (bool, *schemas.Result, error) {
	rec, _ := json.Marshal(schemas.IdempotencyRecord{ExecutionID: er.ExecutionID, BodySHA256: bodyHash, CreatedAt: er.CreatedAt})
	ikey := p.TenantID + "." + hex.EncodeToString(sha256Sum(idemKey))
	if _, err := g.idempotency.Create(ctx, ikey, rec); err == nil {
		return false, nil, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil, unavailable("idempotency store", err)
	}
	e, err := g.idempotency.Get(ctx, ikey)
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
	if r, err := g.loadResult(ctx, er.ExecutionID); err == nil && r.Status.Final() {
		return true, r, nil
	}
	return true, nil, nil
}

// admit applies the tier's rate limits; a refusal is a 429 with the real Retry-After.
func (g *Gateway) admit(ctx context.Context, p *Principal) (*Decision, error) {
	d, err := g.limiter.Admit(ctx, p.TenantID, p.Tier)
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
func (g *Gateway) rejected(ctx context.Context, p *Principal, limit, reason string) {
	g.metrics.rateLimited.WithLabelValues(p.Tier.Name, limit).Inc()
	id := "ratelimit.rejected:" + newExecutionID(p.TenantID, "")
	g.publishEvent(ctx, schemas.EventRateLimitRejected, p.TenantID, id, func(e *schemas.Event) {
		e.RateLimit = &schemas.RateLimitEvent{KeyID: p.KeyID, Limit: limit, Reason: reason}
	})
}

// await waits for a published execution's result, up to wait; then the results KV decides.
func (g *Gateway) await(ctx context.Context, er *schemas.ExecRequest, async bool, replies <-chan *nats.Msg, wait time.Duration) *execOutcome {
	if async {
		g.storeQueued(ctx, er)
		return &execOutcome{Execution: queuedView(er), Accepted: true}
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case msg := <-replies:
		var r schemas.Result
		if err := json.Unmarshal(msg.Data, &r); err == nil && r.Status.Final() {
			return &execOutcome{Execution: schemas.ExecutionView(&r)}
		}
	case <-timer.C:
	case <-ctx.Done():
	}
	// The reply did not come in time (or was lost): the results KV is the source of truth.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if r, err := g.loadResult(lctx, er.ExecutionID); err == nil && r.Status.Final() {
		return &execOutcome{Execution: schemas.ExecutionView(r)}
	}
	g.storeQueued(lctx, er)
	if r, err := g.loadResult(lctx, er.ExecutionID); err == nil {
		return &execOutcome{Execution: schemas.ExecutionView(r), Accepted: !r.Status.Final()}
	}
	return &execOutcome{Execution: queuedView(er), Accepted: true}
}

func sha256Sum(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

func queuedView(er *schemas.ExecRequest) *schemas.Execution {
	return &schemas.Execution{ID: er.ExecutionID, Status: schemas.StatusQueued, ModuleID: er.ModuleID, CreatedAt: er.CreatedAt}
}

// storeQueued records a queued execution unless the executor has written something already.
func (g *Gateway) storeQueued(ctx context.Context, er *schemas.ExecRequest) {
	r := schemas.Result{ID: er.ExecutionID, TenantID: er.TenantID, KeyID: er.KeyID, Tier: er.Tier, ModuleID: er.ModuleID, Status: schemas.StatusQueued, ExitCode: -1, CreatedAt: er.CreatedAt}
	b, _ := json.Marshal(r)
	if _, err := g.results.Create(ctx, er.ExecutionID, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		g.log.Warn("store queued execution", "execution_id", er.ExecutionID, "err", err)
	}
}

// syncWait is how long a synchronous request waits: the execution's own timeout plus room for
// queueing, bounded by SyncWait when set.
func (g *Gateway) syncWait(t schemas.Tier, timeoutMS int64) time.Duration {
	w := time.Duration(timeoutMS)*time.Millisecond + 10*time.Second
	if g.cfg.SyncWait > 0 && w > g.cfg.SyncWait {
		w = g.cfg.SyncWait
	}
	return w
}

func (g *Gateway) publishExec(ctx context.Context, er *schemas.ExecRequest, deadline time.Time, fresh bool) error {
	body, err := json.Marshal(er)
	if err != nil {
		return err
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
		if _, err = g.js.PublishMsg(ctx, msg); err == nil || !strings.Contains(err.Error(), "maximum messages per subject exceeded") || wait == 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	if err != nil {
		if strings.Contains(err.Error(), "maximum messages per subject exceeded") {
			return &limitedError{err: &schemas.Error{Code: schemas.CodeRateLimited, RetryAfter: 1,
				Message: fmt.Sprintf("too many executions in flight: the %s tier allows %d queued or running at once; retry when one finishes", er.Tier, g.cfg.Tiers[er.Tier].InFlight)}}
		}
		return unavailable("execution queue", err)
	}
	return nil
}

// buildRequest validates an API request against the caller's tier and makes the message.
func (g *Gateway) buildRequest(ctx context.Context, p *Principal, req *schemas.ExecutionRequest) (*schemas.ExecRequest, error) {
	er, err := validateRequest(p, req)
	if err != nil {
		return nil, err
	}
	switch {
	case req.ModuleID != "":
		m, err := g.getModule(ctx, p, req.ModuleID)
		if err != nil {
			return nil, err
		}
		er.ModuleID, er.ModuleName = m.ID, m.Name
	default:
		wasm, _ := base64.StdEncoding.DecodeString(req.ModuleBase64) // checked by validateRequest
		m, err := g.uploadModule(ctx, p, "inline", wasm)
		if err != nil {
			return nil, err
		}
		er.ModuleID, er.ModuleName = m.ID, m.Name
	}
	return er, nil
}

// validateRequest checks everything about a request that needs no lookup, and makes the message
// without its module. It is pure, so it is fuzzed (FuzzValidateRequest).
func validateRequest(p *Principal, req *schemas.ExecutionRequest) (*schemas.ExecRequest, error) {
	t := p.Tier
	er := &schemas.ExecRequest{
		TenantID: p.TenantID, KeyID: p.KeyID, Tier: t.Name, Async: req.Async,
		Args: req.Args, Env: req.Env, CreatedAt: time.Now().UTC(),
		StdoutMax: t.StdoutMax, StderrMax: t.StdoutMax,
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
	if len(req.Args) > maxArgs {
		return nil, schemas.Errorf(schemas.CodeInvalid, "at most %d args", maxArgs)
	}
	size := 0
	for _, a := range req.Args {
		size += len(a) + 1
		if strings.IndexByte(a, 0) >= 0 {
			return nil, schemas.Errorf(schemas.CodeInvalid, "args must not contain NUL bytes")
		}
	}
	for k, v := range req.Env {
		size += len(k) + len(v) + 2
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return nil, schemas.Errorf(schemas.CodeInvalid, "env names must be non-empty without '=' or NUL, values without NUL")
		}
	}
	if size > maxArgEnvBytes {
		return nil, schemas.Errorf(schemas.CodeTooLarge, "args and env together are over %d bytes", maxArgEnvBytes)
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
		return nil, schemas.Errorf(schemas.CodeTooLarge, "stdin is %d bytes; the %s tier allows %d", len(er.Stdin), t.Name, t.StdinMax)
	}
	switch {
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
	return er, nil
}

func (g *Gateway) loadResult(ctx context.Context, id string) (*schemas.Result, error) {
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

func (g *Gateway) getExecution(ctx context.Context, p *Principal, id string) (*schemas.Execution, error) {
	notFound := schemas.Errorf(schemas.CodeNotFound, "execution %s not found", truncateID(id))
	if !schemas.ValidExecutionID(id) {
		return nil, notFound
	}
	r, err := g.loadResult(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, notFound
		}
		return nil, unavailable("results store", err)
	}
	if r.TenantID != p.TenantID {
		return nil, notFound
	}
	return schemas.ExecutionView(r), nil
}
