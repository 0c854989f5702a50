package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// Pause asks for a job to stop at a part boundary. A queued job is paused at
// once when a worker picks it up; a running one at its next part boundary.
func (q *Queue) Pause(ctx context.Context, jobID string) (*job.Status, error) {
	s, _, err := q.Status(ctx, jobID)
	if err != nil {
		return nil, err
	}
	if s.State != job.StateQueued && s.State != job.StateRunning {
		return s, fmt.Errorf("%w: job %s is %s", ErrConflict, jobID, s.State)
	}
	if _, err := q.setControlUnlessCanceled(ctx, jobID, job.ControlPause); err != nil {
		return s, err
	}
	return s, nil
}

// Resume re-enqueues a paused job; it continues from its recorded offset.
// A pause asked for and not yet carried out (the job is queued or running)
// is withdrawn instead, and the job goes on. A job neither paused nor with
// a pause pending is a conflict.
func (q *Queue) Resume(ctx context.Context, jobID string) (*job.Status, error) {
	prev, err := q.setControlUnlessCanceled(ctx, jobID, job.ControlNone)
	if err != nil {
		return nil, err
	}
	paused := func(s *job.Status) bool { return s.State == job.StatePaused }
	s, err := q.TransitionIf(ctx, jobID, paused, job.StateQueued, func(s *job.Status) { s.Error, s.Runs = nil, 0 })
	switch {
	case errors.Is(err, ErrConflict) && prev == job.ControlPause:
		// Withdrawn before a worker carried it out (s is the status the
		// refused transition read). A worker that read the pause just
		// before reads the key again once it has paused the job, and
		// requeues it (see worker.pause).
		return s, q.Emit(ctx, job.EventResumed, jobID, struct{}{})
	case errors.Is(err, job.ErrBadTransition):
		return s, fmt.Errorf("%w: %v", ErrConflict, err)
	case err != nil:
		return s, err
	}
	if err := q.requeue(ctx, s, "resume"); err != nil {
		return nil, err
	}
	return s, q.Emit(ctx, job.EventResumed, jobID, struct{}{})
}

// requeue publishes the job again so a worker picks it up. It takes a new
// message id: the original one is still in the duplicate window.
func (q *Queue) requeue(ctx context.Context, s *job.Status, why string) error {
	b, err := s.Job.Encode()
	if err != nil {
		return err
	}
	msgID := s.Job.ID + "." + why + "." + strconv.FormatInt(time.Now().UnixNano(), 10)
	if _, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: JobsSubject, Data: b, Header: nats.Header{
		jetstream.MsgIDHeader: []string{msgID}, HeaderResumeOf: []string{s.Job.ID}}}); err != nil {
		return fmt.Errorf("queue: %s %s: %w", why, s.Job.ID, err)
	}
	return nil
}

// Cancel asks for a job to stop and clean up. A paused or queued job is
// canceled when a worker sees it, or at once when paused (nothing runs it).
func (q *Queue) Cancel(ctx context.Context, jobID string) (*job.Status, error) {
	s, _, err := q.Status(ctx, jobID)
	if err != nil {
		return nil, err
	}
	if s.State.Terminal() {
		return s, fmt.Errorf("%w: job %s is %s", ErrConflict, jobID, s.State)
	}
	if err := q.SetControl(ctx, jobID, job.ControlCancel); err != nil {
		return nil, err
	}
	if s.State == job.StatePaused {
		// No worker holds a paused job: hand it to one, which sees the cancel,
		// aborts the multipart upload and deletes the resume state.
		if err := q.requeue(ctx, s, "cancel"); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// setControlUnlessCanceled records a pause (or clears one, for a resume),
// returning the control it replaced, unless a cancel is pending: an accepted cancel is never overwritten by a
// later pause or resume, which answer ErrConflict instead. The write is a
// compare-and-set on the key's revision, so a cancel that lands between the
// read and the write is not lost either.
func (q *Queue) setControlUnlessCanceled(ctx context.Context, jobID string, c job.Control) (prev job.Control, err error) {
	for attempt := 0; ; attempt++ {
		var rev uint64
		prev = job.ControlNone
		e, err := q.control.Get(ctx, jobID)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return prev, fmt.Errorf("queue: control %s: %w", jobID, err)
		case job.Control(e.Value()) == job.ControlCancel:
			return job.ControlCancel, fmt.Errorf("%w: job %s has a cancel pending", ErrConflict, jobID)
		default:
			rev, prev = e.Revision(), job.Control(e.Value())
		}
		switch {
		case c == job.ControlNone && rev == 0:
			return prev, nil
		case c == job.ControlNone:
			err = q.control.Delete(ctx, jobID, jetstream.LastRevision(rev))
		case rev == 0:
			_, err = q.control.Create(ctx, jobID, []byte(c))
		default:
			_, err = q.control.Update(ctx, jobID, []byte(c), rev)
		}
		if err == nil {
			return prev, nil
		}
		if !lostRace(err) || attempt >= 20 {
			return prev, fmt.Errorf("queue: set control %s: %w", jobID, err)
		}
	}
}
