// Package tracing is vodpipe's OpenTelemetry tracing: one trace follows a
// job from the HTTP request that submitted it, through its NATS message
// (W3C traceparent in the message headers), the worker's VOD and COS calls
// and status writes, to notify's webhook delivery of its events. It is off
// unless the standard OTEL_* variables ask for it.
package tracing

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/vodpipe/vodpipe/internal/version"
)

// Name is the instrumentation scope of vodpipe's spans.
const Name = "github.com/vodpipe/vodpipe"

// Setup returns the tracer provider the environment asks for, and its
// shutdown (which flushes the spans still buffered). Tracing is on when
// OTEL_TRACES_EXPORTER is "otlp", or when it is unset and an OTLP endpoint
// is (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
// the exporter then reads the other OTEL_EXPORTER_OTLP_* variables, and
// the SDK OTEL_TRACES_SAMPLER and OTEL_RESOURCE_ATTRIBUTES. The service
// name is OTEL_SERVICE_NAME, else vodpipe-<service>. Off, it is a no-op
// provider that records nothing.
func Setup(ctx context.Context, service string) (trace.TracerProvider, func(context.Context) error, error) {
	if !enabled() {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	tp := NewProvider(sdktrace.NewBatchSpanProcessor(exp), service)
	return tp, tp.Shutdown, nil
}

// NewProvider is a provider of service's spans that hands them to sp (a
// batch processor in production, a synchronous one over an in-memory
// exporter in tests).
func NewProvider(sp sdktrace.SpanProcessor, service string) *sdktrace.TracerProvider {
	name := os.Getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "vodpipe-" + service
	}
	res, _ := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(name), semconv.ServiceVersion(version.Release)))
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sp), sdktrace.WithResource(res))
}

func enabled() bool {
	switch strings.ToLower(os.Getenv("OTEL_TRACES_EXPORTER")) {
	case "otlp":
		return true
	case "":
		return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	}
	return false // "none", or an exporter vodpipe does not ship
}

// Inject writes ctx's trace context into a NATS message's headers (W3C
// traceparent and tracestate).
func Inject(ctx context.Context, m *nats.Msg) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	propagation.TraceContext{}.Inject(ctx, natsCarrier(m.Header))
}

// Extract returns ctx with the trace context a NATS message carries (as
// the remote parent of the spans started from it).
func Extract(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, natsCarrier(h))
}

// ExtractHTTP returns ctx with the trace context of an HTTP request.
func ExtractHTTP(ctx context.Context, h http.Header) context.Context {
	return propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(h))
}

// InjectHTTP writes ctx's trace context into an outgoing HTTP request's
// headers (a webhook delivery: its receiver can continue the trace).
func InjectHTTP(ctx context.Context, h http.Header) {
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
}

// Start starts a span as a child of ctx's, with the tracer of ctx's
// span's provider: code below a service's root span needs no provider of
// its own. Without a span in ctx it records nothing.
func Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer(Name).Start(ctx, name, opts...)
}

// End ends span, marking it failed with err (not nil).
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// natsCarrier adapts NATS headers to the propagator.
type natsCarrier nats.Header

func (c natsCarrier) Get(k string) string { return nats.Header(c).Get(k) }
func (c natsCarrier) Set(k, v string)     { nats.Header(c).Set(k, v) }
func (c natsCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}
