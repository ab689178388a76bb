package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Limiter admits executions against a tier's per-minute and per-day limits, exactly, across any
// number of gateways. Each (tier, window) has a JetStream stream whose per-subject cap is the
// limit (DiscardNewPerSubject) and whose MaxAge is the window: admitting is publishing one empty
// message to the tenant's subject, and the server refuses the publish when the tenant already
// has `limit` messages younger than the window. The count lives in one place and is changed
// atomically by the server, so racing gateways can never admit more than the limit; the window
// slides (a message leaves exactly one window after it was admitted). See RATIONALE.md.
type Limiter struct {
	js jetstream.JetStream

	mu      sync.Mutex
	streams map[string]jetstream.Stream
	// oldestAt remembers, per tier, window and tenant, when the oldest admission still in the
	// window was made, for Status's Reset. Only the RateLimit-Reset header uses it: admission
	// is decided by the server and Retry-After is read afresh on every refusal.
	oldestAt map[string]time.Time
	// counts remembers, per tier, window and tenant, the count Status last read and the
	// admissions this gateway made since, for RateLimit-Remaining (see statusFresh).
	counts map[string]*countRead
	fresh  time.Duration // statusFresh; tests change it
}

// countRead is a tenant's count in one window as Status read it, and this gateway's admissions.
type countRead struct {
	admitted int       // admissions by this gateway (less the ones given back), ever
	used     int       // the count the last read returned
	base     int       // admitted when that read was sent
	at       time.Time // when it was sent; zero: never read
}

// statusFresh is how long a count read by Status serves for RateLimit-Remaining on this gateway:
// within it, Status adds this gateway's own admissions since the read instead of reading again
// (a stream-info round trip, two NATS messages per execution). What other gateways admitted
// meanwhile is not seen, so on a fleet the header can be high by up to one second of their
// admissions; what is admitted stays exact (the server decides), and Retry-After is read afresh
// on every refusal.
const statusFresh = time.Second

// maxOldestEntries bounds the Reset and Remaining caches; past it a cache starts over.
const maxOldestEntries = 100_000

// NewLimiter makes a limiter on js; streams.Ensure creates its streams.
func NewLimiter(js jetstream.JetStream) *Limiter {
	return &Limiter{js: js, streams: map[string]jetstream.Stream{}, oldestAt: map[string]time.Time{}, counts: map[string]*countRead{}, fresh: statusFresh}
}

// counted adds n admissions of tenant in tier's window on this gateway (n < 0: given back).
func (l *Limiter) counted(tier, win, tenant string, n int) {
	key := oldestKey(tier, win, tenant)
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counts[key]
	if c == nil {
		if len(l.counts) >= maxOldestEntries {
			clear(l.counts)
		}
		c = &countRead{}
		l.counts[key] = c
	}
	c.admitted += n
}

// Decision is the outcome of Admit, with what the RateLimit-* headers report (the tightest
// window's figures).
type Decision struct {
	Allowed    bool
	Window     string        // the window that decided (or the tightest one)
	Limit      int           // 0 when the tier is unlimited
	Remaining  int           // executions left in Window
	Reset      time.Duration // until Remaining grows by at least one (0 when nothing is used)
	RetryAfter time.Duration // with !Allowed: until an execution would be admitted in Window

	held   []heldSlot // what Release gives back
	tenant string
}

type heldSlot struct {
	window string
	seq    uint64
}

// Release gives an admitted decision's quota back (the execution was not accepted after all).
func (l *Limiter) Release(ctx context.Context, tier string, d *Decision) {
	for _, h := range d.held {
		l.release(ctx, tier, h.window, h.seq)
		l.counted(tier, h.window, d.tenant, -1)
	}
	d.held = nil
	// The released admission may have been the oldest one: read it again next time.
	l.mu.Lock()
	for _, w := range []string{schemas.WindowMinute, schemas.WindowDay} {
		delete(l.oldestAt, oldestKey(tier, w, d.tenant))
	}
	l.mu.Unlock()
}

func oldestKey(tier, win, tenant string) string { return tier + "\x00" + win + "\x00" + tenant }

type window struct {
	name  string
	limit int
	span  time.Duration
}

func windows(t schemas.Tier) []window {
	var ws []window
	if t.ExecPerMinute > 0 {
		ws = append(ws, window{schemas.WindowMinute, t.ExecPerMinute, time.Minute})
	}
	if t.ExecPerDay > 0 {
		ws = append(ws, window{schemas.WindowDay, t.ExecPerDay, 24 * time.Hour})
	}
	return ws
}

// errLimiterUnavailable makes the gateway refuse (503) rather than let traffic through.
var errLimiterUnavailable = &schemas.Error{Code: schemas.CodeUnavailable, RetryAfter: unavailableRetryAfter,
	Message: "rate limiter is unavailable; the request was not admitted, try again shortly"}

// Admit counts one execution for tenant, or refuses it. Both windows are published to at once;
// if one refuses, the other's admission is deleted again, so a refused request never uses quota.
func (l *Limiter) Admit(ctx context.Context, tenant string, t schemas.Tier) (*Decision, error) {
	ws := windows(t)
	if len(ws) == 0 {
		return &Decision{Allowed: true}, nil
	}
	type outcome struct {
		seq     uint64
		refused bool
		err     error
	}
	futures := make([]jetstream.PubAckFuture, len(ws))
	for i, w := range ws {
		f, err := l.js.PublishAsync(schemas.RateLimitSubject(t.Name, w.name, tenant), nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errLimiterUnavailable, err)
		}
		futures[i] = f
	}
	outs := make([]outcome, len(ws))
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			outs[i].seq = ack.Sequence
		case err := <-f.Err():
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum messages per subject") {
				outs[i].refused = true
			} else {
				outs[i].err = err
			}
		case <-ctx.Done():
			outs[i].err = ctx.Err()
		}
	}
	refusedAt := -1
	var failure error
	for i, o := range outs {
		if o.err != nil && failure == nil {
			failure = o.err
		}
		if o.refused && refusedAt < 0 {
			refusedAt = i
		}
	}
	if refusedAt >= 0 || failure != nil {
		// Give back what the other window admitted.
		for i, o := range outs {
			if o.seq != 0 {
				l.release(context.WithoutCancel(ctx), t.Name, ws[i].name, o.seq)
			}
		}
	}
	if failure != nil {
		// The cause stays inspectable: a stream electing its leader is tried again (rideOut).
		return nil, fmt.Errorf("%w: %w", errLimiterUnavailable, failure)
	}
	if refusedAt >= 0 {
		w := ws[refusedAt]
		d := &Decision{Window: w.name, Limit: w.limit}
		if oldest, err := l.oldest(ctx, t.Name, w.name, tenant); err == nil {
			d.RetryAfter = max(time.Until(oldest.Add(w.span)), time.Second)
		} else {
			d.RetryAfter = w.span
		}
		d.Reset = d.RetryAfter
		return d, nil
	}
	d := &Decision{Allowed: true, Window: ws[0].name, Limit: ws[0].limit, tenant: tenant}
	for i, o := range outs {
		d.held = append(d.held, heldSlot{ws[i].name, o.seq})
		l.counted(t.Name, ws[i].name, tenant, 1)
	}
	return d, nil
}

// Status fills in Remaining and Reset for an admitted decision's window. It costs one read (the
// tenant's count) at most once per statusFresh per tenant and window on this gateway (see used),
// and a second one (the oldest admission's time) only when that admission is
// not known yet or has left the window: until it leaves, at its time + the window, it stays
// the oldest (admissions leave oldest first; a Release here forgets it). The gateway runs it
// while the execution runs.
func (l *Limiter) Status(ctx context.Context, tenant string, t schemas.Tier, d *Decision) error {
	if d.Limit == 0 {
		return nil
	}
	var w window
	for _, x := range windows(t) {
		if x.name == d.Window {
			w = x
		}
	}
	s, err := l.stream(ctx, t.Name, w.name)
	if err != nil {
		return err
	}
	used, err := l.used(ctx, s, t.Name, w.name, tenant)
	if err != nil {
		return err
	}
	d.Remaining = max(w.limit-used, 0)
	key := oldestKey(t.Name, w.name, tenant)
	if used == 0 {
		l.mu.Lock()
		delete(l.oldestAt, key)
		l.mu.Unlock()
		return nil
	}
	l.mu.Lock()
	oldest, ok := l.oldestAt[key]
	l.mu.Unlock()
	if !ok || !time.Now().Before(oldest.Add(w.span)) {
		if oldest, err = l.oldest(ctx, t.Name, w.name, tenant); err != nil {
			return nil // Reset stays 0: the header is advisory
		}
		l.mu.Lock()
		if len(l.oldestAt) >= maxOldestEntries {
			clear(l.oldestAt)
		}
		l.oldestAt[key] = oldest
		l.mu.Unlock()
	}
	d.Reset = max(time.Until(oldest.Add(w.span)), 0)
	return nil
}

// used is tenant's count in the window: read from the stream, or, within statusFresh of the
// last read, that read plus this gateway's admissions since it was sent (an admission the read
// already counted is counted twice: the figure errs low).
func (l *Limiter) used(ctx context.Context, s jetstream.Stream, tier, win, tenant string) (int, error) {
	key := oldestKey(tier, win, tenant)
	now := time.Now()
	l.mu.Lock()
	c := l.counts[key]
	if c != nil && !c.at.IsZero() && now.Sub(c.at) < l.fresh {
		used := c.used + c.admitted - c.base
		l.mu.Unlock()
		return max(used, 0), nil
	}
	base := 0
	if c != nil {
		base = c.admitted
	}
	l.mu.Unlock()
	subj := schemas.RateLimitSubject(tier, win, tenant)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return 0, err
	}
	used := int(info.State.Subjects[subj])
	l.mu.Lock()
	if c = l.counts[key]; c == nil {
		if len(l.counts) >= maxOldestEntries {
			clear(l.counts)
		}
		c = &countRead{admitted: base}
		l.counts[key] = c
	}
	if c.at.Before(now) {
		c.used, c.base, c.at = used, base, now
	}
	l.mu.Unlock()
	return used, nil
}

func (l *Limiter) oldest(ctx context.Context, tier, win, tenant string) (time.Time, error) {
	s, err := l.stream(ctx, tier, win)
	if err != nil {
		return time.Time{}, err
	}
	m, err := s.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(schemas.RateLimitSubject(tier, win, tenant)))
	if err != nil {
		return time.Time{}, err
	}
	return m.Time, nil
}

func (l *Limiter) release(ctx context.Context, tier, win string, seq uint64) {
	if s, err := l.stream(ctx, tier, win); err == nil {
		_ = s.DeleteMsg(ctx, seq)
	}
}

func (l *Limiter) stream(ctx context.Context, tier, win string) (jetstream.Stream, error) {
	name := schemas.RateLimitStream(tier, win)
	l.mu.Lock()
	s, ok := l.streams[name]
	l.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := l.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.streams[name] = s
	l.mu.Unlock()
	return s, nil
}

// headers are the RateLimit-* header values of a decision ("" when the tier is unlimited).
func (d *Decision) headers() (limit, remaining, reset string) {
	if d == nil || d.Limit == 0 {
		return "", "", ""
	}
	return strconv.Itoa(d.Limit), strconv.Itoa(d.Remaining), strconv.Itoa(seconds(d.Reset))
}

// limitedError is a 429 with the decision behind it, for the Retry-After and RateLimit headers.
type limitedError struct {
	err *schemas.Error
	d   *Decision
}

func (e *limitedError) Error() string { return e.err.Error() }
func (e *limitedError) Unwrap() error { return e.err }

// seconds rounds a duration up to whole seconds for Retry-After and RateLimit-Reset.
func seconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}

// requestSlots bounds the API requests each tenant has open at once on this gateway (REST and
// direct NATS together; the tier's ConcurrentRequests), so that one tenant cannot take every
// connection or NATS request slot, for example with many replays of one long execution. Admin
// keys are not bounded.
type requestSlots struct {
	mu       sync.Mutex
	open     map[string]int
	reported map[string]time.Time // last ratelimit.rejected event per tenant
}

func newRequestSlots() *requestSlots {
	return &requestSlots{open: map[string]int{}, reported: map[string]time.Time{}}
}

// acquire takes one of p's tenant's slots, or refuses with a 429; release gives it back.
func (s *requestSlots) acquire(p *Principal) (release func(), err error) {
	if p.Admin {
		return func() {}, nil
	}
	tenant, limit := p.TenantID, p.Tier.ConcurrentRequests
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[tenant] >= limit {
		return nil, &limitedError{err: &schemas.Error{Code: schemas.CodeRateLimited, RetryAfter: 1,
			Message: fmt.Sprintf("too many requests at once: the %s tier allows %d open requests per tenant on each gateway; retry when one finishes", p.Tier.Name, limit)}}
	}
	s.open[tenant]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.open[tenant]--; s.open[tenant] <= 0 {
				delete(s.open, tenant)
			}
		})
	}, nil
}

// limitConcurrent takes a request slot for p. A refusal is counted like any other rate-limit
// refusal, but its ratelimit.rejected event is published at most once a second per tenant and
// gateway: a flood of refused requests must stay cheap to refuse (a JetStream publish each
// would make the flood itself hold the gateway's NATS request slots).
func (g *Server) limitConcurrent(ctx context.Context, p *Principal) (release func(), err error) {
	release, err = g.slots.acquire(p)
	if err != nil {
		msg := schemas.AsError(err).Message
		if g.slots.shouldReport(p.TenantID) {
			g.rejected(ctx, p, "concurrent_requests", msg)
		} else {
			g.metrics.rateLimited.WithLabelValues(p.Tier.Name, "concurrent_requests").Inc()
		}
	}
	return release, err
}

// shouldReport reports whether a refusal of tenant's requests should publish its event now (at
// most once a second per tenant).
func (s *requestSlots) shouldReport(tenant string) bool {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.reported[tenant]; ok && now.Sub(last) < time.Second {
		return false
	}
	if len(s.reported) >= maxOldestEntries {
		clear(s.reported)
	}
	s.reported[tenant] = now
	return true
}
