package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vodpipe/vodpipe/internal/netfault"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// A cancel accepted while the job's worker is carrying out a pause (after
// worker.pause read the pause from the leader, before it wrote "paused")
// must still end the job canceled: the API answered 202. Control.Cancel
// read the status as running, so it did not requeue the job; worker.pause
// then writes paused and reads the control again: a cancel has the message
// handed back, and its next delivery cancels the paused job. Until 0.10 it
// emitted job.paused and acked, and the job stayed paused for good with its
// cancel pending.
//
// The worker's NATS connection goes through a proxy with latency so that
// the window between its leader read of the control and its status write
// is wide; the test cancels the moment that leader read reaches the server.
func TestCancelDuringPauseIsCarriedOut(t *testing.T) {
	e := newEnv(t, true, func(c *vodsim.Config) { c.Faults = vodsim.FaultConfig{Bandwidth: 4 << 20} })
	proxy, err := netfault.Listen("worker-nats", strings.TrimPrefix(e.nats.URL, "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	e.cfg.NATS.URL = "nats://" + proxy.Addr()
	e.startWorker("w1")

	const id = "pause-cancel-1"
	src, _ := e.source("pause-cancel.mp4", 16<<20)
	e.submit(&job.Job{ID: id, Source: src})
	testharness.WaitFor(t, 20*time.Second, "parts in vodsim", func() bool {
		u := e.sim.Uploads()
		return len(u) == 1 && len(u[0].Parts) >= 2
	})
	proxy.Set(netfault.Faults{Latency: 250 * time.Millisecond})

	if _, err := e.q.Control.Pause(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	// The worker's leader read of this job's control (worker.pause's first
	// Control.Current) as it reaches the server.
	nc := e.nats.Connect(t)
	seen := make(chan struct{}, 16)
	sub, err := nc.Subscribe("$JS.API.STREAM.MSG.GET.KV_"+queue.ControlBucket, func(m *nats.Msg) {
		if strings.Contains(string(m.Data), "$KV."+queue.ControlBucket+"."+id) {
			select {
			case seen <- struct{}{}:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-seen:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker never read the pause from the leader")
	}
	st, err := e.q.Control.Cancel(t.Context(), id)
	if err != nil {
		t.Fatalf("cancel refused: %v", err)
	}
	t.Logf("cancel accepted; Control.Cancel read the job %s", st.State)
	proxy.Set(netfault.Faults{})

	deadline := time.Now().Add(20 * time.Second)
	var s *job.Status
	for time.Now().Before(deadline) {
		if s, _, err = e.q.Statuses.Get(t.Context(), id); err == nil && s.State == job.StateCanceled {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c, _ := e.q.Control.Current(t.Context(), id)
	if s == nil || s.State != job.StateCanceled {
		_, rerr := e.q.Control.Resume(t.Context(), id)
		t.Fatalf("a cancel accepted (202) while the worker paused the job never took effect: state %v, control %q, "+
			"job.paused=%d job.canceled=%d; a resume now answers: %v",
			s.State, c, len(e.events(job.EventPaused, id)), len(e.events(job.EventCanceled, id)), rerr)
	}
}

// A cancel (or pause) accepted while a job's run was failing for good is
// met by no run: it stays in the control bucket for the sweep's hour
// (architecture.md). A retry of the failed job (POST /v1/jobs/{id}/retry,
// queue.DeadLetters.Requeue) forgets a control the failed run left, as an
// earlier job's is forgotten for a new one. Until 0.10 the retried run met
// the old cancel and the job the operator asked to run again ended canceled
// (a leftover pause: paused) instead of completing.
func TestRetryOfAFailedJobIsNotCanceledByAnOldCancel(t *testing.T) {
	e := newEnv(t, true)
	ctx := t.Context()
	const id = "retry-after-cancel-1"
	src, data := e.source("retry-after-cancel.mp4", 2<<20+5)
	j := &job.Job{V: 1, ID: id, Source: src}
	j.Normalize()
	if _, _, err := e.q.Statuses.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	// What a worker does with the job, without a worker: it runs...
	if _, err := e.q.Statuses.Transition(ctx, id, job.StateRunning, nil); err != nil {
		t.Fatal(err)
	}
	// ...the operator cancels (accepted: the job is running)...
	if _, err := e.q.Control.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	// ...and the run fails for good before a part boundary (worker.fail:
	// dead letter, then failed).
	raw, err := j.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.q.DeadLetters.Publish(ctx, job.DeadLetter{JobID: id, Code: "source_unreadable", Reason: "test", Attempt: 1}, raw); err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.Statuses.Transition(ctx, id, job.StateFailed, func(s *job.Status) {
		s.Error = &job.Error{Code: "source_unreadable", Message: "test", Permanent: true}
	}); err != nil {
		t.Fatal(err)
	}
	// The operator retries it (what POST /v1/jobs/{id}/retry does).
	dl, err := e.q.DeadLetters.LastOf(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.DeadLetters.Requeue(ctx, dl.Seq); err != nil {
		t.Fatal(err)
	}
	// Only the retry's copy of the job is in the queue.
	e.startWorker("w1")
	s := e.waitState(id, job.StateCompleted, 30*time.Second)
	e.storedEquals(s, data)
}
