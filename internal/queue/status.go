package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// Status returns a job's status and its revision, or ErrNotFound.
func (q *Queue) Status(ctx context.Context, jobID string) (*job.Status, uint64, error) {
	e, err := q.status.Get(ctx, jobID)
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

// CreateStatus records a new job as queued, unless a status already exists
// (then it returns that one and created=false): the first submit wins.
func (q *Queue) CreateStatus(ctx context.Context, j *job.Job) (st *job.Status, created bool, err error) {
	now := time.Now().UTC()
	s := &job.Status{Job: *j, State: job.StateQueued, CreatedAt: now, UpdatedAt: now}
	b, err := job.MarshalStatus(s)
	if err != nil {
		return nil, false, err
	}
	if _, err := q.status.Create(ctx, j.ID, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			old, _, gerr := q.Status(ctx, j.ID)
			return old, false, gerr
		}
		return nil, false, fmt.Errorf("queue: create status %s: %w", j.ID, err)
	}
	return s, true, nil
}

// UpdateStatus applies f to the job's status with optimistic concurrency,
// retrying on conflicting writes. f returns an error to abort. A missing status
// is created from the zero Status (f sees State "").
func (q *Queue) UpdateStatus(ctx context.Context, jobID string, f func(*job.Status) error) (*job.Status, error) {
	s, _, err := q.updateStatus(ctx, jobID, Known{}, f)
	return s, err
}

// Known is a job status its holder read or wrote at revision Rev. Passed to
// TransitionFrom it saves the read: the write is tried against Rev first and
// only a conflicting write in between costs a fresh read.
type Known struct {
	Status *job.Status
	Rev    uint64
}

func (q *Queue) updateStatus(ctx context.Context, jobID string, known Known, f func(*job.Status) error) (*job.Status, uint64, error) {
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
			s, rev, err = q.Status(ctx, jobID)
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
			rev, err = q.status.Create(ctx, jobID, b)
		} else {
			rev, err = q.status.Update(ctx, jobID, b, rev)
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
func (q *Queue) Transition(ctx context.Context, jobID string, to job.State, f func(*job.Status)) (*job.Status, error) {
	s, _, err := q.TransitionFrom(ctx, jobID, Known{}, to, f)
	return s, err
}

// TransitionFrom is Transition starting from a status the caller knows
// (see Known); it returns the new status and its revision.
func (q *Queue) TransitionFrom(ctx context.Context, jobID string, known Known, to job.State, f func(*job.Status)) (*job.Status, uint64, error) {
	return q.updateStatus(ctx, jobID, known, func(s *job.Status) error {
		if err := job.CheckTransition(s.State, to); err != nil {
			return err
		}
		s.State = to
		if f != nil {
			f(s)
		}
		return nil
	})
}

// TransitionIf is Transition applied only while ok holds for the job's
// current status (read again on every compare-and-set retry); when it does
// not, nothing is written, the error is ErrConflict and the status returned
// is the one read.
func (q *Queue) TransitionIf(ctx context.Context, jobID string, ok func(*job.Status) bool, to job.State, f func(*job.Status)) (*job.Status, error) {
	s, _, err := q.updateStatus(ctx, jobID, Known{}, func(s *job.Status) error {
		if !ok(s) {
			return fmt.Errorf("%w: job %s is %s", ErrConflict, jobID, s.State)
		}
		if err := job.CheckTransition(s.State, to); err != nil {
			return err
		}
		s.State = to
		if f != nil {
			f(s)
		}
		return nil
	})
	return s, err
}

// ListStatuses returns every job status (for the API's listing; bounded by the bucket).
// It reads the bucket in one pass (a watcher replaying the latest values)
// rather than listing keys and fetching each.
func (q *Queue) ListStatuses(ctx context.Context) ([]*job.Status, error) {
	w, err := q.status.WatchAll(ctx, jetstream.IgnoreDeletes())
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
func (q *Queue) SigningJob(ctx context.Context, jobID string) (*job.Job, error) {
	s, _, err := q.Status(ctx, jobID)
	if err == nil && s.State == job.StateRunning {
		return &s.Job, nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	// A replicated bucket's reads may be answered by a replica that has not
	// seen the worker's latest write yet: ask the leader before refusing.
	if s, err = q.statusFromLeader(ctx, jobID); errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", job.ErrNotActive, err)
	} else if err != nil {
		return nil, err
	}
	if s.State == job.StateRunning {
		return &s.Job, nil
	}
	if !s.State.Terminal() {
		if c, err := q.Control(ctx, jobID); err != nil {
			return nil, err
		} else if c == job.ControlCancel {
			return &s.Job, nil
		}
	}
	return nil, fmt.Errorf("%w: job %s is %s", job.ErrNotActive, jobID, s.State)
}

// statusFromLeader reads a job's status through the status stream's leader
// (the JetStream message-get API), never from a lagging replica.
func (q *Queue) statusFromLeader(ctx context.Context, jobID string) (*job.Status, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": "$KV." + StatusBucket + "." + jobID})
	if err != nil {
		return nil, err
	}
	m, err := q.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+StatusBucket, req)
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

// Control returns the operator's instruction for a job.
func (q *Queue) Control(ctx context.Context, jobID string) (job.Control, error) {
	e, err := q.control.Get(ctx, jobID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return job.ControlNone, nil
	}
	if err != nil {
		return job.ControlNone, fmt.Errorf("queue: control %s: %w", jobID, err)
	}
	return job.Control(e.Value()), nil
}

// SetControl records an instruction; ControlNone clears it.
func (q *Queue) SetControl(ctx context.Context, jobID string, c job.Control) error {
	var err error
	if c == job.ControlNone {
		err = q.control.Delete(ctx, jobID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			err = nil
		}
	} else {
		_, err = q.control.Put(ctx, jobID, []byte(c))
	}
	if err != nil {
		return fmt.Errorf("queue: set control %s: %w", jobID, err)
	}
	return nil
}

// WatchControl calls f for every control change until ctx ends.
func (q *Queue) WatchControl(ctx context.Context, f func(jobID string, c job.Control)) error {
	w, err := q.control.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil {
				continue
			}
			c := job.Control(e.Value())
			if e.Operation() != jetstream.KeyValuePut {
				c = job.ControlNone
			}
			f(e.Key(), c)
		}
	}
}

// Complete records a job's commit: the FileId → job mapping and the
// transition to completed (from known, see TransitionFrom), the two writes
// in flight together. The mapping's failure is returned only when the
// status was written (a caller retrying then writes both again).
func (q *Queue) Complete(ctx context.Context, jobID string, known Known, fileID string, f func(*job.Status)) error {
	rec := make(chan error, 1)
	go func() { rec <- q.RecordFile(ctx, fileID, jobID) }()
	_, _, err := q.TransitionFrom(ctx, jobID, known, job.StateCompleted, f)
	if rerr := <-rec; err == nil {
		err = rerr
	}
	return err
}

// RecordFile maps a FileId to the job that uploaded it.
func (q *Queue) RecordFile(ctx context.Context, fileID, jobID string) error {
	if _, err := q.files.Put(ctx, fileID, []byte(jobID)); err != nil {
		return fmt.Errorf("queue: record file %s: %w", fileID, err)
	}
	return nil
}

// uploadsTTL is how long UploadsBucket keeps a record: VOD's event comes
// seconds after the commit, and the FileId → job mapping, recorded at the
// latest when the job's next run finds the commit, takes over long before.
const uploadsTTL = 24 * time.Hour

// RecordUpload maps the storage path of a media file about to be committed
// (ApplyUploadUGC's video storagePath) to its job. Written before the commit,
// it correlates VOD's event with the job when the worker did not live to
// record the FileId (see JobForMediaURL).
func (q *Queue) RecordUpload(ctx context.Context, storagePath, jobID string) error {
	if _, err := q.uploads.Put(ctx, uploadKey(storagePath), []byte(jobID)); err != nil {
		return fmt.Errorf("queue: record upload of job %s: %w", jobID, err)
	}
	return nil
}

// JobForMediaURL returns the job that committed the media file at a VOD
// media URL, found by the URL's path (VOD serves a file at its storage path
// on the play domain), or ErrNotFound.
func (q *Queue) JobForMediaURL(ctx context.Context, mediaURL string) (string, error) {
	u, err := url.Parse(mediaURL)
	if err != nil || strings.Trim(u.Path, "/") == "" {
		return "", fmt.Errorf("%w: media URL %q has no path", ErrNotFound, mediaURL)
	}
	e, err := q.uploads.Get(ctx, uploadKey(u.Path))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("%w: upload %s", ErrNotFound, u.Path)
	}
	if err != nil {
		return "", fmt.Errorf("queue: look up upload %s: %w", u.Path, err)
	}
	return string(e.Value()), nil
}

// uploadKey is the bucket key of a storage path: its hex SHA-256, with or
// without the leading slash (ApplyUploadUGC's path has one, a key may not).
func uploadKey(storagePath string) string {
	sum := sha256.Sum256([]byte(strings.TrimLeft(storagePath, "/")))
	return hex.EncodeToString(sum[:])
}

// JobForFile returns the job that uploaded a FileId, or ErrNotFound.
func (q *Queue) JobForFile(ctx context.Context, fileID string) (string, error) {
	e, err := q.files.Get(ctx, fileID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("%w: file %s", ErrNotFound, fileID)
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}
