package gateway

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmwiz/wasmwiz/internal/telemetry"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// maxMicroConcurrency bounds the NATS API requests served at once by one gateway. A request
// takes one of these slots before it is authenticated and gives it back at once when its tenant
// is over its own bound (the tier's ConcurrentRequests), so one tenant cannot hold them all.
const maxMicroConcurrency = 1024

// startMicro serves the direct NATS API: a NATS micro service with one endpoint per table
// operation that has a NATS name (ops.go). Endpoints take the same JSON bodies as REST (a module upload takes the raw module bytes), with the API key in an
// Authorization header. Errors are micro errors whose code is the HTTP status and whose body is
// the same problem JSON as REST.
func (g *Server) startMicro() (micro.Service, error) {
	svc, err := micro.AddService(g.nc, micro.Config{
		Name:        schemas.APIService,
		Version:     APIVersion,
		Description: "WasmWiz API over NATS: same bodies as REST",
		QueueGroup:  schemas.QueueGateways,
	})
	if err != nil {
		return nil, err
	}
	sem := make(chan struct{}, maxMicroConcurrency)
	for i := range g.ops {
		o := &g.ops[i]
		if o.NATS == "" {
			continue
		}
		// Endpoint names may not hold dots; the subject keeps the operation's dotted name.
		err := svc.AddEndpoint(strings.ReplaceAll(o.NATS, ".", "_"), micro.HandlerFunc(func(req micro.Request) {
			sem <- struct{}{}
			// micro calls handlers one at a time per endpoint; executions wait, so run each apart.
			go func() {
				defer func() { <-sem }()
				g.serveMicro(o, req)
			}()
		}), micro.WithEndpointSubject(schemas.APISubject(o.NATS)))
		if err != nil {
			_ = svc.Stop()
			return nil, err
		}
	}
	return svc, nil
}

func decodeJSON(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return schemas.Errorf(schemas.CodeBadRequest, "request body is not valid JSON for this operation: %v", err)
	}
	return nil
}

// serveMicro serves one request to a table operation (ops.go) over NATS.
func (g *Server) serveMicro(o *operation, req micro.Request) {
	op := o.NATS
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	hdr := nats.Header(req.Headers())
	ctx = withRequestID(telemetry.Extract(ctx, hdr), requestID(hdr.Get(schemas.HeaderRequestID)))
	ctx, span := tracer.Start(ctx, "nats "+op, trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	status := 200
	defer func() {
		g.metrics.natsRequests.WithLabelValues(op, strconv.Itoa(status)).Inc()
		g.metrics.natsDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	}()
	p, release, err := g.admitCaller(ctx, o, req.Headers().Get(schemas.HeaderAuthorization))
	var out any
	if err == nil {
		out, err = o.micro(ctx, p, req)
		release()
	}
	if err != nil {
		se := g.publicError(ctx, op, err)
		status = se.Code.Status()
		body, _ := json.Marshal(problemFrom(se))
		_ = req.Error(strconv.Itoa(status), se.Message, body, micro.WithHeaders(micro.Headers(limitHeaders(se, err))))
		return
	}
	if e, ok := out.(*schemas.Execution); ok && !e.Status.Final() {
		status = 202
	}
	_ = req.RespondJSON(out)
}
