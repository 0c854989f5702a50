package notify

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Delivery outcomes, the label values of vodpipe_notify_deliveries_total
// and of attempt records.
const (
	OutcomeDelivered = "delivered" // 2xx
	OutcomeRetry     = "retry"     // failed, another attempt is scheduled
	OutcomeExhausted = "exhausted" // failed, no attempt left
	OutcomeGone      = "gone"      // 410 Gone: the subscription is disabled
)

// metrics are notify's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg        *prometheus.Registry
	deliveries *prometheus.CounterVec
	attempt    prometheus.Histogram
	lag        prometheus.Histogram
	backlog    *prometheus.GaugeVec
	inFlight   *prometheus.GaugeVec
	vodEvents  *prometheus.CounterVec
	pulls      *prometheus.CounterVec
	sseClients prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vodpipe_notify_deliveries_total",
			Help: "Webhook delivery attempts, by outcome (delivered, retry, exhausted, gone)."}, []string{"outcome"}),
		attempt: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vodpipe_notify_delivery_attempt_seconds",
			Help: "Duration of one webhook delivery attempt.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vodpipe_notify_delivery_lag_seconds",
			Help: "Time from an event's publication to its successful delivery.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vodpipe_notify_subscription_backlog",
			Help: "Events not yet delivered to a subscription (its consumer's NumPending)."}, []string{"subscription"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vodpipe_notify_subscription_in_flight",
			Help: "Events being delivered or waiting for a retry (its consumer's NumAckPending)."}, []string{"subscription"}),
		vodEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vodpipe_notify_vod_events_total",
			Help: "VOD events received, by source (callback, pull) and outcome (published, published_by_media_url, duplicate, uncorrelated, ignored, invalid, error)."},
			[]string{"source", "outcome"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vodpipe_notify_pull_requests_total",
			Help: "PullEvents and ConfirmEvents calls, by action and outcome."}, []string{"action", "outcome"}),
		sseClients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vodpipe_notify_sse_clients",
			Help: "Open server-sent event streams."}),
	}
	// Every outcome is exported from the start at 0, so rate() and
	// increase() see the first one (a series born at 1 has no rise).
	for _, o := range []string{OutcomeDelivered, OutcomeRetry, OutcomeExhausted, OutcomeGone} {
		m.deliveries.WithLabelValues(o)
	}
	for _, src := range []string{"callback", "pull"} {
		for _, o := range []string{vodPublished, vodByMediaURL, vodUncorrelated, vodDuplicate, vodIgnored, vodInvalid, vodError} {
			m.vodEvents.WithLabelValues(src, o)
		}
	}
	m.reg.MustRegister(m.deliveries, m.attempt, m.lag, m.backlog, m.inFlight, m.vodEvents, m.pulls, m.sseClients,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
