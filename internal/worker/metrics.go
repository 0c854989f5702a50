package worker

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vodpipe/vodpipe/internal/version"
)

// metrics are the worker's Prometheus metrics; it is the upload.Observer too.
type metrics struct {
	reg         *prometheus.Registry
	jobs        *prometheus.CounterVec
	inFlight    prometheus.Gauge
	bytes       prometheus.Counter
	skipped     prometheus.Counter
	partLatency prometheus.Histogram
	runTime     *prometheus.HistogramVec
	queueWait   prometheus.Histogram
	retries     *prometheus.CounterVec
	renewals    prometheus.Counter
	shared      prometheus.Counter
	refreshes   prometheus.Counter
	progressMu  sync.Mutex
	// progress holds the latest progress of each job not yet flushed.
	progress map[string][2]int64
	// flushed holds the jobs whose status a progress write changed since
	// they were marked running (so that revision is no longer current).
	flushed map[string]bool
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vodpipe_worker_jobs_total",
			Help: "Jobs handled, by outcome."}, []string{"outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vodpipe_worker_jobs_in_flight", Help: "Jobs running now."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "vodpipe_worker_uploaded_bytes_total",
			Help: "Bytes sent to COS."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "vodpipe_worker_resumed_bytes_total",
			Help: "Bytes not sent again thanks to resume."}),
		partLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vodpipe_worker_part_duration_seconds",
			Help: "Time to upload one part.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		runTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vodpipe_worker_job_duration_seconds",
			Help:    "Time of one run of a job, from taking its message to its outcome, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 16)}, []string{"outcome"}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vodpipe_worker_queue_wait_seconds",
			Help: "Time a job waited in the queue before a worker first took it.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 20)}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vodpipe_worker_retries_total",
			Help: "Retried operations, by operation."}, []string{"op"}),
		renewals: prometheus.NewCounter(prometheus.CounterOpts{Name: "vodpipe_worker_signature_renewals_total",
			Help: "Signatures renewed after a used or expired answer."}),
		shared: prometheus.NewCounter(prometheus.CounterOpts{Name: "vodpipe_worker_signatures_shared_total",
			Help: "Runs that took a signature another job of the same policy was given, instead of asking for one."}),
		refreshes: prometheus.NewCounter(prometheus.CounterOpts{Name: "vodpipe_worker_credential_refreshes_total",
			Help: "Temporary COS credentials refreshed."}),
		progress: map[string][2]int64{}, flushed: map[string]bool{},
	}
	// Every outcome is exported from the start at 0, so rate() and
	// increase() see a job's first failure (a series born at 1 has no rise).
	for _, o := range jobOutcomes {
		m.jobs.WithLabelValues(o)
	}
	m.reg.MustRegister(m.jobs, m.inFlight, m.bytes, m.skipped, m.partLatency, m.runTime, m.queueWait, m.retries, m.renewals, m.shared, m.refreshes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), version.Collector("worker"))
	return m
}

// outcomeKey holds, in a run's context, where count writes the run's outcome.
type outcomeKey struct{}

// count counts a job's outcome and notes it for the run's duration (see
// Worker.handle).
func (w *Worker) count(ctx context.Context, outcome string) {
	w.metrics.jobs.WithLabelValues(outcome).Inc()
	if p, ok := ctx.Value(outcomeKey{}).(*string); ok {
		*p = outcome
	}
}

// jobOutcomes are the outcome labels of vodpipe_worker_jobs_total.
var jobOutcomes = []string{"completed", "failed", "invalid", "canceled", "paused", "duplicate", "retried", "handed_back", "lease_lost"}

// Progress records a job's progress; the worker flushes it to status and events.
func (m *metrics) Progress(jobID string, done, total int64) {
	m.progressMu.Lock()
	m.progress[jobID] = [2]int64{done, total}
	m.progressMu.Unlock()
}

// takeProgress returns and clears the progress changed since the last call.
func (m *metrics) takeProgress() map[string][2]int64 {
	m.progressMu.Lock()
	defer m.progressMu.Unlock()
	out := m.progress
	m.progress = map[string][2]int64{}
	return out
}

func (m *metrics) forget(jobID string) {
	m.progressMu.Lock()
	delete(m.progress, jobID)
	delete(m.flushed, jobID)
	m.progressMu.Unlock()
}

// markFlushed records that a progress write changed the job's status.
func (m *metrics) markFlushed(jobID string) {
	m.progressMu.Lock()
	m.flushed[jobID] = true
	m.progressMu.Unlock()
}

// wasFlushed reports whether a progress write changed the job's status.
func (m *metrics) wasFlushed(jobID string) bool {
	m.progressMu.Lock()
	defer m.progressMu.Unlock()
	return m.flushed[jobID]
}

// PartUploaded counts a part.
func (m *metrics) PartUploaded(n int64, d time.Duration) {
	m.bytes.Add(float64(n))
	m.partLatency.Observe(d.Seconds())
}

// Retry counts a retried operation.
func (m *metrics) Retry(op string) { m.retries.WithLabelValues(op).Inc() }

// SignatureRenewed counts a renewal.
func (m *metrics) SignatureRenewed() { m.renewals.Inc() }

// SignatureShared counts a signature taken from another job of the same policy.
func (m *metrics) SignatureShared() { m.shared.Inc() }

// CredentialRefreshed counts a refresh.
func (m *metrics) CredentialRefreshed() { m.refreshes.Inc() }

// BytesSkipped counts resumed bytes.
func (m *metrics) BytesSkipped(n int64) { m.skipped.Add(float64(n)) }
