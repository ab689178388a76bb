package gateway

import (
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Events: the gateway publishes tenant and key events (publishEvent) and streams a tenant's
// events to it as Server-Sent Events (GET /v1/events).

// publishEvent publishes one event; id is its unique identity (Nats-Msg-Id). A failure is
// logged, not returned: the fact itself already happened.
func (g *Server) publishEvent(ctx context.Context, typ, tenant, id string, fill func(*schemas.Event)) {
	ev := schemas.Event{ID: id, Type: typ, Version: schemas.EventVersion, Time: time.Now().UTC(), TenantID: tenant}
	fill(&ev)
	b, _ := json.Marshal(ev)
	msg := nats.NewMsg(schemas.EventSubject(typ, tenant))
	msg.Data = b
	msg.Header.Set(schemas.HeaderMsgID, id)
	if _, err := g.js.PublishMsg(context.WithoutCancel(ctx), msg); err != nil {
		g.log.Error("publish event", "type", typ, "tenant_id", tenant, "err", err)
	}
}

// maxEventStreams bounds the event streams one tenant may hold open on one gateway; each is an
// ordered consumer on the NATS server.
const maxEventStreams = 32

// eventStreams counts open event streams per gateway and tenant.
var eventStreams = struct {
	sync.Mutex
	open map[string]int
}{open: map[string]int{}}

// acquireStream reserves one of tenant's event streams on this gateway; release gives it back.
func (g *Server) acquireStream(tenant string) (release func(), err error) {
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

type eventsInput struct {
	SinceSeq    uint64   `query:"since_seq" doc:"resume from this stream sequence (inclusive): the id of the last message you saw, plus one"`
	Since       string   `query:"since" doc:"start with the events published at or after this RFC 3339 time"`
	Types       []string `query:"type" doc:"only these event types, comma separated, e.g. execution.completed,execution.failed"`
	Tenant      string   `query:"tenant" doc:"admins only: whose events; default the caller's tenant"`
	LastEventID string   `header:"Last-Event-ID" doc:"sent by EventSource on reconnect: resume after this id (overrides since_seq and since)"`
}

// restEvents registers GET /v1/events: its 200 is a stream of Event, which Huma cannot infer.
func (g *Server) restEvents(api huma.API, op huma.Operation) {
	eventSchema := api.OpenAPI().Components.Schemas.Schema(reflect.TypeFor[schemas.Event](), true, "Event")
	op.Responses = map[string]*huma.Response{"200": {
		Description: "a stream of events",
		Content:     map[string]*huma.MediaType{"text/event-stream": {Schema: eventSchema}},
	}}
	handle(g, func(ctx context.Context, p *Principal, in *eventsInput) (*huma.StreamResponse, error) {
		it, release, err := g.openEvents(ctx, p, in)
		if err != nil {
			return nil, err
		}
		return &huma.StreamResponse{Body: func(hctx huma.Context) {
			defer release()
			g.streamEvents(hctx, it)
		}}, nil
	})(api, op)
}

// openEvents starts an ordered, ephemeral consumer on the events of one tenant: p's own, or
// for an admin the one asked for. The filter holds the tenant token itself, so the server
// never delivers another tenant's events.
func (g *Server) openEvents(ctx context.Context, p *Principal, in *eventsInput) (_ jetstream.MessagesContext, release func(), err error) {
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
func (g *Server) streamEvents(hctx huma.Context, it jetstream.MessagesContext) {
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
