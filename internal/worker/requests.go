package worker

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/vodpipe/vodpipe/internal/tracing"
)

// requestMetrics time the worker's requests to VOD and COS, by VOD action
// or COS operation and by HTTP status ("error" when no answer came): the
// histograms an operator reads when uploads slow down or VOD throttles.
type requestMetrics struct {
	vod, cos *prometheus.HistogramVec
}

func newRequestMetrics() *requestMetrics {
	buckets := prometheus.ExponentialBuckets(0.005, 2, 14) // 5 ms .. 41 s
	return &requestMetrics{
		vod: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vodpipe_worker_vod_request_duration_seconds",
			Help: "Time of a request to VOD's client-upload API, by action and HTTP status.", Buckets: buckets}, []string{"action", "code"}),
		cos: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vodpipe_worker_cos_request_duration_seconds",
			Help: "Time of a request to COS, by operation and HTTP status.", Buckets: buckets}, []string{"operation", "code"}),
	}
}

// Describe and Collect make it one prometheus.Collector.
func (m *requestMetrics) Describe(ch chan<- *prometheus.Desc) { m.vod.Describe(ch); m.cos.Describe(ch) }
func (m *requestMetrics) Collect(ch chan<- prometheus.Metric) { m.vod.Collect(ch); m.cos.Collect(ch) }

// wrap returns a transport that times every request next carries.
func (m *requestMetrics) wrap(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return timedTransport{next: next, m: m}
}

type timedTransport struct {
	next http.RoundTripper
	m    *requestMetrics
}

func (t timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	// One parse of the query per request (every part is one).
	q := r.URL.Query()
	action, hist := q.Get("Action"), t.m.vod
	name := "vod " + action
	if action == "" {
		action, hist = cosOperation(r.Method, q), t.m.cos
		name = "cos " + action
	}
	// A client span under the job's, when the request's context has one.
	_, span := tracing.Start(r.Context(), name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("server.address", r.URL.Host)))
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	}
	hist.WithLabelValues(action, code).Observe(time.Since(start).Seconds())
	tracing.End(span, err)
	return resp, err
}

// cosOperation names the COS API operation of a request, as COS's
// documentation does, from its method and query.
func cosOperation(method string, q url.Values) string {
	switch {
	case method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case method == http.MethodPut:
		return "PutObject"
	case method == http.MethodPost && q.Has("uploads"):
		return "InitiateMultipartUpload"
	case method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case method == http.MethodGet && q.Has("uploadId"):
		return "ListParts"
	case method == http.MethodHead:
		return "HeadObject"
	}
	return method
}
