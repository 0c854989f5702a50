package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/queue"
	"github.com/vodpipe/vodpipe/pkg/resume"
	"github.com/vodpipe/vodpipe/pkg/upload"
)

// outOfDeliveries reopens e's queue with a bound of bound deliveries and
// a short ack wait, then takes the job's deliveries as workers that die each
// time would (no ack, no outcome): its bound deliveries and one more, which
// stands for a delivery while no worker that could dead-letter it was up.
// The queue itself never gives up on the job, so that one comes too.
func outOfDeliveries(t *testing.T, e *env, bound int) {
	t.Helper()
	e.cfg.QueueConfig.AckWait, e.cfg.QueueConfig.MaxDeliver = 300*time.Millisecond, bound
	q, err := queue.Open(t.Context(), e.nats.JetStream(t), e.cfg.QueueConfig)
	if err != nil {
		t.Fatal(err)
	}
	e.q = q
	c, err := q.Consumer(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i := range bound + 1 {
		msgs, err := c.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range msgs.Messages() {
			if md, _ := m.Metadata(); md == nil || int(md.NumDelivered) != i+1 {
				t.Fatalf("delivery %d: metadata %+v", i+1, md)
			}
			n++
		}
		if n != 1 {
			t.Fatalf("delivery %d: %d messages", i+1, n)
		}
	}
	ci, err := c.Info(t.Context())
	if err != nil || ci.Config.MaxDeliver != -1 {
		t.Fatalf("consumer info = %+v, %v: the consumer must not bound deliveries", ci, err)
	}
}

// TestJobOutOfDeliveriesFailsWithNoWorkerUpAtTheTime: a job whose workers
// all died on it, the last while no worker at all was up, is not left in the
// queue: the next worker to start dead-letters it and fails it, uploading
// nothing. (When JetStream bounded the deliveries, only its one
// max-deliveries advisory could do that, and with no worker listening the
// job stayed in the queue for good, never delivered and never failed.)
func TestJobOutOfDeliveriesFailsWithNoWorkerUpAtTheTime(t *testing.T) {
	e := newEnv(t, true)
	src, _ := e.source("dying.mp4", 300_000)
	j := &job.Job{ID: "dying-1", Source: src}
	e.submit(j)
	outOfDeliveries(t, e, 3)
	e.startWorker("w1")
	s := e.waitState(j.ID, job.StateFailed, 30*time.Second)
	if s.Error == nil || s.Error.Code != "max_deliveries" || !strings.Contains(s.Error.Message, "3 deliveries") {
		t.Fatalf("error = %+v, want max_deliveries after 3 deliveries", s.Error)
	}
	var dl []queue.DeadLetter
	testharness.WaitFor(t, 10*time.Second, "the dead letter", func() bool {
		var err error
		dl, err = e.q.DeadLetters(t.Context())
		return err == nil && len(dl) == 1
	})
	if dl[0].JobID != j.ID || dl[0].Code != "max_deliveries" || dl[0].Reason == "" || len(dl[0].Message) == 0 {
		t.Fatalf("dead letter = %+v", dl[0])
	}
	if ev := e.events(job.EventFailed, j.ID); len(ev) != 1 {
		t.Fatalf("job.failed events = %d, want 1", len(ev))
	}
	c, _ := e.q.Consumer(t.Context())
	testharness.WaitFor(t, 10*time.Second, "the message gone from the queue", func() bool {
		ci, err := c.Info(t.Context())
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	})
	if n := len(e.sim.Sessions()); n != 0 {
		t.Fatalf("vodsim sessions = %d: a job out of deliveries must not run again", n)
	}
}

// TestJobOutOfDeliveriesButCommittedCompletes: a job whose last worker died
// after the commit was recorded is out of deliveries too, but its file
// exists: it completes with that FileId instead of failing. The resume state
// is in JetStream here (no Redis), which the worker reads apart from the lease.
func TestJobOutOfDeliveriesButCommittedCompletes(t *testing.T) {
	e := newEnv(t, false)
	src, data := e.source("late.mp4", 300_000)
	j := &job.Job{ID: "late-1", Source: src}
	store, err := resume.NewKV(t.Context(), e.nats.JetStream(t), "vodpipe_resume", 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := store.Acquire(t.Context(), j.ID, "w-before", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SaveSession(t.Context(), l, upload.Session{VodSessionKey: "s-1", Bucket: "b", Region: "ap-guangzhou",
		VideoKey: "/v/late.mp4", Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	if err := store.SaveCommit(t.Context(), l, "5285890788888", "https://vod/late.mp4", ""); err != nil {
		t.Fatal(err)
	}
	if err := store.Release(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	e.submit(j)
	outOfDeliveries(t, e, 2)
	e.startWorker("w1")
	s := e.waitState(j.ID, job.StateCompleted, 30*time.Second)
	if s.FileID != "5285890788888" {
		t.Fatalf("status = %+v, want the recorded commit", s)
	}
	if dl, err := e.q.DeadLetters(t.Context()); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters = %+v, %v", dl, err)
	}
}
