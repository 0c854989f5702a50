package queue_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// TestDepthCountsStrandedJobs: vodpipe's consumer never gives up on a
// job (the worker bounds deliveries), but if someone bounds it by hand a job
// can run out of deliveries in the queue itself: neither pending nor in
// flight, never delivered again. Depth counts it as stranded, and the
// collector exports it for an alert.
func TestDepthCountsStrandedJobs(t *testing.T) {
	q, n := openQueue(t, queue.Config{AckWait: 200 * time.Millisecond})
	ctx := t.Context()
	c, _ := q.Jobs.Consumer(ctx)
	bounded := c.CachedInfo().Config
	bounded.MaxDeliver = 2
	if _, err := n.JetStream(t).UpdateConsumer(ctx, queue.JobsStream, bounded); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Jobs.Publish(ctx, newJob("doomed-1")); err != nil {
		t.Fatal(err)
	}
	// Its two deliveries go to a worker that never acks; JetStream gives it
	// up when it next tries to deliver, so keep pulling until it has.
	testharness.WaitFor(t, 10*time.Second, "the job's deliveries used up", func() bool {
		msgs, err := c.Fetch(1, jetstream.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for range msgs.Messages() {
		}
		d, err := q.Depth(ctx)
		return err == nil && d.Stranded == 1
	})
	if _, err := q.Jobs.Publish(ctx, newJob("waiting-1")); err != nil {
		t.Fatal(err)
	}
	d, err := q.Depth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d != (queue.Depth{Pending: 1, InFlight: 0, Stranded: 1, DeadLetters: 0}) {
		t.Fatalf("depth = %+v, want 1 pending and 1 stranded", d)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(queue.NewCollector(q))
	want := `
# HELP vodpipe_queue_dead_letters Entries in the dead-letter stream VODPIPE_DLQ.
# TYPE vodpipe_queue_dead_letters gauge
vodpipe_queue_dead_letters 0
# HELP vodpipe_queue_up 1 if the last scrape read the queue's depth from JetStream.
# TYPE vodpipe_queue_up gauge
vodpipe_queue_up 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vodpipe_queue_dead_letters", "vodpipe_queue_up"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "vodpipe_queue_jobs" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	if got["pending"] != 1 || got["in_flight"] != 0 || got["stranded"] != 1 || len(got) != 3 {
		t.Fatalf("vodpipe_queue_jobs = %v", got)
	}
}

// TestDepthCountsDeliveredJobsInFlight: a delivered, unacknowledged job is in
// flight, not stranded; once acknowledged the queue is empty.
func TestDepthCountsDeliveredJobsInFlight(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ctx := t.Context()
	if _, err := q.Jobs.Publish(ctx, newJob("running-1")); err != nil {
		t.Fatal(err)
	}
	c, _ := q.Jobs.Consumer(ctx)
	msgs, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for m := range msgs.Messages() {
		got = append(got, m)
	}
	if len(got) != 1 {
		t.Fatalf("fetched %d messages", len(got))
	}
	if d, err := q.Depth(ctx); err != nil || d != (queue.Depth{InFlight: 1}) {
		t.Fatalf("depth while delivered = %+v, %v", d, err)
	}
	if err := got[0].DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 5*time.Second, "an empty queue", func() bool {
		d, err := q.Depth(ctx)
		return err == nil && d == queue.Depth{}
	})
}

// TestDeadLetteredCountsEveryDeadLetter: the count of dead letters written
// does not fall when an entry expires (here: is removed), the number held
// does.
func TestDeadLetteredCountsEveryDeadLetter(t *testing.T) {
	q, n := openQueue(t, queue.Config{})
	ctx := t.Context()
	for _, id := range []string{"dl-1", "dl-2"} {
		if err := q.DeadLetters.Publish(ctx, job.DeadLetter{JobID: id, Code: "invalid_message", Reason: "test", Attempt: 1}, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	dlq, err := n.JetStream(t).Stream(ctx, queue.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := dlq.DeleteMsg(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if d, err := q.Depth(ctx); err != nil || d.DeadLetters != 1 || d.DeadLettered != 2 {
		t.Fatalf("depth %+v (%v), want 1 held and 2 written", d, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(queue.NewCollector(q))
	want := `
# HELP vodpipe_queue_dead_lettered_total Dead letters ever written to VODPIPE_DLQ (its last sequence; it does not fall as entries expire).
# TYPE vodpipe_queue_dead_lettered_total counter
vodpipe_queue_dead_lettered_total 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vodpipe_queue_dead_lettered_total"); err != nil {
		t.Fatal(err)
	}
}

// TestJobsStoredByState: the collector exports the index's counts by state.
func TestJobsStoredByState(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ids := submitN(t, q, "stored", 5)
	if _, err := q.Statuses.Transition(t.Context(), ids[0], job.StateRunning, nil); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(queue.NewCollector(q))
	want := `
# HELP vodpipe_jobs_stored Jobs stored, by state (queued, running, paused, completed, failed, canceled; all: every job), from the job index: one read whatever their number.
# TYPE vodpipe_jobs_stored gauge
vodpipe_jobs_stored{state="all"} 5
vodpipe_jobs_stored{state="canceled"} 0
vodpipe_jobs_stored{state="completed"} 0
vodpipe_jobs_stored{state="failed"} 0
vodpipe_jobs_stored{state="paused"} 0
vodpipe_jobs_stored{state="queued"} 4
vodpipe_jobs_stored{state="running"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vodpipe_jobs_stored"); err != nil {
		t.Fatal(err)
	}
}
