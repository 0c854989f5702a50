package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// Statuses is the status bucket: one record per job (its message, state,
// progress, runs, outcome), written with compare-and-set through the job
// state machine's transitions.
type Statuses struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	control *Control
	files   *Files
}

// Get returns a job's status and its revision, or ErrNotFound.
func (ss *Statuses) Get(ctx context.Context, jobID string) (*job.Status, uint64, error) {
	e, err := ss.kv.Get(ctx, jobID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("%w: job %s", ErrNotFound, jobID)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("queue: status %s: %w", jobID, err)
	}
	s, err := job.UnmarshalStatus(e.Value())
	if err != nil {
		return nil, 0, err
	}
	return s, e.Revision(), nil
}

// Create records a new job as queued, unless a status already exists
// (then it returns that one and created=false): the first submit wins.
func (ss *Statuses) Create(ctx context.Context, j *job.Job) (st *job.Status, created bool, err error) {
	now := time.Now().UTC()
	s := &job.Status{Job: *j, State: job.StateQueued, CreatedAt: now, UpdatedAt: now}
	b, err := job.MarshalStatus(s)
	if err != nil {
		return nil, false, err
	}
	if _, err := ss.kv.Create(ctx, j.ID, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			old, _, gerr := ss.Get(ctx, j.ID)
			return old, false, gerr
		}
		return nil, false, fmt.Errorf("queue: create status %s: %w", j.ID, err)
	}
	return s, true, nil
}

// Update applies f to the job's status with optimistic concurrency,
// retrying on conflicting writes. f returns an error to abort. A missing status
// is created from the zero Status (f sees State "").
func (ss *Statuses) Update(ctx context.Context, jobID string, f func(*job.Status) error) (*job.Status, error) {
	s, _, err := ss.updateStatus(ctx, jobID, Known{}, f)
	return s, err
}

// Known is a job status its holder read or wrote at revision Rev. Passed to
// TransitionFrom it saves the read: the write is tried against Rev first and
// only a conflicting write in between costs a fresh read.
type Known struct {
	Status *job.Status
	Rev    uint64
}

func (ss *Statuses) updateStatus(ctx context.Context, jobID string, known Known, f func(*job.Status) error) (*job.Status, uint64, error) {
	for attempt := 0; ; attempt++ {
		var (
			s   *job.Status
			rev uint64
			err error
		)
		if attempt == 0 && known.Status != nil && known.Rev > 0 {
			c := *known.Status
			s, rev = &c, known.Rev
		} else {
			s, rev, err = ss.Get(ctx, jobID)
		}
		if errors.Is(err, ErrNotFound) {
			s, rev, err = &job.Status{CreatedAt: time.Now().UTC()}, 0, nil
		}
		if err != nil {
			return nil, 0, err
		}
		if err := f(s); err != nil {
			return s, rev, err
		}
		s.UpdatedAt = time.Now().UTC()
		b, err := job.MarshalStatus(s)
		if err != nil {
			return nil, 0, err
		}
		if rev == 0 {
			rev, err = ss.kv.Create(ctx, jobID, b)
		} else {
			rev, err = ss.kv.Update(ctx, jobID, b, rev)
		}
		if err == nil {
			return s, rev, nil
		}
		if !lostRace(err) || attempt >= 20 {
			return nil, 0, fmt.Errorf("queue: update status %s: %w", jobID, err)
		}
	}
}

// Transition moves a job to state `to` through the state machine, then applies f.
func (ss *Statuses) Transition(ctx context.Context, jobID string, to job.State, f func(*job.Status)) (*job.Status, error) {
	s, _, err := ss.TransitionFrom(ctx, jobID, Known{}, to, f)
	return s, err
}

// TransitionFrom is Transition starting from a status the caller knows
// (see Known); it returns the new status and its revision.
func (ss *Statuses) TransitionFrom(ctx context.Context, jobID string, known Known, to job.State, f func(*job.Status)) (*job.Status, uint64, error) {
	return ss.updateStatus(ctx, jobID, known, transition(to, f))
}

// TransitionIf is Transition applied only while ok holds for the job's
// current status (read again on every compare-and-set retry); when it does
// not, nothing is written, the error is ErrConflict and the status returned
// is the one read.
func (ss *Statuses) TransitionIf(ctx context.Context, jobID string, ok func(*job.Status) bool, to job.State, f func(*job.Status)) (*job.Status, error) {
	move := transition(to, f)
	s, _, err := ss.updateStatus(ctx, jobID, Known{}, func(s *job.Status) error {
		if !ok(s) {
			return fmt.Errorf("%w: job %s is %s", ErrConflict, jobID, s.State)
		}
		return move(s)
	})
	return s, err
}

// transition is the update that moves a status to `to` through the state
// machine, then applies f (may be nil).
func transition(to job.State, f func(*job.Status)) func(*job.Status) error {
	return func(s *job.Status) error {
		if err := job.CheckTransition(s.State, to); err != nil {
			return err
		}
		s.State = to
		if f != nil {
			f(s)
		}
		return nil
	}
}

// List returns every job status (for the API's listing; bounded by the bucket).
// It reads the bucket in one pass (a watcher replaying the latest values)
// rather than listing keys and fetching each.
func (ss *Statuses) List(ctx context.Context) ([]*job.Status, error) {
	w, err := ss.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []*job.Status
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e := <-w.Updates():
			if e == nil { // the replay of current values is done
				return out, nil
			}
			s, err := job.UnmarshalStatus(e.Value())
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
}

// SigningJob returns the job while a worker may be processing it: running,
// or unfinished with a cancel pending (aborting its multipart upload takes
// the session's credentials); otherwise an error wrapping job.ErrNotActive.
// The signature service signs only for such a job.
func (ss *Statuses) SigningJob(ctx context.Context, jobID string) (*job.Job, error) {
	s, _, err := ss.Get(ctx, jobID)
	if err == nil && s.State == job.StateRunning {
		return &s.Job, nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	// A replicated bucket's reads may be answered by a replica that has not
	// seen the worker's latest write yet: ask the leader before refusing.
	if s, err = ss.statusFromLeader(ctx, jobID); errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", job.ErrNotActive, err)
	} else if err != nil {
		return nil, err
	}
	if s.State == job.StateRunning {
		return &s.Job, nil
	}
	if !s.State.Terminal() {
		if c, err := ss.control.Get(ctx, jobID); err != nil {
			return nil, err
		} else if c == job.ControlCancel {
			return &s.Job, nil
		}
	}
	return nil, fmt.Errorf("%w: job %s is %s", job.ErrNotActive, jobID, s.State)
}

// statusFromLeader reads a job's status through the status stream's leader
// (the JetStream message-get API), never from a lagging replica.
func (ss *Statuses) statusFromLeader(ctx context.Context, jobID string) (*job.Status, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": "$KV." + StatusBucket + "." + jobID})
	if err != nil {
		return nil, err
	}
	m, err := ss.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+StatusBucket, req)
	if err != nil {
		return nil, fmt.Errorf("queue: status %s: %w", jobID, err)
	}
	var resp struct {
		Message *struct {
			Data []byte `json:"data"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, fmt.Errorf("queue: status %s: %w", jobID, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound,
		resp.Error == nil && (resp.Message == nil || len(resp.Message.Data) == 0): // deleted
		return nil, fmt.Errorf("%w: job %s", ErrNotFound, jobID)
	case resp.Error != nil:
		return nil, fmt.Errorf("queue: status %s: %w", jobID, resp.Error)
	}
	return job.UnmarshalStatus(resp.Message.Data)
}

// Complete records a job's commit: the FileId → job mapping and the
// transition to completed (from known, see TransitionFrom), the two writes
// in flight together. The mapping's failure is returned only when the
// status was written (a caller retrying then writes both again).
func (ss *Statuses) Complete(ctx context.Context, jobID string, known Known, fileID string, f func(*job.Status)) error {
	rec := make(chan error, 1)
	go func() { rec <- ss.files.Record(ctx, fileID, jobID) }()
	_, _, err := ss.TransitionFrom(ctx, jobID, known, job.StateCompleted, f)
	if rerr := <-rec; err == nil {
		err = rerr
	}
	return err
}
