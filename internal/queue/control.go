package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// Control is the control bucket: an operator's pending instruction for a
// job (pause, cancel), and the pause, resume and cancel requests that set
// it, move the job's status and requeue it.
type Control struct {
	nc       *nats.Conn
	kv       jetstream.KeyValue
	statuses *Statuses
	jobs     *Jobs
	events   *Events
}

// Get returns the operator's instruction for a job.
func (ctl *Control) Get(ctx context.Context, jobID string) (job.Control, error) {
	e, err := ctl.kv.Get(ctx, jobID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return job.ControlNone, nil
	}
	if err != nil {
		return job.ControlNone, fmt.Errorf("queue: control %s: %w", jobID, err)
	}
	return job.Control(e.Value()), nil
}

// Current returns the operator's instruction for a job as the control
// stream's leader has it: a direct get (Get) may be answered by a replica
// that lags behind, one that a partition cut off from a resume, say. The
// worker reads a pause or cancel so before it carries it out.
func (ctl *Control) Current(ctx context.Context, jobID string) (job.Control, error) {
	c, _, err := ctl.lastWithRevision(ctx, jobID)
	if err != nil {
		return job.ControlNone, fmt.Errorf("queue: control %s: %w", jobID, err)
	}
	return c, nil
}

// Stale reads the controls that ids have now, by id with their revisions.
// Read before the ids' new statuses are created, each is an earlier job's
// of the same id (a pause or cancel is accepted only for a job that has a
// status): a cancel accepted as that job finished, which no worker carried
// out, would otherwise cancel the new job. ForgetStale deletes it once the
// new job exists. One read per thousand ids.
func (ctl *Control) Stale(ctx context.Context, ids []string) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := lastOfKeys(ctx, ctl.nc, ControlBucket, ids, func(key string, rev uint64, _ []byte) error {
		out[key] = rev
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ForgetStale deletes job jobID's control if it is still the one Stale read
// at rev: a pause or cancel of the new job, written since, stays. It
// reports whether it deleted it.
func (ctl *Control) ForgetStale(ctx context.Context, jobID string, rev uint64) (bool, error) {
	err := ctl.kv.Delete(ctx, jobID, jetstream.LastRevision(rev))
	switch {
	case err == nil:
		return true, nil
	case lostRace(err):
		return false, nil
	}
	return false, fmt.Errorf("queue: forget the earlier job's control of %s: %w", jobID, err)
}

// forgetStale deletes, of stale (Stale's answer), the controls of the jobs
// in created. A failure is not the caller's: the control stays, as a
// failed read of Stale leaves it.
func (ctl *Control) forgetStale(ctx context.Context, stale map[string]uint64, created []string) {
	for _, id := range created {
		if rev, ok := stale[id]; ok {
			_, _ = ctl.ForgetStale(ctx, id, rev)
		}
	}
}

// Set records an instruction; ControlNone clears it.
func (ctl *Control) Set(ctx context.Context, jobID string, c job.Control) error {
	var err error
	if c == job.ControlNone {
		err = ctl.kv.Delete(ctx, jobID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			err = nil
		}
	} else {
		_, err = ctl.kv.Put(ctx, jobID, []byte(c))
	}
	if err != nil {
		return fmt.Errorf("queue: set control %s: %w", jobID, err)
	}
	return nil
}

// Watch calls f with every job's current control, then calls loaded
// once, then calls f for every change until ctx ends. A watcher that
// took only changes would never learn of a pause or a cancel accepted
// before it started, and would run such a job to its end. It creates no
// consumer (see follow), so a worker's NATS user needs no right to. The
// changes come from the bucket's RePublish (ControlChanges): stored
// writes only, in the order stored, so a pause, a resume or a ForgetStale
// that JetStream refused (another write came first) changes nothing. When
// the republishes stop coming (an older ingest set the bucket up), writes
// apply as published, and a compare-and-set write to a key it holds a
// cancel of is checked with the stream's leader first
// (FollowSettlingWritesOver), so a refused one cannot take the cancel out
// of the view.
func (ctl *Control) Watch(ctx context.Context, f func(jobID string, c job.Control), loaded func()) error {
	return Follow(ctx, ctl.nc, ControlBucket, func(c KVChange) {
		ctrl := job.Control(c.Value)
		if c.Deleted {
			ctrl = job.ControlNone
		}
		f(c.Key, ctrl)
	}, loaded, FollowRepublished(ControlChanges+"."),
		FollowSettlingWritesOver(func(v []byte) bool { return job.Control(v) == job.ControlCancel }))
}

// Pause asks for a job to stop at a part boundary. A queued job is paused at
// once when a worker picks it up; a running one at its next part boundary.
func (ctl *Control) Pause(ctx context.Context, jobID string) (*job.Status, error) {
	s, _, err := ctl.statuses.Get(ctx, jobID)
	if err != nil {
		return nil, err
	}
	if s.State != job.StateQueued && s.State != job.StateRunning {
		return s, fmt.Errorf("%w: job %s is %s", ErrConflict, jobID, s.State)
	}
	if _, err := ctl.setUnlessCanceled(ctx, jobID, job.ControlPause); err != nil {
		return s, err
	}
	return s, nil
}

// Resume re-enqueues a paused job; it continues from its recorded offset.
// A pause asked for and not yet carried out (the job is queued or running)
// is withdrawn instead, and the job goes on. A job neither paused nor with
// a pause pending is a conflict.
func (ctl *Control) Resume(ctx context.Context, jobID string) (*job.Status, error) {
	prev, err := ctl.setUnlessCanceled(ctx, jobID, job.ControlNone)
	if err != nil {
		return nil, err
	}
	paused := func(s *job.Status) bool { return s.State == job.StatePaused }
	var was job.Status
	s, err := ctl.statuses.TransitionIf(ctx, jobID, paused, job.StateQueued, func(s *job.Status) { was, s.Error, s.Runs = *s, nil, 0 })
	switch {
	case errors.Is(err, ErrConflict) && s != nil && s.State.Terminal():
		// A pause left over from a run that ended first (taken away above):
		// there is nothing to resume.
		return s, fmt.Errorf("%w: job %s is %s", ErrConflict, jobID, s.State)
	case errors.Is(err, ErrConflict) && prev == job.ControlPause:
		// Withdrawn before a worker carried it out (s is the status the
		// refused transition read). A worker that read the pause just
		// before reads the key again once it has paused the job, and
		// requeues it (see worker.pause).
		return s, ctl.events.Emit(ctx, job.EventResumed, jobID, struct{}{})
	case errors.Is(err, job.ErrBadTransition):
		return s, fmt.Errorf("%w: %v", ErrConflict, err)
	case err != nil:
		return s, err
	}
	if undone, err := ctl.jobs.requeueOrUndo(ctx, s, "resume", job.StatePaused, func(s *job.Status) { s.Error, s.Runs = was.Error, was.Runs }); err != nil {
		if undone && prev == job.ControlPause {
			_, _ = ctl.setUnlessCanceled(context.WithoutCancel(ctx), jobID, job.ControlPause)
		}
		return nil, err
	}
	return s, ctl.events.Emit(ctx, job.EventResumed, jobID, struct{}{})
}

// Cancel asks for a job to stop and clean up. A paused or queued job is
// canceled when a worker sees it, or at once when paused (nothing runs it).
func (ctl *Control) Cancel(ctx context.Context, jobID string) (*job.Status, error) {
	s, _, err := ctl.statuses.Get(ctx, jobID)
	if err != nil {
		return nil, err
	}
	if s.State.Terminal() {
		return s, fmt.Errorf("%w: job %s is %s", ErrConflict, jobID, s.State)
	}
	if err := ctl.Set(ctx, jobID, job.ControlCancel); err != nil {
		return nil, err
	}
	if s.State == job.StatePaused {
		// No worker holds a paused job: hand it to one, which sees the cancel,
		// aborts the multipart upload and deletes the resume state.
		if err := ctl.jobs.requeue(ctx, s, "cancel"); err != nil {
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
func (ctl *Control) setUnlessCanceled(ctx context.Context, jobID string, c job.Control) (prev job.Control, err error) {
	for attempt := 0; ; attempt++ {
		var rev uint64
		prev = job.ControlNone
		// From the stream's leader: a replica that lags (restarted, or
		// cut off by a partition) may not have the pause yet, and a
		// resume that read "none" there would write nothing and requeue
		// the job with its pause still in the bucket.
		cur, seq, err := ctl.lastWithRevision(ctx, jobID)
		switch {
		case err != nil:
			return prev, fmt.Errorf("queue: control %s: %w", jobID, err)
		case cur == job.ControlNone:
		case cur == job.ControlCancel:
			return job.ControlCancel, fmt.Errorf("%w: job %s has a cancel pending", ErrConflict, jobID)
		default:
			rev, prev = seq, cur
		}
		switch {
		case c == job.ControlNone && rev == 0:
			return prev, nil
		case c == job.ControlNone:
			err = ctl.kv.Delete(ctx, jobID, jetstream.LastRevision(rev))
		case rev == 0:
			_, err = ctl.kv.Create(ctx, jobID, []byte(c))
		default:
			_, err = ctl.kv.Update(ctx, jobID, []byte(c), rev)
		}
		if err == nil {
			return prev, nil
		}
		if !lostRace(err) || attempt >= 20 {
			return prev, fmt.Errorf("queue: set control %s: %w", jobID, err)
		}
	}
}

// lastWithRevision reads job jobID's control and its revision from the
// stream's leader; when the leader cannot be asked (a NATS user of 0.9's
// configuration may not: the request goes unanswered), from any replica
// as before. A deleted key reads as ControlNone.
func (ctl *Control) lastWithRevision(ctx context.Context, jobID string) (job.Control, uint64, error) {
	e, err := lastFromLeader(ctx, ctl.nc, ControlBucket, jobID)
	if err == nil {
		if e.Deleted {
			return job.ControlNone, 0, nil
		}
		return job.Control(e.Value), e.seq, nil
	}
	entry, err := ctl.kv.Get(ctx, jobID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return job.ControlNone, 0, nil
	}
	if err != nil {
		return job.ControlNone, 0, err
	}
	return job.Control(entry.Value()), entry.Revision(), nil
}

// Sweep purges the control bucket's deletion markers (a cleared pause or
// cancel) last written more than age ago (SweepBucket), and deletes the
// pause or cancel of a job that finished more than age ago, or that has no
// status, written more than age ago: a pause or cancel accepted as its job
// finished, which no run met (a job of one request, its last part in
// flight), stayed for good otherwise, and what a worker reads at its start
// and after a reconnect (every key, Watch) grew with every job that ever
// finished so. Each deletion is conditional on the revision read (a
// control written since stays) and leaves a marker that every follower
// applies, purged by a later sweep. At most most of each a sweep; it
// returns how many markers it purged and controls it deleted.
func (ctl *Control) Sweep(ctx context.Context, age time.Duration, most int) (int, error) {
	type old struct {
		key string
		rev uint64
	}
	var olds []old
	removed, err := sweepBucket(ctx, ctl.nc, ControlBucket, age, most, func(key string, rev uint64) {
		if len(olds) < most {
			olds = append(olds, old{key, rev})
		}
	})
	if err != nil || len(olds) == 0 {
		return removed, err
	}
	keys := make([]string, len(olds))
	for i, o := range olds {
		keys[i] = o.key
	}
	cutoff := time.Now().Add(-age)
	ended := map[string]bool{} // a status of which says its job runs no more
	for _, k := range keys {
		ended[k] = true // no status: none will run it
	}
	err = lastOfKeys(ctx, ctl.nc, StatusBucket, keys, func(key string, _ uint64, value []byte) error {
		s, err := job.UnmarshalStatus(value)
		ended[key] = err == nil && s.State.Terminal() && s.UpdatedAt.Before(cutoff)
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("queue: sweep %s: %w", ControlBucket, err)
	}
	for _, o := range olds {
		if !ended[o.key] {
			continue
		}
		switch err := ctl.kv.Delete(ctx, o.key, jetstream.LastRevision(o.rev)); {
		case err == nil:
			removed++
		case !lostRace(err):
			return removed, fmt.Errorf("queue: sweep %s: %w", ControlBucket, err)
		}
	}
	return removed, nil
}
