package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"regexp"

	"github.com/danielgtaylor/huma/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/wasmwiz/wasmwiz/internal/telemetry"
)

var tracer = telemetry.Tracer("gateway")

type requestIDKey struct{}

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// requestID is the caller's X-Request-Id when it is a sane token, or a new one. It travels in
// NATS headers to the executor and its events, and is in every log line about the request.
func requestID(given string) string {
	if requestIDRE.MatchString(given) {
		return given
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "req_" + hex.EncodeToString(b[:])
}

func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// traced starts a span per operation, continuing the caller's W3C trace context, and gives
// every request an id (X-Request-Id, echoed back).
func (g *Server) traced(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		carrier := propagation.MapCarrier{}
		for _, h := range []string{"traceparent", "tracestate"} {
			if v := ctx.Header(h); v != "" {
				carrier[h] = v
			}
		}
		c := otel.GetTextMapPropagator().Extract(ctx.Context(), carrier)
		id := requestID(ctx.Header("X-Request-Id"))
		c, span := tracer.Start(c, ctx.Operation().OperationID, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.route", ctx.Operation().Path), attribute.String("wasmwiz.request_id", id)))
		defer span.End()
		ctx.SetHeader("X-Request-Id", id)
		next(huma.WithContext(ctx, withRequestID(c, id)))
		span.SetAttributes(attribute.Int("http.response.status_code", ctx.Status()))
		if ctx.Status() >= 500 {
			span.SetStatus(codes.Error, "")
		}
	}
}
