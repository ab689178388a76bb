// Package telemetry sets up OpenTelemetry tracing for a WasmWiz role and carries W3C trace
// context (traceparent, tracestate) through NATS headers, so one trace follows an execution from
// the gateway through JetStream to the executor and its events. Spans are exported over OTLP/HTTP
// only when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; otherwise
// no exporter runs and spans cost next to nothing, but trace context is still passed along.
package telemetry

import (
	"context"
	"net/http"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0" // the version the SDK imports: one semconv package to compile, not two
	"go.opentelemetry.io/otel/trace"
)

// Setup installs the W3C propagator and, when an OTLP endpoint is configured in the environment,
// a tracer provider exporting to it under the given service name. The returned func flushes and
// stops the exporter.
func Setup(ctx context.Context, service string, getenv func(string) string) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx) // reads the OTEL_EXPORTER_OTLP_* variables
	if err != nil {
		return nil, err
	}
	res := resource.NewSchemaless(semconv.ServiceName(service))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// Tracer is the tracer of a WasmWiz package.
func Tracer(name string) trace.Tracer { return otel.Tracer("github.com/wasmwiz/wasmwiz/" + name) }

// Inject writes ctx's trace context into NATS headers.
func Inject(ctx context.Context, h nats.Header) {
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(http.Header(h)))
}

// Extract reads the trace context in NATS headers into ctx.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(http.Header(h)))
}

// ExtractHTTP reads the trace context of an HTTP request's headers into ctx.
func ExtractHTTP(ctx context.Context, h http.Header) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(h))
}
