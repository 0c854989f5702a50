package tracing_test

import (
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/vodpipe/vodpipe/internal/tracing"
)

// Tracing is off unless the OTEL_* variables ask for it: no variable, or
// OTEL_TRACES_EXPORTER=none, gives spans that record nothing; an OTLP
// endpoint turns it on.
func TestTracingIsOffUnlessAskedFor(t *testing.T) {
	for _, tc := range []struct {
		env       map[string]string
		recording bool
	}{
		{nil, false},
		{map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		tp, stop, err := tracing.Setup(t.Context(), "test")
		if err != nil {
			t.Fatal(err)
		}
		_, span := tp.Tracer(tracing.Name).Start(t.Context(), "s")
		if span.IsRecording() != tc.recording {
			t.Errorf("env %v: recording %v, want %v", tc.env, span.IsRecording(), tc.recording)
		}
		span.End()
		_ = stop(t.Context())
		for k := range tc.env {
			t.Setenv(k, "")
		}
	}
}

// A NATS message carries the trace: what Inject writes, Extract reads as
// the remote parent; a context without a span writes nothing.
func TestTraceContextCrossesNATSHeaders(t *testing.T) {
	tp := tracing.NewProvider(sdktrace.NewSimpleSpanProcessor(tracetest.NewInMemoryExporter()), "test")
	ctx, span := tp.Tracer(tracing.Name).Start(t.Context(), "publish")
	defer span.End()
	m := &nats.Msg{Subject: "x"}
	tracing.Inject(ctx, m)
	got := tracing.Extract(t.Context(), m.Header)
	if sc := m.Header.Get("traceparent"); sc == "" {
		t.Fatal("no traceparent header")
	}
	_, consumer := tp.Tracer(tracing.Name).Start(got, "consume")
	defer consumer.End()
	if consumer.SpanContext().TraceID() != span.SpanContext().TraceID() {
		t.Fatal("the consumer's span is not in the publisher's trace")
	}
	bare := &nats.Msg{Subject: "x"}
	tracing.Inject(t.Context(), bare)
	if bare.Header != nil {
		t.Fatalf("a context without a span wrote headers: %v", bare.Header)
	}
}
