package stack_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/vodpipe/vodpipe/internal/stack"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/internal/tracing"
)

// One trace follows a job from the HTTP request that submitted it (its
// traceparent) to the webhook delivery of its job.completed: ingest's
// request span, the worker's job span under it (through the job message's
// headers), the worker's VOD and COS requests and status writes under
// that, and notify's delivery of the event under the span that published
// it; the webhook request itself carries the trace on to the receiver.
func TestOneTraceFromSubmitToWebhook(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := tracing.NewProvider(sdktrace.NewSimpleSpanProcessor(exp), "test")
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	root := t.TempDir()
	st, err := stack.Start(t.Context(), stack.Options{DataDir: t.TempDir(), SourceRoot: root, Workers: 1, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	var mu sync.Mutex
	var hookTrace string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hookTrace = r.Header.Get("traceparent")
		mu.Unlock()
	}))
	t.Cleanup(rcv.Close)
	subscribe(t, st, rcv.URL)

	src := filepath.Join(root, "traced.mp4")
	if err := os.WriteFile(src, bytes.Repeat([]byte("trace"), 20<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, st.IngestURL+"/v1/jobs",
		bytes.NewReader([]byte(`{"id":"traced-1","source":"file://`+src+`"}`)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+st.APIKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %d", resp.StatusCode)
	}
	testharness.WaitFor(t, 30*time.Second, "the webhook delivery with the trace", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return hookTrace != ""
	})
	// The delivery's span ends after its request, and the worker's job span
	// after its ack, which may come after the delivery: wait for both in
	// the exporter.
	var spans tracetest.SpanStubs
	testharness.WaitFor(t, 10*time.Second, "notify's delivery span and the worker's job span", func() bool {
		spans = exp.GetSpans()
		var delivery, job bool
		for _, s := range spans {
			if s.SpanContext.TraceID().String() == traceID {
				delivery = delivery || s.Name == "webhook delivery"
				job = job || s.Name == "job"
			}
		}
		return delivery && job
	})
	mu.Lock()
	if tid := hookTrace[3:35]; tid != traceID {
		t.Errorf("the webhook request's traceparent %q is not the job's trace", hookTrace)
	}
	mu.Unlock()

	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		if s.SpanContext.TraceID().String() == traceID {
			byID[s.SpanContext.SpanID()] = s
		}
	}
	find := func(name string) tracetest.SpanStub {
		for _, s := range byID {
			if s.Name == name {
				return s
			}
		}
		t.Fatalf("no span %q in the trace; it has %v", name, names(byID))
		return tracetest.SpanStub{}
	}
	api, job := find("POST /v1/jobs"), find("job")
	if job.Parent.SpanID() != api.SpanContext.SpanID() {
		t.Errorf("the job span's parent is not ingest's request span")
	}
	for _, child := range []string{"vod ApplyUploadUGC", "cos PutObject", "vod CommitUploadUGC", "status write"} {
		if s := find(child); s.Parent.SpanID() != job.SpanContext.SpanID() {
			t.Errorf("span %q is not a child of the job span", child)
		}
	}
	// notify's delivery is a descendant of the job span (its event was
	// published under it).
	d := find("webhook delivery")
	for p := d.Parent.SpanID(); ; {
		s, ok := byID[p]
		if !ok {
			t.Fatalf("the delivery span does not descend from the job span")
		}
		if s.SpanContext.SpanID() == job.SpanContext.SpanID() {
			break
		}
		p = s.Parent.SpanID()
	}
}

func names(spans map[trace.SpanID]tracetest.SpanStub) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}
