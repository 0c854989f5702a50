package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/resume"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/internal/upload"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// diedOn reopens e's queue with a bound of bound runs and a short ack
// wait, then takes the jobs' deliveries as workers that die on them would:
// each of the first runs deliveries of a job starts a run (the status counts
// it, as a worker marking the job running does) and ends with no ack and no
// outcome. One more delivery of each goes unanswered without starting a run
// (a worker that found its lease held, say): the queue itself never gives up
// on a job, so that one comes too, and it must not count.
func diedOn(t *testing.T, e *env, bound int, runs map[string]int) {
	t.Helper()
	ctx := t.Context()
	e.cfg.QueueConfig.AckWait, e.cfg.QueueConfig.MaxDeliver = 300*time.Millisecond, bound
	q, err := queue.Open(ctx, e.nats.JetStream(t), e.cfg.QueueConfig)
	if err != nil {
		t.Fatal(err)
	}
	e.q = q
	c, err := q.Jobs.Consumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	left := 0
	for _, n := range runs {
		left += n + 1
	}
	seen := map[string]int{}
	for left > 0 {
		msgs, err := c.Fetch(left, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range msgs.Messages() {
			got++
			j, err := job.Decode(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			if md, _ := m.Metadata(); md == nil || int(md.NumDelivered) <= seen[j.ID] {
				t.Fatalf("%s: delivery metadata %+v after %d deliveries", j.ID, md, seen[j.ID])
			}
			seen[j.ID]++
			switch {
			case seen[j.ID] > runs[j.ID]+1:
				continue // a further delivery while the others come: starts nothing either
			case seen[j.ID] == runs[j.ID]+1:
				left--
				continue // the delivery that starts nothing
			}
			left--
			if _, err := q.Statuses.Update(ctx, j.ID, func(s *job.Status) error {
				s.State, s.Runs, s.Worker = job.StateRunning, s.Runs+1, "w-dead"
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if got == 0 {
			t.Fatalf("no delivery within 10s; %d left", left)
		}
	}
	ci, err := c.Info(ctx)
	if err != nil || ci.Config.MaxDeliver != -1 {
		t.Fatalf("consumer info = %+v, %v: the consumer must not bound deliveries", ci, err)
	}
}

// TestJobOutOfRunsFailsWithNoWorkerUpAtTheTime: a job whose workers all
// died on it, the last while no worker at all was up, is not left in the
// queue: the next worker to start dead-letters it and fails it, uploading
// nothing. (When JetStream bounded the deliveries, only its one
// max-deliveries advisory could do that, and with no worker listening the
// job stayed in the queue for good, never delivered and never failed.) A job
// one run short of the bound runs and completes, whatever deliveries came
// without a run.
func TestJobOutOfRunsFailsWithNoWorkerUpAtTheTime(t *testing.T) {
	e := newEnv(t, true)
	src, _ := e.source("dying.mp4", 300_000)
	j := &job.Job{ID: "dying-1", Source: src}
	e.submit(j)
	src2, data2 := e.source("survivor.mp4", 200_000)
	survivor := &job.Job{ID: "survivor-1", Source: src2}
	e.submit(survivor)
	// Out of runs too, and its resume state is garbled: it cannot say the
	// job was committed, and reading it again will not help.
	garbled := &job.Job{ID: "garbled-1", Source: src}
	e.submit(garbled)
	if err := e.redis.Client(t).HSet(t.Context(), resume.DefaultPrefix+":{garbled-1}:state", "session", "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	diedOn(t, e, 3, map[string]int{j.ID: 3, survivor.ID: 2, garbled.ID: 3})
	e.startWorker("w1")
	for _, id := range []string{j.ID, garbled.ID} {
		s := e.waitState(id, job.StateFailed, 30*time.Second)
		if s.Error == nil || s.Error.Code != "max_deliveries" || !strings.Contains(s.Error.Message, "3 runs") {
			t.Fatalf("%s: error = %+v, want max_deliveries after 3 runs", id, s.Error)
		}
	}
	done := e.waitState(survivor.ID, job.StateCompleted, 30*time.Second)
	if done.Runs != 3 {
		t.Fatalf("survivor runs = %d, want 3 (its last one completed)", done.Runs)
	}
	e.storedEquals(done, data2)
	dl, err := e.q.DeadLetters.All(t.Context())
	if err != nil || len(dl) != 2 {
		t.Fatalf("dead letters = %+v, %v", dl, err)
	}
	for _, d := range dl {
		if (d.JobID != j.ID && d.JobID != garbled.ID) || d.Code != "max_deliveries" || d.Reason == "" || len(d.Message) == 0 {
			t.Fatalf("dead letter = %+v", d)
		}
	}
	c, _ := e.q.Jobs.Consumer(t.Context())
	testharness.WaitFor(t, 10*time.Second, "the messages gone from the queue", func() bool {
		ci, err := c.Info(t.Context())
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	})
	// job.failed goes out before the message is terminated.
	if ev := e.events(job.EventFailed, j.ID); len(ev) != 1 {
		t.Fatalf("job.failed events = %d, want 1", len(ev))
	}
	if n := len(e.sim.Sessions()); n != 1 {
		t.Fatalf("vodsim sessions = %d, want 1 (the survivor's): a job out of runs must not run again", n)
	}
}

// TestJobOutOfRunsButCommittedCompletes: a job whose last worker died
// after the commit was recorded is out of runs too, but its file
// exists: it completes with that FileId instead of failing. The resume state
// is in JetStream here (no Redis), which the worker reads apart from the lease.
func TestJobOutOfRunsButCommittedCompletes(t *testing.T) {
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
	diedOn(t, e, 2, map[string]int{j.ID: 2})
	e.startWorker("w1")
	s := e.waitState(j.ID, job.StateCompleted, 30*time.Second)
	if s.FileID != "5285890788888" {
		t.Fatalf("status = %+v, want the recorded commit", s)
	}
	if dl, err := e.q.DeadLetters.All(t.Context()); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters = %+v, %v", dl, err)
	}
}
