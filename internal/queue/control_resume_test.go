package queue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/pkg/job"
)

func countEvents(t *testing.T, q *queue.Queue, id, typ string) int {
	t.Helper()
	evs, _, err := q.Events.ForJob(t.Context(), id, time.Now().Add(-time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// A pause accepted as its job finished (no run met it: architecture.md says
// such a control stays until the sweep, an hour later) must not make a
// resume of the finished job succeed: the job is neither paused nor has a
// pause that can still be carried out, and openapi.json promises 409 for
// that. Until 0.10 Control.Resume took the refused transition plus a pause
// for "a pause withdrawn before a worker carried it out": it answered
// accepted and emitted job.resumed after job.completed (or job.failed).
func TestResumeOfAFinishedJobWithALeftoverPauseIsAConflict(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ctx := t.Context()
	for _, end := range []job.State{job.StateCompleted, job.StateFailed} {
		j := newJob("finished-" + string(end))
		if _, _, err := q.Statuses.Create(ctx, j); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Statuses.Transition(ctx, j.ID, job.StateRunning, nil); err != nil {
			t.Fatal(err)
		}
		// The operator pauses as the last part is in flight: accepted.
		if _, err := q.Control.Pause(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		// The worker finishes the job as its worker does (Statuses.Complete
		// / fail), which leaves the control key alone.
		if _, err := q.Statuses.Transition(ctx, j.ID, end, nil); err != nil {
			t.Fatal(err)
		}
		s, err := q.Control.Resume(ctx, j.ID)
		resumed := countEvents(t, q, j.ID, job.EventResumed)
		if !errors.Is(err, queue.ErrConflict) || resumed != 0 {
			state := job.State("?")
			if s != nil {
				state = s.State
			}
			t.Errorf("resume of a %s job with a leftover pause: err %v (state %s), job.resumed events %d; want ErrConflict (409) and none",
				end, err, state, resumed)
		}
	}
}
