// Package upload carries one job from its source to a committed VOD FileId:
// signature, ApplyUploadUGC (resuming the VOD session when it can), COS
// multipart upload through cos-go-sdk-v5 reconciled with ListParts, cover,
// CommitUploadUGC. Resume state goes to a ResumeStore fenced by a Lease, so a
// worker that lost its lease cannot overwrite its successor's state.
package upload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/vodpipe/vodpipe/internal/defaults"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// Control outcomes, matched with errors.Is: the job stopped on purpose.
var (
	ErrPaused   = errors.New("upload: paused")
	ErrCanceled = errors.New("upload: canceled")
	// ErrDrained means the worker is shutting down: the job stopped at a part
	// boundary with its state saved, for another worker to resume.
	ErrDrained = errors.New("upload: drained for shutdown")
	// ErrStorageFull means the storage refused a body for want of space
	// (507 InsufficientStorage): trying the part again at once would not
	// help, and the job waits for space without using up its runs.
	ErrStorageFull = errors.New("upload: the storage is full")
)

// ControlDrain is the control a shutting-down worker gives its jobs.
const ControlDrain job.Control = "drain"

// PermanentError marks a failure that retrying cannot fix (bad source,
// policy refused, invalid parameters). Its Code is stable.
type PermanentError struct {
	Code string
	Err  error
}

// Error implements error.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *PermanentError) Unwrap() error { return e.Err }

func permanent(code string, err error) error { return &PermanentError{Code: code, Err: err} }

// IsPermanent reports whether err should not be retried, and its code.
func IsPermanent(err error) (string, bool) {
	var p *PermanentError
	if errors.As(err, &p) {
		return p.Code, true
	}
	return "", false
}

// Signer gives a fresh upload signature for a job per call, with the job's
// policy (signer.Client, over NATS; the signature service signs with the
// job's recorded policy whatever it is sent).
type Signer interface {
	SignJob(ctx context.Context, j *job.Job) (string, error)
}

// SourceOpener opens a job's source or cover.
type SourceOpener interface {
	Open(ctx context.Context, rawURL string) (Source, error)
}

// Observer receives what an upload does, for metrics and progress. Methods
// must be cheap and safe for concurrent use.
type Observer interface {
	Progress(jobID string, done, total int64)
	PartUploaded(bytes int64, d time.Duration)
	Retry(op string)
	SignatureRenewed()
	// SignatureShared: a run took the signature another job of its policy was given.
	SignatureShared()
	CredentialRefreshed()
	BytesSkipped(n int64)
}

// ControlFunc reports an operator's instruction for the job (checked at part boundaries).
type ControlFunc func() job.Control

// Config tunes uploads.
type Config struct {
	// PartSize is the multipart part size; sources up to one part go up in a single PutObject.
	PartSize int64 `envconfig:"PART_SIZE" default:"8388608" desc:"multipart part size in bytes (min 1 MiB)"`
	// Concurrency is the number of parts in flight per job.
	Concurrency int `envconfig:"PART_CONCURRENCY" default:"4" desc:"parts in flight per job"`
	// PartAttempts bounds attempts of one part.
	PartAttempts int `envconfig:"PART_ATTEMPTS" default:"6" desc:"attempts per part before the job attempt fails"`
	// COSScheme is https in production; http for vodsim.
	COSScheme string `envconfig:"COS_SCHEME" default:"https" desc:"scheme of COS bucket URLs"`
	// RefreshAt is the fraction of a credential's lifetime after which it is refreshed.
	RefreshAt float64 `envconfig:"CREDENTIAL_REFRESH_AT" default:"0.8" desc:"fraction of a credential's life after which it is renewed"`
	// MaxCoverSize bounds a cover image.
	MaxCoverSize int64 `envconfig:"MAX_COVER_SIZE" default:"10485760" desc:"largest cover image in bytes"`
	// SessionMaxAge is how long a VOD session is resumed before starting over.
	SessionMaxAge time.Duration `envconfig:"SESSION_MAX_AGE" default:"23h" desc:"age after which a VOD session is not resumed"`
}

// withDefaults fills c's zero fields from their default tags, and the
// fields out of their range too.
func (c *Config) withDefaults() {
	// Under COS's least part size, or out of range: the default.
	if c.PartSize < 1<<20 {
		c.PartSize = 0
	}
	if c.Concurrency < 0 {
		c.Concurrency = 0
	}
	if c.PartAttempts < 0 {
		c.PartAttempts = 0
	}
	if c.RefreshAt < 0 || c.RefreshAt >= 1 {
		c.RefreshAt = 0
	}
	defaults.Fill(c)
}

// Uploader runs uploads. It is safe for concurrent use by many jobs.
type Uploader struct {
	cfg       Config
	vod       *vod.Client
	signer    Signer
	sources   SourceOpener
	store     ResumeStore
	transport http.RoundTripper
	obs       Observer
	commits   CommitRecorder
	sigs      *sigShare // signatures shared by jobs of one policy
	log       *slog.Logger
	clock     *serverClock // Tencent's time, learned from VOD's answers
}

// CommitRecorder learns of each commit just before it is made: it maps the
// media file's storage path to the job, so VOD's event about the file finds
// its job even when the worker dies before it records the FileId. An error
// no retry can mend is a *PermanentError; any other is tried again for a
// few seconds.
type CommitRecorder interface {
	RecordUpload(ctx context.Context, storagePath, jobID string) error
}

// Deps are the Uploader's collaborators.
type Deps struct {
	VOD     *vod.Client
	Signer  Signer
	Sources SourceOpener
	Store   ResumeStore
	// COSTransport carries COS requests (e.g. vod.DialOverride for vodsim); default http.DefaultTransport.
	COSTransport http.RoundTripper
	Observer     Observer
	// Commits, when set, records each commit's storage path before it is made.
	Commits CommitRecorder
	Log     *slog.Logger
}

// New returns an Uploader.
func New(cfg Config, d Deps) *Uploader {
	cfg.withDefaults()
	u := &Uploader{cfg: cfg, vod: d.VOD, signer: d.Signer, sources: d.Sources, store: d.Store,
		transport: d.COSTransport, obs: d.Observer, commits: d.Commits, sigs: newSigShare(), log: d.Log, clock: &serverClock{}}
	if u.transport == nil {
		u.transport = http.DefaultTransport
	}
	if u.obs == nil {
		u.obs = nopObserver{}
	}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	return u
}

// Result is a committed upload.
type Result struct {
	FileID   string
	MediaURL string
	CoverURL string
	Size     int64
	// Resumed counts bytes an earlier attempt had already uploaded.
	Resumed int64
	// Sent counts bytes sent in this attempt.
	Sent int64
	// AlreadyCommitted is set when the state said the job was committed before.
	AlreadyCommitted bool
	// LeaseReleased is set when the lease was given up with the commit
	// record (a store with SaveCommitRelease): the caller need not release it.
	LeaseReleased bool
}

// Run uploads j under lease l until committed, paused, canceled or failed.
func (u *Uploader) Run(ctx context.Context, j *job.Job, l Lease, control ControlFunc) (*Result, error) {
	return u.RunLoaded(ctx, j, l, u.Load(ctx, j.ID), control)
}

// Load reads the job's resume state, as Run does before it starts.
func (u *Uploader) Load(ctx context.Context, jobID string) Loaded {
	st, err := u.store.Load(ctx, jobID)
	if errors.Is(err, ErrNoState) {
		st, err = nil, nil
	}
	return Loaded{State: st, Err: err}
}

// Loaded is a job's resume state as read together with its lease (see
// resume.Redis.AcquireLoad): State is nil when none is stored; Err is set
// when it could not be read.
type Loaded struct {
	State *State
	Err   error
}

// Committed reports whether the state records a commit: the run has
// nothing left to upload or commit, only the recorded result to return.
func (l Loaded) Committed() bool { return l.State != nil && l.State.FileID != "" }

// Recorded is how many bytes of the video the state's recorded parts
// hold: what a run resumes from when its session still holds (the run may
// yet start over: its Result.Resumed says what it kept). Zero for l nil,
// without a state, or for a video sent in one PUT.
func (l *Loaded) Recorded() int64 {
	if l == nil || l.State == nil {
		return 0
	}
	var n int64
	for _, p := range l.State.Parts {
		n += p.Size
	}
	return n
}

// RunLoaded is Run with the state already read under lease l.
func (u *Uploader) RunLoaded(ctx context.Context, j *job.Job, l Lease, loaded Loaded, control ControlFunc) (*Result, error) {
	if loaded.Err != nil {
		return nil, fmt.Errorf("upload: load state: %w", loaded.Err)
	}
	if loaded.Committed() {
		st := loaded.State
		res := &Result{FileID: st.FileID, MediaURL: st.MediaURL, CoverURL: st.CoverURL, AlreadyCommitted: true}
		if st.Session != nil {
			// The bytes the commit covered, for the status and job.completed.
			res.Size, res.Resumed = st.Session.Size, st.Session.Size
		}
		return res, nil
	}
	st := loaded.State
	if st == nil {
		st = &State{}
	}
	if control != nil {
		switch control() {
		case job.ControlCancel:
			return nil, u.cancel(ctx, l, st)
		case job.ControlPause:
			return nil, ErrPaused
		case ControlDrain:
			return nil, ErrDrained
		}
	}
	src, err := u.sources.Open(ctx, j.Source)
	if err != nil {
		return nil, sourceErr(err)
	}
	defer src.Close()
	var cover Source
	if j.Cover != "" {
		if cover, err = u.sources.Open(ctx, j.Cover); err != nil {
			return nil, sourceErr(err)
		}
		defer cover.Close()
		if cover.Size() > u.cfg.MaxCoverSize || cover.Size() == 0 {
			return nil, permanent("cover_invalid", fmt.Errorf("upload: cover is %d bytes, must be 1..%d", cover.Size(), u.cfg.MaxCoverSize))
		}
	}
	r := &run{u: u, j: j, l: l, st: st, src: src, cover: cover, control: control}
	res, err := r.do(ctx)
	if _, perm := IsPermanent(err); perm && r.st != nil {
		// Failed for good (the job is dead-lettered): its multipart upload,
		// if one is open, is aborted with its parts, and its state goes, as a
		// cancel's do; a requeue starts afresh.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
		if cerr := u.cancel(actx, l, r.st); cerr != nil && !errors.Is(cerr, ErrCanceled) {
			u.log.Warn("abandon the upload of a job failed for good", "job_id", j.ID, "err", cerr)
		}
		cancel()
	}
	return res, err
}

// abandonTimeout bounds the abort of a failed job's multipart upload.
const abandonTimeout = 30 * time.Second

func sourceErr(err error) error {
	switch {
	case errors.Is(err, ErrSourceNotFound):
		return permanent("source_not_found", err)
	case errors.Is(err, ErrSourceForbidden):
		return permanent("source_forbidden", err)
	case errors.Is(err, ErrSourceChanged):
		return permanent("source_changed", err)
	}
	return err
}

// signRefusal is a signer's error that says whether it is a refusal no
// retry changes, and its job error code (signer.Error).
type signRefusal interface{ SignRefusal() string }

// vodErr classifies a VOD answer: refusals of the request itself are permanent.
func vodErr(err error) error {
	for _, p := range []struct {
		target error
		code   string
	}{
		{vod.ErrInvalidParameter, "vod_invalid_parameter"},
		{vod.ErrRegionNotAllowed, "vod_region_not_allowed"},
		{vod.ErrProcedureNotFound, "vod_procedure_not_found"},
	} {
		if errors.Is(err, p.target) {
			return permanent(p.code, err)
		}
	}
	var refused signRefusal
	if errors.As(err, &refused) && refused.SignRefusal() != "" {
		return permanent(refused.SignRefusal(), err)
	}
	return err
}

// cancel aborts the multipart upload, if any, and deletes the resume state.
func (u *Uploader) cancel(ctx context.Context, l Lease, st *State) error {
	u.abortUpload(ctx, l, st)
	if err := u.store.Delete(ctx, l); err != nil && !errors.Is(err, ErrNoState) {
		return err
	}
	return ErrCanceled
}

// abortUpload aborts the multipart uploads of st's session, if its video is
// not stored yet, with the session's credentials renewed: the one recorded,
// and any an attempt that died between InitiateMultipartUpload and
// recording it left (listed by the object's key). A session VOD no longer
// has cannot be renewed, and its uploads stay until COS's lifecycle rule.
func (u *Uploader) abortUpload(ctx context.Context, l Lease, st *State) {
	if st.Session == nil || st.Session.VideoKey == "" || st.VideoDone || st.Session.Size <= u.cfg.PartSize {
		return // nothing sent, or sent in one request
	}
	r := u.abortRun(l, st)
	if err := r.applyResume(ctx); err != nil {
		u.log.Warn("abort multipart upload: renew the session", "job_id", l.JobID, "err", err)
		return
	}
	defer r.stopRefresh()
	r.abortUploads(ctx, "")
}

// abortRun is the run an abort needs to renew a session's credentials.
// Its job is known by its id alone: the signature is minted for it (the
// service signs the recorded job's policy), never taken from the share,
// which is matched against a job's policy.
func (u *Uploader) abortRun(l Lease, st *State) *run {
	return &run{u: u, l: l, st: st, j: &job.Job{ID: l.JobID}, noShare: true}
}

// Abort is used by callers that cancel a job they hold the lease of.
func (u *Uploader) Abort(ctx context.Context, l Lease) error {
	st, err := u.store.Load(ctx, l.JobID)
	if errors.Is(err, ErrNoState) {
		return ErrCanceled
	}
	if err != nil {
		return err
	}
	return u.cancel(ctx, l, st)
}

type nopObserver struct{}

func (nopObserver) Progress(string, int64, int64)     {}
func (nopObserver) PartUploaded(int64, time.Duration) {}
func (nopObserver) Retry(string)                      {}
func (nopObserver) SignatureRenewed()                 {}
func (nopObserver) SignatureShared()                  {}
func (nopObserver) CredentialRefreshed()              {}
func (nopObserver) BytesSkipped(int64)                {}

// progress throttles Progress calls to one per 500 ms, plus the final one.
type progress struct {
	mu    sync.Mutex
	obs   Observer
	jobID string
	total int64
	done  int64
	last  time.Time
	sent  int64
}

func (p *progress) add(n int64, sent bool) {
	p.mu.Lock()
	p.done += n
	if sent {
		p.sent += n
	}
	done, now := p.done, time.Now()
	emit := now.Sub(p.last) >= 500*time.Millisecond || done == p.total
	if emit {
		p.last = now
	}
	p.mu.Unlock()
	if emit {
		p.obs.Progress(p.jobID, done, p.total)
	}
}
