// Package resume keeps the resume state and job leases that internal/upload needs:
// Redis implements upload.Leaser and upload.ResumeStore for deployments, KV
// implements them on a NATS JetStream key-value bucket for the single-process
// mode that runs without Redis.
//
// Both fence every write with the lease: a worker whose lease expired or was
// taken over gets upload.ErrLeaseLost and changes nothing, so a worker that
// paused (GC, network partition) and wakes up after another worker resumed the
// job cannot corrupt the new worker's state.
package resume

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/vodpipe/vodpipe/internal/upload"
)

const (
	// DefaultPrefix starts every Redis key.
	DefaultPrefix = "vodpipe"
	// DefaultStateTTL is how long a job's state outlives its last write: VOD keeps
	// an upload session resumable for one day, after which the state is useless.
	DefaultStateTTL = 24 * time.Hour
)

// ErrInvalid is wrapped by errors about arguments no store could accept (an
// empty job id, a lease TTL under a millisecond, a part number below 1).
var ErrInvalid = errors.New("resume: invalid argument")

// commit is what CommitUploadUGC answered, stored as one value.
type commit struct {
	FileID   string `json:"fileId"`
	MediaURL string `json:"mediaUrl,omitempty"`
	CoverURL string `json:"coverUrl,omitempty"`
}

func checkAcquire(jobID, owner string, ttl time.Duration) error {
	if jobID == "" {
		return fmt.Errorf("%w: empty job id", ErrInvalid)
	}
	if owner == "" {
		return fmt.Errorf("%w: empty lease owner", ErrInvalid)
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("%w: lease TTL %v is under 1ms", ErrInvalid, ttl)
	}
	return nil
}

func checkLease(l upload.Lease) error {
	if l.Token < 1 {
		return fmt.Errorf("%w: lease without a token", ErrInvalid)
	}
	return checkAcquire(l.JobID, l.Owner, l.TTL)
}

func checkPart(p upload.PartRecord) error {
	if p.Number < 1 {
		return fmt.Errorf("%w: part number %d", ErrInvalid, p.Number)
	}
	return nil
}

// escapeID returns id when safe says it can stand in a key as it is, and
// "=" followed by its unpadded base64url encoding otherwise. No safe id may
// start with "=", so two different ids never share a key.
func escapeID(id string, safe func(string) bool) string {
	if id != "" && id[0] != '=' && safe(id) {
		return id
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// change is one write to a job's resume state: what it makes of the state
// as it is (nil when there is none); nil deletes it.
type change func(*upload.State) (*upload.State, error)

// fencer applies a change to a job's state if the lease still holds the
// job and no newer lease has touched the state (KV, Memory).
type fencer interface {
	fenced(ctx context.Context, l upload.Lease, c change) error
}

// writes are upload.ResumeStore's writes, the same for every fencer.
type writes struct{ f fencer }

func orEmpty(st *upload.State) *upload.State {
	if st == nil {
		return &upload.State{}
	}
	return st
}

// SaveSession replaces the job's state with a new session and nothing else.
func (w writes) SaveSession(ctx context.Context, l upload.Lease, s upload.Session) error {
	return w.f.fenced(ctx, l, func(*upload.State) (*upload.State, error) { return &upload.State{Session: &s}, nil })
}

// SetUploadID records the multipart UploadId of the current session, or
// fails with upload.ErrNoState when there is no session.
func (w writes) SetUploadID(ctx context.Context, l upload.Lease, uploadID string) error {
	return w.f.fenced(ctx, l, func(st *upload.State) (*upload.State, error) {
		if st == nil || st.Session == nil {
			return nil, upload.ErrNoState
		}
		st.Session.UploadID = uploadID
		return st, nil
	})
}

// SavePart records one acknowledged part.
func (w writes) SavePart(ctx context.Context, l upload.Lease, p upload.PartRecord) error {
	if err := checkPart(p); err != nil {
		return err
	}
	return w.f.fenced(ctx, l, func(st *upload.State) (*upload.State, error) {
		st = orEmpty(st)
		if st.Parts == nil {
			st.Parts = make(map[int]upload.PartRecord)
		}
		st.Parts[p.Number] = p
		return st, nil
	})
}

// MarkVideoDone records that the video object is complete in COS.
func (w writes) MarkVideoDone(ctx context.Context, l upload.Lease) error {
	return w.f.fenced(ctx, l, func(st *upload.State) (*upload.State, error) {
		st = orEmpty(st)
		st.VideoDone = true
		return st, nil
	})
}

// MarkCoverDone records that the cover object is in COS.
func (w writes) MarkCoverDone(ctx context.Context, l upload.Lease) error {
	return w.f.fenced(ctx, l, func(st *upload.State) (*upload.State, error) {
		st = orEmpty(st)
		st.CoverDone = true
		return st, nil
	})
}

// SaveCommit records what CommitUploadUGC answered.
func (w writes) SaveCommit(ctx context.Context, l upload.Lease, fileID, mediaURL, coverURL string) error {
	return w.f.fenced(ctx, l, func(st *upload.State) (*upload.State, error) {
		st = orEmpty(st)
		st.FileID, st.MediaURL, st.CoverURL = fileID, mediaURL, coverURL
		return st, nil
	})
}

// Delete removes the job's state. The fence stays, so tokens keep growing.
func (w writes) Delete(ctx context.Context, l upload.Lease) error {
	return w.f.fenced(ctx, l, func(*upload.State) (*upload.State, error) { return nil, nil })
}
