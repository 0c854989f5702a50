package queue

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// Depth is how many jobs the work queue holds, by what will become of them.
type Depth struct {
	// Pending jobs wait for their first delivery to a worker.
	Pending uint64 `json:"pending"`
	// InFlight jobs are delivered to a worker and not yet acknowledged
	// (running, or waiting for their redelivery after a crash).
	InFlight uint64 `json:"inFlight"`
	// Stranded jobs are held by the stream but neither pending nor in
	// flight: the queue will not deliver them again and they are not
	// dead-lettered. vodpipe's consumer never gives up on a job (the worker
	// bounds deliveries and dead-letters), so this stays zero unless the
	// consumer was changed by hand (a MaxDeliver set on it) or JetStream
	// misbehaves. Above zero for long, it needs an operator.
	Stranded uint64 `json:"stranded"`
	// DeadLetters is the number of entries in the dead-letter stream.
	DeadLetters uint64 `json:"deadLetters"`
	// DeadLettered counts every dead letter the stream ever took (its last
	// sequence): unlike DeadLetters it does not fall as entries expire, so
	// its increase is the dead letters written in a time window.
	DeadLettered uint64 `json:"deadLettered"`
}

// Depth reads the work queue's depth from JetStream. The workers' consumer
// takes every message the stream holds, so what the stream holds beyond the
// consumer's pending and in-flight messages is stranded.
//
// The stream and the consumer cannot be read at one instant, and jobs are
// published and acknowledged meanwhile, so Stranded is a lower bound: the
// stream is read before and after the consumer, and only messages that were
// in the stream at both reads count (those published in between are left
// out, those acknowledged in between are gone from the second read). A job
// that is busy now is therefore never counted as stranded.
func (q *Queue) Depth(ctx context.Context) (Depth, error) {
	before, err := q.Jobs.stream.Info(ctx)
	if err != nil {
		return Depth{}, err
	}
	c, err := q.Jobs.Consumer(ctx)
	if err != nil {
		return Depth{}, err
	}
	ci := c.CachedInfo() // fetched by Consumer just now
	after, err := q.Jobs.stream.Info(ctx)
	if err != nil {
		return Depth{}, err
	}
	di, err := q.DeadLetters.stream.Info(ctx)
	if err != nil {
		return Depth{}, err
	}
	d := Depth{Pending: ci.NumPending, InFlight: uint64(ci.NumAckPending), DeadLetters: di.State.Msgs, DeadLettered: di.State.LastSeq}
	// Messages of the second read that were already there at the first.
	var published uint64
	if after.State.LastSeq > before.State.LastSeq {
		published = after.State.LastSeq - before.State.LastSeq
	}
	if held := d.Pending + d.InFlight + published; after.State.Msgs > held {
		d.Stranded = after.State.Msgs - held
	}
	return d, nil
}

// Collector exports the queue's Depth on every scrape:
// vodpipe_queue_jobs{state="pending|in_flight|stranded"} and
// vodpipe_queue_dead_letters. A scrape that cannot reach JetStream within
// its timeout exports vodpipe_queue_up 0 and no depth.
type Collector struct {
	q       *Queue
	timeout time.Duration
	jobs    *prometheus.Desc
	dead    *prometheus.Desc
	written *prometheus.Desc
	stored  *prometheus.Desc
	up      *prometheus.Desc
}

// NewCollector returns a Collector for q.
func NewCollector(q *Queue) *Collector {
	return &Collector{q: q, timeout: 3 * time.Second,
		jobs: prometheus.NewDesc("vodpipe_queue_jobs",
			"Jobs in the work queue: pending (not yet delivered), in_flight (delivered, not acknowledged), "+
				"stranded (held by the stream, never to be delivered again, not dead-lettered: needs an operator).", []string{"state"}, nil),
		dead: prometheus.NewDesc("vodpipe_queue_dead_letters", "Entries in the dead-letter stream VODPIPE_DLQ.", nil, nil),
		written: prometheus.NewDesc("vodpipe_queue_dead_lettered_total",
			"Dead letters ever written to VODPIPE_DLQ (its last sequence; it does not fall as entries expire).", nil, nil),
		stored: prometheus.NewDesc("vodpipe_jobs_stored",
			"Jobs stored, by state (queued, running, paused, completed, failed, canceled; all: every job), from the job index: one read whatever their number.",
			[]string{"state"}, nil),
		up: prometheus.NewDesc("vodpipe_queue_up", "1 if the last scrape read the queue's depth from JetStream.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobs
	ch <- c.dead
	ch <- c.written
	ch <- c.stored
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	d, err := c.q.Depth(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for state, n := range map[string]uint64{"pending": d.Pending, "in_flight": d.InFlight, "stranded": d.Stranded} {
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(d.DeadLetters))
	ch <- prometheus.MustNewConstMetric(c.written, prometheus.CounterValue, float64(d.DeadLettered))
	if counts, err := c.q.Index.Counts(ctx); err == nil {
		for _, st := range job.States() {
			ch <- prometheus.MustNewConstMetric(c.stored, prometheus.GaugeValue, float64(counts[st]), string(st))
		}
		ch <- prometheus.MustNewConstMetric(c.stored, prometheus.GaugeValue, float64(counts[""]), "all")
	}
}
