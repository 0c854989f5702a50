package upload

import (
	"context"
	"errors"
	"time"
)

// Errors of the resume store and leaser, matched with errors.Is.
var (
	// ErrLeaseHeld means another worker holds the job's lease.
	ErrLeaseHeld = errors.New("upload: job lease held by another worker")
	// ErrLeaseLost means the lease expired or was taken over: the holder must stop
	// writing resume state and stop working on the job.
	ErrLeaseLost = errors.New("upload: job lease lost")
	// ErrNoState means no resume state is stored for the job.
	ErrNoState = errors.New("upload: no resume state")
	// ErrBadState means the stored resume state cannot be decoded: reading
	// it again will not help.
	ErrBadState = errors.New("upload: resume state cannot be decoded")
)

// Lease is one worker's exclusive right to work on a job. Token is a fencing
// token: it grows with every acquisition, and the store refuses writes made
// with a token that is not the current one.
type Lease struct {
	JobID string
	Token int64
	Owner string
	TTL   time.Duration
}

// Leaser grants, renews and releases job leases.
type Leaser interface {
	// Acquire takes the job's lease for ttl, or fails with ErrLeaseHeld.
	Acquire(ctx context.Context, jobID, owner string, ttl time.Duration) (Lease, error)
	// Renew extends the lease by its TTL, or fails with ErrLeaseLost.
	Renew(ctx context.Context, l Lease) error
	// Release gives the lease up if it is still held with l.Token.
	Release(ctx context.Context, l Lease) error
}

// Session is what ApplyUploadUGC granted, kept to resume the same VOD session.
// It holds no credentials: those are short-lived and re-obtained on resume.
type Session struct {
	VodSessionKey string    `json:"vodSessionKey"`
	Opened        time.Time `json:"opened"`
	Bucket        string    `json:"bucket"`
	Region        string    `json:"region"`
	VideoKey      string    `json:"videoKey"`
	CoverKey      string    `json:"coverKey,omitempty"`
	UploadID      string    `json:"uploadId,omitempty"`
	PartSize      int64     `json:"partSize"`
	Size          int64     `json:"size"`
	CoverSize     int64     `json:"coverSize,omitempty"`
	// Source is the source's version the session was opened over
	// (Source.Version; "" in sessions of 0.9 and for sources that cannot
	// tell).
	Source string `json:"source,omitempty"`
}

// PartRecord is one part that COS acknowledged.
type PartRecord struct {
	Number int    `json:"n"`
	Size   int64  `json:"size"`
	ETag   string `json:"etag"`
	CRC64  uint64 `json:"crc64"`
}

// State is a job's resume state.
type State struct {
	Session *Session           `json:"session,omitempty"`
	Parts   map[int]PartRecord `json:"parts,omitempty"`
	// VideoDone is set once the video object is complete in COS.
	VideoDone bool `json:"videoDone,omitempty"`
	// CoverDone is set once the cover object is in COS.
	CoverDone bool `json:"coverDone,omitempty"`
	// FileID is set once CommitUploadUGC answered.
	FileID   string `json:"fileId,omitempty"`
	MediaURL string `json:"mediaUrl,omitempty"`
	CoverURL string `json:"coverUrl,omitempty"`
}

// ResumeStore keeps resume state per job. Every write is fenced by the lease:
// a write with a token that is no longer current fails with ErrLeaseLost and
// changes nothing. State expires with VOD's session (about a day).
type ResumeStore interface {
	// Load returns the job's state, or ErrNoState.
	Load(ctx context.Context, jobID string) (*State, error)
	// SaveSession replaces the session and forgets recorded parts and flags (a new session starts over).
	SaveSession(ctx context.Context, l Lease, s Session) error
	// SetUploadID records the multipart UploadId of the current session.
	SetUploadID(ctx context.Context, l Lease, uploadID string) error
	// SavePart records one acknowledged part.
	SavePart(ctx context.Context, l Lease, p PartRecord) error
	// MarkVideoDone, MarkCoverDone and SaveCommit record progress milestones.
	MarkVideoDone(ctx context.Context, l Lease) error
	MarkCoverDone(ctx context.Context, l Lease) error
	SaveCommit(ctx context.Context, l Lease, fileID, mediaURL, coverURL string) error
	// Delete removes the job's state.
	Delete(ctx context.Context, l Lease) error
}

// CommitReleaser is a ResumeStore that records the commit and gives the
// lease up in one round trip (resume.Redis): nothing is left to do under the
// lease once the commit is recorded. The store must be the one the lease
// came from (the worker uses one object as Leaser and ResumeStore).
type CommitReleaser interface {
	SaveCommitRelease(ctx context.Context, l Lease, fileID, mediaURL, coverURL string) error
}

// CommitBarrier is a ResumeStore that can make sure, right before the
// commit, that the lease is still the caller's and that what the store
// holds of the job (lease, session) survives the loss of its primary
// (resume.Redis with replicas: WAIT). A failover after it finds the lease
// held and the session to resume, so a second worker commits the same VOD
// session (the same file), never a second one. An error stops the run
// before the commit; the job runs again.
type CommitBarrier interface {
	BeforeCommit(ctx context.Context, l Lease) error
}

// SessionCommitBarrier is a CommitBarrier that records a session in the
// same step (resume.Redis: one round trip for both). A run of one part and
// no cover records its session only there, right before the commit: until
// then a crash costs only the part, sent again in a new VOD session, and
// nothing can commit the first. What it writes and when it refuses are
// SaveSession's and BeforeCommit's.
type SessionCommitBarrier interface {
	SaveSessionBeforeCommit(ctx context.Context, l Lease, s Session) error
}
