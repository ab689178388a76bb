package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// accountingTimeout bounds a usage query to the accounting role.
const accountingTimeout = 15 * time.Second

// maxEventStreams bounds the event streams one tenant may hold open on one gateway; each is an
// ordered consumer on the NATS server.
const maxEventStreams = 32

// eventStreams counts open event streams per gateway and tenant.
var eventStreams = struct {
	sync.Mutex
	open map[string]int
}{open: map[string]int{}}

// acquireStream reserves one of tenant's event streams on this gateway; release gives it back.
func (g *Gateway) acquireStream(tenant string) (release func(), err error) {
	k := g.id + "/" + tenant
	eventStreams.Lock()
	defer eventStreams.Unlock()
	if eventStreams.open[k] >= maxEventStreams {
		return nil, &schemas.Error{Code: schemas.CodeRateLimited, RetryAfter: 5,
			Message: fmt.Sprintf("at most %d event streams per tenant may be open at once", maxEventStreams)}
	}
	eventStreams.open[k]++
	var once sync.Once
	return func() {
		once.Do(func() {
			eventStreams.Lock()
			defer eventStreams.Unlock()
			if eventStreams.open[k]--; eventStreams.open[k] <= 0 {
				delete(eventStreams.open, k)
			}
		})
	}, nil
}

// eventsKeepalive is how often an idle event stream gets an SSE comment, so that proxies and
// clients see the connection alive.
const eventsKeepalive = 15 * time.Second

type usageInput struct {
	From    string `query:"from" doc:"start of the range, inclusive: an RFC 3339 time, or a date YYYY-MM-DD meaning its UTC midnight; default: UTC midnight 30 days before to"`
	To      string `query:"to" doc:"end of the range, exclusive: an RFC 3339 time or a date YYYY-MM-DD (its UTC midnight); default: now"`
	GroupBy string `query:"group_by" enum:"day,module,key" default:"day" doc:"rows per UTC day (of each execution's finish), per module id, or per API key id"`
	Tenant  string `query:"tenant" doc:"admins only: whose usage; default the caller's tenant"`
}

type usageOutput struct {
	Body *schemas.UsageResponse
}

type eventsInput struct {
	SinceSeq    uint64   `query:"since_seq" doc:"resume from this stream sequence (inclusive): the id of the last message you saw, plus one"`
	Since       string   `query:"since" doc:"start with the events published at or after this RFC 3339 time"`
	Types       []string `query:"type" doc:"only these event types, comma separated, e.g. execution.completed,execution.failed"`
	Tenant      string   `query:"tenant" doc:"admins only: whose events; default the caller's tenant"`
	LastEventID string   `header:"Last-Event-ID" doc:"sent by EventSource on reconnect: resume after this id (overrides since_seq and since)"`
}

func (g *Gateway) registerUsage(api huma.API) {
	huma.Register(api, huma.Operation{
		OperationID: "get-usage", Method: http.MethodGet, Path: "/v1/usage", Tags: []string{"usage"},
		Summary:     "Usage of your tenant",
		Description: "What your executions cost in [from, to), by finish time, grouped by UTC day, module or API key. Each execution is counted once however often it was delivered; killed executions count as failed. Answered by the accounting role; 503 while it is unreachable.",
		Security:    bearer, Errors: []int{401, 403, 404, 422, 503},
	}, func(ctx context.Context, in *usageInput) (*usageOutput, error) {
		req, err := usageRequest(in)
		if err == nil {
			var out *schemas.UsageResponse
			if out, err = g.usage(ctx, principalFrom(ctx), req); err == nil {
				return &usageOutput{Body: out}, nil
			}
		}
		return nil, g.fail(ctx, "get-usage", err)
	})

	eventSchema := api.OpenAPI().Components.Schemas.Schema(reflect.TypeFor[schemas.Event](), true, "Event")
	huma.Register(api, huma.Operation{
		OperationID: "stream-events", Method: http.MethodGet, Path: "/v1/events", Tags: []string{"events"},
		Summary: "Stream your tenant's events (Server-Sent Events)",
		Description: "Your tenant's events, live, as text/event-stream: each message has `id:` (the stream sequence, for resuming), `event:` (the event type) and `data:` (the event as JSON, one line). " +
			"Without since_seq or since it starts with the next event. Idle streams get a comment every 15 s. A tenant only ever sees its own events.",
		Security: bearer, Errors: []int{401, 403, 404, 422, 429, 503},
		Responses: map[string]*huma.Response{"200": {
			Description: "a stream of events",
			Content:     map[string]*huma.MediaType{"text/event-stream": {Schema: eventSchema}},
		}},
	}, func(ctx context.Context, in *eventsInput) (*huma.StreamResponse, error) {
		it, release, err := g.openEvents(ctx, principalFrom(ctx), in)
		if err != nil {
			return nil, g.fail(ctx, "stream-events", err)
		}
		return &huma.StreamResponse{Body: func(hctx huma.Context) {
			defer release()
			g.streamEvents(hctx, it)
		}}, nil
	})
}

// microUsage is the direct NATS twin of GET /v1/usage: the body is a schemas.UsageRequest
// (tenant_id only for admins; an empty body takes the defaults).
func (g *Gateway) microUsage(ctx context.Context, p *Principal, req micro.Request) (any, error) {
	var body schemas.UsageRequest
	if len(bytes.TrimSpace(req.Data())) > 0 {
		if err := decodeJSON(req.Data(), &body); err != nil {
			return nil, err
		}
	}
	return g.usage(ctx, p, body)
}

func usageRequest(in *usageInput) (schemas.UsageRequest, error) {
	req := schemas.UsageRequest{TenantID: in.Tenant, GroupBy: in.GroupBy}
	var err error
	if req.From, err = parseTimeParam("from", in.From); err != nil {
		return req, err
	}
	if req.To, err = parseTimeParam("to", in.To); err != nil {
		return req, err
	}
	return req, nil
}

// parseTimeParam reads an RFC 3339 time or a date (its UTC midnight); empty is the zero time.
func parseTimeParam(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, schemas.Errorf(schemas.CodeInvalid, "%s must be an RFC 3339 time (2006-01-02T15:04:05Z) or a date (2006-01-02)", name)
}

// scopeTenant decides whose usage and events p may read: its own tenant's with the usage:read
// scope, or any tenant's for an admin.
func (g *Gateway) scopeTenant(ctx context.Context, p *Principal, requested string) (string, error) {
	if err := p.require(schemas.ScopeUsageRead); err != nil {
		return "", err
	}
	if requested == "" || requested == p.TenantID {
		return p.TenantID, nil
	}
	if !p.Admin {
		return "", schemas.Errorf(schemas.CodeForbidden, "only an admin key may read another tenant's data")
	}
	if _, err := g.admin().GetTenant(ctx, requested); err != nil {
		return "", err
	}
	return requested, nil
}

// usage asks accounting for p's usage (or, for an admin, req.TenantID's) over NATS.
func (g *Gateway) usage(ctx context.Context, p *Principal, req schemas.UsageRequest) (*schemas.UsageResponse, error) {
	tenant, err := g.scopeTenant(ctx, p, req.TenantID)
	if err != nil {
		return nil, err
	}
	req.TenantID = tenant
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, accountingTimeout)
	defer cancel()
	msg, err := g.nc.RequestWithContext(rctx, schemas.AccountingSubject(schemas.OpUsage), body)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, unavailable("accounting", errors.New("no accounting replica answers usage queries"))
		}
		return nil, unavailable("accounting", err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		var se schemas.Error
		if json.Unmarshal(msg.Data, &se) == nil {
			switch se.Code {
			case schemas.CodeInvalid, schemas.CodeForbidden, schemas.CodeNotFound:
				return nil, &se
			}
		}
		return nil, unavailable("accounting", fmt.Errorf("usage query answered %s: %s", code, msg.Header.Get(micro.ErrorHeader)))
	}
	var out schemas.UsageResponse
	if err := json.Unmarshal(msg.Data, &out); err != nil {
		return nil, fmt.Errorf("decode usage answer: %w", err)
	}
	return &out, nil
}

// openEvents starts an ordered, ephemeral consumer on the events of one tenant: p's own, or
// for an admin the one asked for. The filter holds the tenant token itself, so the server
// never delivers another tenant's events.
func (g *Gateway) openEvents(ctx context.Context, p *Principal, in *eventsInput) (_ jetstream.MessagesContext, release func(), err error) {
	tenant, err := g.scopeTenant(ctx, p, in.Tenant)
	if err != nil {
		return nil, nil, err
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy, InactiveThreshold: time.Minute}
	for _, t := range in.Types {
		for _, typ := range strings.Split(t, ",") {
			typ = strings.TrimSpace(typ)
			if typ == "" {
				continue
			}
			if !schemas.KnownEventType(typ) {
				return nil, nil, schemas.Errorf(schemas.CodeInvalid, "unknown event type %q", truncateID(typ))
			}
			if s := schemas.EventSubject(typ, tenant); !slices.Contains(cfg.FilterSubjects, s) {
				cfg.FilterSubjects = append(cfg.FilterSubjects, s)
			}
		}
	}
	if len(cfg.FilterSubjects) == 0 {
		cfg.FilterSubjects = []string{schemas.EventSubjectTenant(tenant)}
	}
	switch {
	case in.LastEventID != "":
		seq, err := strconv.ParseUint(in.LastEventID, 10, 64)
		if err != nil || seq == math.MaxUint64 { // the next one would be sequence 0
			return nil, nil, schemas.Errorf(schemas.CodeBadRequest, "Last-Event-ID must be the id of an event message")
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	case in.SinceSeq > 0 && in.Since != "":
		return nil, nil, schemas.Errorf(schemas.CodeInvalid, "give since_seq or since, not both")
	case in.SinceSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, in.SinceSeq
	case in.Since != "":
		t, err := time.Parse(time.RFC3339Nano, in.Since)
		if err != nil {
			return nil, nil, schemas.Errorf(schemas.CodeInvalid, "since must be an RFC 3339 time (2006-01-02T15:04:05Z)")
		}
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	if release, err = g.acquireStream(tenant); err != nil {
		return nil, nil, err
	}
	cons, err := g.js.OrderedConsumer(ctx, schemas.StreamEvents, cfg)
	if err != nil {
		release()
		return nil, nil, unavailable("event stream", err)
	}
	it, err := cons.Messages()
	if err != nil {
		release()
		return nil, nil, unavailable("event stream", err)
	}
	return it, release, nil
}

// streamEvents writes the iterator's messages as Server-Sent Events until the client goes away,
// the consumer fails, the gateway drains (the client then resumes with Last-Event-ID), or the
// caller's credentials stop being valid: a revoked key or an expired token ends its streams
// within a second, as it ends its requests.
func (g *Gateway) streamEvents(hctx huma.Context, it jetstream.MessagesContext) {
	ctx := hctx.Context()
	authorization := hctx.Header("Authorization")
	msgs := make(chan jetstream.Msg)
	errc := make(chan error, 1)
	done := make(chan struct{})
	defer func() { close(done); it.Stop() }()
	go func() {
		for {
			m, err := it.Next()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-done:
				return
			}
		}
	}()

	hctx.SetHeader("Content-Type", "text/event-stream")
	hctx.SetHeader("Cache-Control", "no-store")
	hctx.SetHeader("X-Accel-Buffering", "no")
	hctx.SetStatus(http.StatusOK)
	w := hctx.BodyWriter()
	rw, ok := w.(http.ResponseWriter)
	if !ok {
		g.log.Error("event stream: the body writer is not an http.ResponseWriter")
		return
	}
	rc := http.NewResponseController(rw)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte(": wasmwiz events\n\n")) {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	idle := time.Now()
	var buf bytes.Buffer
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-errc:
			g.log.Warn("event stream ended", "err", err)
			return
		case m := <-msgs:
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			typ, _, err := schemas.ParseEventSubject(m.Subject())
			if err != nil {
				continue
			}
			buf.Reset()
			fmt.Fprintf(&buf, "id: %d\nevent: %s\ndata: ", md.Sequence.Stream, typ)
			if err := json.Compact(&buf, m.Data()); err != nil {
				continue // not JSON: nothing a client could read
			}
			buf.WriteString("\n\n")
			if !write(buf.Bytes()) {
				return
			}
			idle = time.Now()
		case <-tick.C:
			if g.draining.Load() {
				return
			}
			if _, err := g.keyring.authenticate(ctx, authorization); err != nil {
				return
			}
			if time.Since(idle) >= eventsKeepalive {
				if !write([]byte(": keepalive\n\n")) {
					return
				}
				idle = time.Now()
			}
		}
	}
}
