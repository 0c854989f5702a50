package upload

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cos "github.com/tencentyun/cos-go-sdk-v5"

	"github.com/vodpipe/vodpipe/internal/checksum"
	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// run is one attempt at one job.
type run struct {
	u       *Uploader
	j       *job.Job
	l       Lease
	st      *State
	src     Source
	cover   Source
	control ControlFunc

	auth     *cosSigner
	client   *cos.Client
	credMu   sync.Mutex
	credGen  int
	issued   time.Time
	expires  time.Time
	stopOnce sync.Once
	stop     chan struct{}
	prog     *progress

	// A signature that is not one-time is valid for any number of requests
	// until it expires, so it serves every VOD call of the run until shortly
	// before then, and the runs of other jobs of the same policy
	// (sigshare.go): a signature request per policy, not per job or call.
	sigMu      sync.Mutex
	sig        string
	sigExpires time.Time
	sigAt      time.Time // currentTimeStamp of sig
	// sigShared: sig came from the share, minted for another job's run.
	sigShared bool
	// noShare: take no signature from the share (a run for an abort, whose
	// job is known by its id alone; a run that had one refused).
	noShare bool

	// unsaved is a session opened but not recorded yet: a run of one part
	// and no cover records it with the barrier before the commit
	// (beforeCommit).
	unsaved bool
}

// sigReuseMargin is how long before its expiry a kept signature is replaced.
const sigReuseMargin = time.Minute

func (r *run) do(ctx context.Context) (*Result, error) {
	size := r.src.Size()
	r.prog = &progress{obs: r.u.obs, jobID: r.j.ID, total: size}
	res := &Result{Size: size}
	if err := r.openSession(ctx, size); err != nil {
		return nil, err
	}
	defer r.stopRefresh()
	if !r.st.VideoDone {
		var err error
		if err := r.checkControl(ctx); err != nil {
			return nil, err
		}
		if size <= r.u.cfg.PartSize {
			err = r.putVideo(ctx)
		} else {
			err = r.multipart(ctx, res)
		}
		if err != nil {
			return nil, err
		}
		if err := r.src.Check(ctx); err != nil {
			return nil, sourceErr(err)
		}
		// A source of one part is simply sent again after a crash (the same
		// key in the same VOD session), so only multipart records completion.
		if size > r.u.cfg.PartSize {
			if err := r.u.store.MarkVideoDone(ctx, r.l); err != nil {
				return nil, err
			}
		}
		r.st.VideoDone = true
	} else {
		res.Resumed = size
		r.u.obs.BytesSkipped(size)
		r.prog.add(size, false)
	}
	if r.cover != nil && !r.st.CoverDone {
		if err := r.putCover(ctx); err != nil {
			return nil, err
		}
		if err := r.u.store.MarkCoverDone(ctx, r.l); err != nil {
			return nil, err
		}
		r.st.CoverDone = true
	}
	// The commit is the point of no return: a last look at the job's control.
	if err := r.checkControl(ctx); err != nil {
		return nil, err
	}
	if err := r.recordUpload(ctx); err != nil {
		return nil, err
	}
	if err := r.beforeCommit(ctx); err != nil {
		return nil, err
	}
	cm, err := r.commit(ctx)
	if err != nil {
		return nil, err
	}
	if cr, ok := r.u.store.(CommitReleaser); ok {
		if err := cr.SaveCommitRelease(ctx, r.l, cm.FileID, cm.MediaURL(), cm.CoverURL()); err != nil {
			return nil, err
		}
		res.LeaseReleased = true
	} else if err := r.u.store.SaveCommit(ctx, r.l, cm.FileID, cm.MediaURL(), cm.CoverURL()); err != nil {
		return nil, err
	}
	res.FileID, res.MediaURL, res.CoverURL = cm.FileID, cm.MediaURL(), cm.CoverURL()
	res.Sent = r.prog.sent
	return res, nil
}

// beforeCommit records a session not recorded yet and runs the store's
// barrier (CommitBarrier): in one step when the store can
// (SessionCommitBarrier).
func (r *run) beforeCommit(ctx context.Context) error {
	if r.unsaved {
		if sb, ok := r.u.store.(SessionCommitBarrier); ok {
			if err := sb.SaveSessionBeforeCommit(ctx, r.l, *r.st.Session); err != nil {
				return err
			}
			r.unsaved = false
			return nil
		}
		if err := r.u.store.SaveSession(ctx, r.l, *r.st.Session); err != nil {
			return err
		}
		r.unsaved = false
	}
	if b, ok := r.u.store.(CommitBarrier); ok {
		return b.BeforeCommit(ctx, r.l)
	}
	return nil
}

// recordUpload tells the CommitRecorder of the commit about to be made,
// trying for up to recordUploadFor (a NATS cluster that lost a node elects
// new leaders in a few seconds). Without the record, VOD's event for the
// file may find no job (when the worker dies before it records the FileId,
// or records it after the event's wait): so a record that keeps failing
// ends the run before the commit, with an error the job is run again for,
// rather than committing a file whose event may be published naming no
// job. An error the recorder marks permanent (a PermanentError: no retry
// can mend it) is not tried again, and the commit goes ahead without it.
func (r *run) recordUpload(ctx context.Context) error {
	if r.u.commits == nil {
		return nil
	}
	give := time.Now().Add(recordUploadFor)
	b := retry.Request.New()
	for {
		err := r.u.commits.RecordUpload(ctx, r.st.Session.VideoKey, r.j.ID)
		if err == nil {
			return nil
		}
		if _, perm := IsPermanent(err); perm {
			r.u.log.Warn("recording the upload before its commit was refused; committing without it", "job_id", r.j.ID, "err", err)
			return nil
		}
		d := b.NextBackOff()
		if time.Now().Add(d).After(give) || !retry.Sleep(ctx, d) {
			return fmt.Errorf("upload: record the upload before its commit (the job runs again, the commit not yet made): %w", err)
		}
	}
}

// recordUploadFor bounds recordUpload's tries.
const recordUploadFor = 10 * time.Second

// checkControl stops the run when the job was paused, canceled or drained.
func (r *run) checkControl(ctx context.Context) error {
	if r.control == nil {
		return nil
	}
	switch r.control() {
	case job.ControlPause:
		return ErrPaused
	case ControlDrain:
		return ErrDrained
	case job.ControlCancel:
		return r.u.cancel(ctx, r.l, r.st)
	}
	return nil
}

// sign returns a fresh signature for a one-time job and otherwise the run's
// kept signature while it is valid for sigReuseMargin more, or else one
// another job of the same policy was given (sigshare.go), or else a fresh
// one; shared says it was minted for another job's run.
func (r *run) sign(ctx context.Context) (sig string, shared bool, err error) {
	r.sigMu.Lock()
	defer r.sigMu.Unlock()
	if !r.j.OneTimeSignature {
		if r.sig != "" && time.Until(r.sigExpires) > sigReuseMargin {
			return r.sig, r.sigShared, nil
		}
		if !r.noShare {
			if k, ok := r.u.sigs.get(jobPolicy(r.j), time.Now(), sigReuseMargin); ok {
				r.sig, r.sigExpires, r.sigAt, r.sigShared = k.sig, k.expires, k.at, true
				r.u.obs.SignatureShared()
				return k.sig, true, nil
			}
		}
	}
	sig, err = r.u.signer.SignJob(ctx, r.j)
	if err != nil {
		return "", false, err
	}
	// Kept only if it really is reusable: the service may make every
	// signature one-time (its policy), whatever the job asked for.
	r.sig, r.sigExpires, r.sigShared = "", time.Time{}, false
	if p, perr := vod.ParseSignature(sig); perr == nil {
		r.sigAt = time.Unix(p.Params.CurrentTimeStamp, 0)
		if !p.Params.OneTimeValid && !r.j.OneTimeSignature {
			r.sig, r.sigExpires = sig, time.Unix(p.Params.ExpireTime, 0)
			r.u.sigs.put(sig, p.Params, time.Now())
		}
	}
	return sig, false, nil
}

// forgetSignature drops sig, which VOD refused: for every job that shares
// it, and for this run if it still keeps it (another of its calls, refused
// too, may have renewed it already); the run takes no other from the share.
func (r *run) forgetSignature(sig string) {
	r.sigMu.Lock()
	defer r.sigMu.Unlock()
	r.u.sigs.drop(sig)
	if r.sig == sig {
		r.sig, r.sigExpires, r.sigShared = "", time.Time{}, false
	}
	r.noShare = true
}

// withRenewal runs a VOD call with the run's signatures (call gets the
// SignatureFunc to give the client); a "signature used" or "expired" answer
// gets one renewal (the call asks for a fresh signature again), not a
// failure, and so does any refusal of a signature another job's run was
// given (a key rotated since, a signing replica's clock): the renewal is
// minted for this run, so a refusal of it says what it says of a fresh
// signature. What is forgotten is the signature the call used last.
func (r *run) withRenewal(ctx context.Context, call func(sign vod.SignatureFunc) error) error {
	var used string
	var usedShared bool
	sign := func(ctx context.Context) (string, error) {
		sig, shared, err := r.sign(ctx)
		if err == nil {
			used, usedShared = sig, shared
		}
		return sig, err
	}
	err := call(sign)
	if vod.SignatureRefused(err) {
		r.forgetSignature(used)
		if usedShared || errors.Is(err, vod.ErrSignatureUsed) || errors.Is(err, vod.ErrSignatureExpired) {
			r.u.obs.SignatureRenewed()
			err = call(sign)
		}
	}
	// A fresh signature refused for its times: a clock is off.
	r.sigMu.Lock()
	at := r.sigAt
	r.sigMu.Unlock()
	return vodErr(clockErr(err, at))
}

// openSession resumes the stored VOD session or opens a new one.
func (r *run) openSession(ctx context.Context, size int64) error {
	s := r.st.Session
	// A session whose files are all stored needs only its commit (one that
	// landed and went unrecorded is answered with its FileId): it is tried
	// whatever its age, and started over only if VOD no longer has it.
	uploaded := r.st.VideoDone && (r.cover == nil || r.st.CoverDone)
	if s != nil && (s.Size != size || s.Source != "" && s.Source != r.src.Version() ||
		time.Since(s.Opened) > r.u.cfg.SessionMaxAge && !uploaded || (r.cover != nil && s.CoverKey == "")) {
		// The source changed (another size, or the same size and another
		// version: the parts kept would be the old content's) or the
		// session is too old: start over, the old session's multipart
		// upload aborted (it would stay, its parts stored, for good).
		r.u.abortUpload(ctx, r.l, &State{Session: s, VideoDone: r.st.VideoDone})
		s = nil
	}
	if s != nil && uploaded {
		// Every file is stored: only the commit is left, and it needs no COS
		// credentials. No resume is asked for: VOD's answer to resuming a
		// session whose commit landed (its answer lost) is not documented,
		// and a refusal read as an expired session would start over and
		// commit a second file. A second commit of one session answers its
		// FileId.
		return nil
	}
	if s != nil {
		err := r.applyResume(ctx)
		if err == nil {
			return nil
		}
		if !errors.Is(err, vod.ErrSessionExpired) {
			return err
		}
		r.u.log.Info("vod session expired, starting over", "job_id", r.j.ID)
	}
	if size == 0 {
		// COS takes no empty object this way (the SDK sends an empty body
		// chunked, without the length COS requires), nor VOD an empty video.
		return permanent("source_empty", errors.New("upload: the source is empty (0 bytes)"))
	}
	partSize, err := partSizeFor(size, r.u.cfg.PartSize)
	if err != nil {
		return err
	}
	req := vod.ApplyRequest{VideoName: r.j.MediaName, VideoType: r.j.MediaType, VideoSize: &size}
	if r.cover != nil {
		n := r.cover.Size()
		req.CoverName, req.CoverType, req.CoverSize = coverName(r.j.Cover)
		req.CoverSize = &n
	}
	var a *vod.ApplyResponse
	err = r.withRenewal(ctx, func(sign vod.SignatureFunc) (err error) { a, err = r.u.vod.Apply(ctx, sign, req); return err })
	if err != nil {
		return fmt.Errorf("upload: apply: %w", err)
	}
	sess := Session{VodSessionKey: a.VodSessionKey, Opened: time.Now().UTC(), Bucket: a.Bucket(), Region: a.StorageRegionV5,
		VideoKey: a.Video.Key(), CoverKey: a.Cover.Key(), PartSize: partSize, Size: size, Source: r.src.Version()}
	if r.cover != nil {
		sess.CoverSize = r.cover.Size()
	}
	// One part and no cover: nothing to resume but the session itself,
	// which the barrier before the commit records (a crash before then
	// sends the part again in a new session; this one is never committed).
	r.unsaved = size <= r.u.cfg.PartSize && r.cover == nil
	if !r.unsaved {
		if err := r.u.store.SaveSession(ctx, r.l, sess); err != nil {
			return err
		}
	}
	r.st = &State{Session: &sess, Parts: map[int]PartRecord{}}
	r.setCreds(a)
	return nil
}

func coverName(raw string) (string, string, *int64) {
	u, err := url.Parse(raw)
	if err != nil {
		return "cover", "jpg", nil
	}
	base := path.Base(u.Path)
	ext := strings.ToLower(strings.TrimPrefix(path.Ext(base), "."))
	if ext == "" {
		ext = "jpg"
	}
	return strings.TrimSuffix(base, path.Ext(base)), ext, nil
}

// applyResume applies again with the session key: same objects, fresh credentials.
func (r *run) applyResume(ctx context.Context) error {
	var a *vod.ApplyResponse
	err := r.withRenewal(ctx, func(sign vod.SignatureFunc) (err error) {
		a, err = r.u.vod.Apply(ctx, sign, vod.ApplyRequest{VodSessionKey: r.st.Session.VodSessionKey})
		return err
	})
	if err != nil {
		return fmt.Errorf("upload: resume apply: %w", err)
	}
	if a.Video.Key() != r.st.Session.VideoKey || a.Bucket() != r.st.Session.Bucket {
		return fmt.Errorf("upload: resume apply: %w: session answered another object", vod.ErrSessionExpired)
	}
	r.setCreds(a)
	return nil
}

// setCreds installs credentials, creating the COS client on first use and
// starting the refresher.
func (r *run) setCreds(a *vod.ApplyResponse) {
	r.credMu.Lock()
	defer r.credMu.Unlock()
	tc := a.TempCertificate
	// Both ends in VOD's time (its timestamp and the expiry it set), the
	// schedule in the local one: a clock off by minutes renews on time.
	now, server := time.Now(), time.Unix(a.Timestamp, 0)
	if a.Timestamp == 0 {
		server = r.u.clock.now()
	} else {
		r.u.clock.learn(server)
	}
	r.issued, r.expires = now, now.Add(tc.Expires().Sub(server))
	r.credGen++
	if r.auth == nil {
		r.auth = &cosSigner{clock: r.u.clock, next: r.u.transport}
		r.auth.SetCredential(tc.SecretID, tc.SecretKey, tc.Token)
		u, _ := url.Parse(a.BucketURL(r.u.cfg.COSScheme))
		r.client = cos.NewClient(&cos.BaseURL{BucketURL: u}, &http.Client{Transport: r.auth})
		// The SDK's CRC-64 check of what it sends runs Go's table method,
		// a third of a core at 600 MB/s: summed makes the same check with
		// the carry-less fold instead.
		r.client.Conf.EnableCRC = false
		r.stop = make(chan struct{})
		go r.refreshLoop()
		return
	}
	r.auth.SetCredential(tc.SecretID, tc.SecretKey, tc.Token)
}

func (r *run) cosClient() *cos.Client {
	r.credMu.Lock()
	defer r.credMu.Unlock()
	return r.client
}

func (r *run) stopRefresh() {
	r.stopOnce.Do(func() {
		if r.stop != nil {
			close(r.stop)
		}
	})
}

// refreshLoop renews credentials before they expire, by applying again with the session key.
func (r *run) refreshLoop() {
	for {
		r.credMu.Lock()
		life := r.expires.Sub(r.issued)
		at := r.issued.Add(time.Duration(float64(life) * r.u.cfg.RefreshAt))
		gen := r.credGen
		r.credMu.Unlock()
		wait := max(time.Until(at), 50*time.Millisecond)
		select {
		case <-r.stop:
			return
		case <-time.After(wait):
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := r.refresh(ctx, gen)
		cancel()
		if err != nil {
			r.u.log.Warn("credential refresh failed", "job_id", r.j.ID, "err", err)
			select {
			case <-r.stop:
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// refresh renews credentials unless someone already did since generation gen.
func (r *run) refresh(ctx context.Context, gen int) error {
	r.credMu.Lock()
	current := r.credGen
	r.credMu.Unlock()
	if current != gen {
		return nil
	}
	if err := r.applyResume(ctx); err != nil {
		return err
	}
	r.u.obs.CredentialRefreshed()
	return nil
}

func (r *run) generation() int {
	r.credMu.Lock()
	defer r.credMu.Unlock()
	return r.credGen
}

// putVideo sends a small source in one PutObject.
func (r *run) putVideo(ctx context.Context) error {
	size := r.src.Size()
	return r.retry(ctx, "put", func() error {
		body, err := r.partBody(0, size)
		if err != nil {
			return err
		}
		start := time.Now()
		sent := &summed{r: body}
		resp, err := r.cosClient().Object.Put(ctx, r.st.Session.VideoKey, sent, &cos.ObjectPutOptions{
			ObjectPutHeaderOptions: &cos.ObjectPutHeaderOptions{ContentLength: size}})
		if err != nil {
			return err
		}
		if _, err := sent.verify(resp, "put"); err != nil {
			return err
		}
		r.u.obs.PartUploaded(size, time.Since(start))
		r.prog.add(size, true)
		return nil
	})
}

func (r *run) putCover(ctx context.Context) error {
	size := r.cover.Size()
	return r.retry(ctx, "cover", func() error {
		buf := make([]byte, size)
		if _, err := r.cover.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
			return sourceErr(err)
		}
		sent := &summed{r: bytes.NewReader(buf)}
		resp, err := r.cosClient().Object.Put(ctx, r.st.Session.CoverKey, sent,
			&cos.ObjectPutOptions{ObjectPutHeaderOptions: &cos.ObjectPutHeaderOptions{ContentLength: size}})
		if err != nil {
			return err
		}
		_, err = sent.verify(resp, "cover")
		return err
	})
}

// partBody returns a fresh reader over [off, off+n) of the source: streamed
// for files, one range request for HTTP sources. It hides Seek on purpose: a
// seekable body makes the SDK retry by rewinding it while net/http may still
// be reading the failed attempt's copy; our own retry makes a new reader.
func (r *run) partBody(off, n int64) (io.Reader, error) {
	if n == 0 {
		return bytes.NewReader(nil), nil
	}
	if r.src.Streams() {
		return io.NewSectionReader(r.src, off, n), nil
	}
	buf := make([]byte, n)
	if _, err := r.src.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return bytes.NewReader(buf), nil
}

// summed is a body that keeps the CRC-64/ECMA of what net/http read of it,
// to check against COS's x-cos-hash-crc64ecma answer as cos-go-sdk-v5 would
// (Conf.EnableCRC), with checksum.Update. It exposes only Read: the SDK
// seeks a body it can to retry it, and a retry here is the run's own.
// The CRC is atomic: the transport's writer goroutine may still be in Read
// when an early answer (an error) comes back.
type summed struct {
	r   io.Reader
	crc atomic.Uint64
}

func (s *summed) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.crc.Store(checksum.Update(s.crc.Load(), p[:n]))
	}
	return n, err
}

// ErrCRCMismatch is a body COS answered with another CRC-64 than the one of
// what was sent: damaged on the way, it is sent again.
var ErrCRCMismatch = errors.New("CRC-64 mismatch")

// verify returns COS's CRC-64 of what it stored when it is the one of what
// was sent; otherwise the body was damaged on the way, an error to send again.
func (s *summed) verify(resp *cos.Response, what string) (uint64, error) {
	got, err := strconv.ParseUint(resp.Header.Get("x-cos-hash-crc64ecma"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("upload: %s: no CRC-64 in the answer", what)
	}
	if sent := s.crc.Load(); got != sent {
		return 0, fmt.Errorf("upload: %s: %w: COS stored CRC-64 %d, %d was sent", what, ErrCRCMismatch, got, sent)
	}
	return got, nil
}

// COS's bounds on a multipart upload: 10,000 parts, 5 GiB a part.
const (
	maxParts    = 10_000
	maxPartSize = 5 << 30
)

// partSizeFor is the part size of a source of size bytes: base, or, for a
// source that would take more than COS's 10,000 parts at base, the smallest
// whole number of MiB that takes 10,000 at most (a source past 10,000 parts
// of 5 GiB, about 48.8 TiB, is refused for good). A worker holds its parts
// in flight in memory: a larger part costs as much more.
func partSizeFor(size, base int64) (int64, error) {
	if (size+base-1)/base <= maxParts {
		return base, nil
	}
	const mib = 1 << 20
	ps := ((size+maxParts-1)/maxParts + mib - 1) / mib * mib
	if ps > maxPartSize {
		return 0, permanent("source_too_large", fmt.Errorf("upload: the source's %d bytes take more than COS's %d parts of 5 GiB", size, maxParts))
	}
	return ps, nil
}

func (r *run) partLen(n int) int64 {
	ps := r.st.Session.PartSize
	off := int64(n-1) * ps
	return min(ps, r.src.Size()-off)
}

func (r *run) numParts() int {
	ps := r.st.Session.PartSize
	return int((r.src.Size() + ps - 1) / ps)
}

// multipart uploads the missing parts and completes the object.
func (r *run) multipart(ctx context.Context, res *Result) error {
	sess := r.st.Session
	have := map[int]PartRecord{}
	if sess.UploadID != "" {
		listed, err := r.listParts(ctx, sess.UploadID)
		switch {
		case isNoSuchUpload(err):
			// Completed by an earlier attempt that died before recording it, or aborted.
			want, known := r.recordedCRC()
			if done, herr := r.objectComplete(ctx, want, known); herr == nil && done {
				res.Resumed = r.src.Size()
				r.prog.add(r.src.Size(), false)
				return nil
			}
			sess.UploadID = ""
		case err != nil:
			return fmt.Errorf("upload: list parts: %w", err)
		default:
			have = r.reconcile(listed)
		}
	}
	if sess.UploadID == "" {
		var init *cos.InitiateMultipartUploadResult
		err := r.retry(ctx, "initiate", func() (err error) {
			init, _, err = r.cosClient().Object.InitiateMultipartUpload(ctx, sess.VideoKey, nil)
			return err
		})
		if err != nil {
			return fmt.Errorf("upload: initiate: %w", err)
		}
		if err := r.u.store.SetUploadID(ctx, r.l, init.UploadID); err != nil {
			return err
		}
		sess.UploadID = init.UploadID
	}
	var skipped int64
	for _, p := range have {
		skipped += p.Size
	}
	res.Resumed = skipped
	if skipped > 0 {
		r.u.obs.BytesSkipped(skipped)
		r.prog.add(skipped, false)
	}
	if err := r.sendParts(ctx, have); err != nil {
		return err
	}
	if err := r.checkControl(ctx); err != nil {
		return err
	}
	return r.complete(ctx, have)
}

// reconcile keeps the listed parts whose bytes are ours: COS is the truth,
// and a part recorded neither here nor with a matching ETag is re-checked
// against the source (MD5), so a worker that died between COS's answer and
// its record loses nothing.
func (r *run) reconcile(listed []cos.Object) map[int]PartRecord {
	have := map[int]PartRecord{}
	n := r.numParts()
	for _, p := range listed {
		if p.PartNumber < 1 || p.PartNumber > n || p.Size != r.partLen(p.PartNumber) {
			continue
		}
		if rec, ok := r.st.Parts[p.PartNumber]; ok && rec.ETag == p.ETag && rec.Size == p.Size {
			have[p.PartNumber] = rec
			continue
		}
		body, err := r.partBody(int64(p.PartNumber-1)*r.st.Session.PartSize, p.Size)
		if err != nil {
			continue
		}
		md, crc := md5.New(), checksum.NewCRC64()
		if _, err := io.Copy(io.MultiWriter(md, crc), body); err != nil {
			continue
		}
		if `"`+hex.EncodeToString(md.Sum(nil))+`"` == p.ETag {
			have[p.PartNumber] = PartRecord{Number: p.PartNumber, Size: p.Size, ETag: p.ETag, CRC64: crc.Sum64()}
		}
	}
	return have
}

func (r *run) listParts(ctx context.Context, uploadID string) ([]cos.Object, error) {
	var out []cos.Object
	opt := &cos.ObjectListPartsOptions{MaxParts: "1000"}
	for {
		var lp *cos.ObjectListPartsResult
		err := r.retry(ctx, "list_parts", func() (err error) {
			lp, _, err = r.cosClient().Object.ListParts(ctx, r.st.Session.VideoKey, uploadID, opt)
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, lp.Parts...)
		if !lp.IsTruncated {
			return out, nil
		}
		opt.PartNumberMarker = lp.NextPartNumberMarker
	}
}

// objectComplete tells whether the session's object is stored whole (an
// earlier Complete landed though its answer was lost): its size is the
// source's and, when known, its CRC-64 is want.
func (r *run) objectComplete(ctx context.Context, want uint64, known bool) (bool, error) {
	resp, err := r.cosClient().Object.Head(ctx, r.st.Session.VideoKey, nil)
	if err != nil {
		return false, err
	}
	if resp.ContentLength != r.src.Size() {
		return false, nil
	}
	// With the parts' CRC-64s known, the object's must be theirs combined,
	// as a Complete's answer is checked: the same size is not the same bytes.
	if got := resp.Header.Get("x-cos-hash-crc64ecma"); known && got != "" && got != strconv.FormatUint(want, 10) {
		return false, nil
	}
	return true, nil
}

// recordedCRC is the source's CRC-64 combined from the recorded parts', when
// every part is recorded.
func (r *run) recordedCRC() (uint64, bool) {
	n := r.numParts()
	if len(r.st.Parts) != n {
		return 0, false
	}
	crcs := make([]checksum.PartCRC, n)
	for i := range n {
		p, ok := r.st.Parts[i+1]
		if !ok {
			return 0, false
		}
		crcs[i] = checksum.PartCRC{Size: p.Size, CRC: p.CRC64}
	}
	return checksum.CombineParts(crcs), true
}

// sendParts uploads every part not in have, Concurrency at a time, checking
// the job's control at part boundaries.
func (r *run) sendParts(ctx context.Context, have map[int]PartRecord) error {
	var missing []int
	for n := 1; n <= r.numParts(); n++ {
		if _, ok := have[n]; !ok {
			missing = append(missing, n)
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel(err)
		}
		mu.Unlock()
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(r.u.cfg.Concurrency, max(len(missing), 1)) {
		wg.Go(func() {
			for n := range next {
				rec, err := r.sendPart(ctx, n)
				if err != nil {
					fail(err)
					continue
				}
				if err := r.u.store.SavePart(ctx, r.l, rec); err != nil {
					fail(err)
					continue
				}
				mu.Lock()
				have[n] = rec
				mu.Unlock()
			}
		})
	}
	// A pause, cancel or drain stops dispatching but lets parts in flight
	// finish, so their bytes are kept; a failure cancels them.
	var stopErr error
dispatch:
	for _, n := range missing {
		if r.control != nil {
			switch r.control() {
			case job.ControlPause:
				stopErr = ErrPaused
			case job.ControlCancel:
				stopErr = ErrCanceled
			case ControlDrain:
				stopErr = ErrDrained
			}
			if stopErr != nil {
				break dispatch
			}
		}
		select {
		case next <- n:
		case <-ctx.Done():
			break dispatch
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := context.Cause(ctx); err != nil {
		return err
	}
	if errors.Is(stopErr, ErrCanceled) {
		return r.u.cancel(ctx, r.l, r.st)
	}
	return stopErr
}

// sendPart uploads one part, retrying transient failures, refreshing
// credentials on credential errors and re-sending on a CRC mismatch.
func (r *run) sendPart(ctx context.Context, n int) (PartRecord, error) {
	size := r.partLen(n)
	off := int64(n-1) * r.st.Session.PartSize
	var rec PartRecord
	err := r.retry(ctx, "part", func() error {
		body, err := r.partBody(off, size)
		if err != nil {
			return sourceErr(err)
		}
		start := time.Now()
		sent := &summed{r: body}
		resp, err := r.cosClient().Object.UploadPart(ctx, r.st.Session.VideoKey, r.st.Session.UploadID, n, sent,
			&cos.ObjectUploadPartOptions{ContentLength: size})
		if err != nil {
			return err
		}
		crc, err := sent.verify(resp, fmt.Sprintf("part %d", n))
		if err != nil {
			return err
		}
		rec = PartRecord{Number: n, Size: size, ETag: resp.Header.Get("ETag"), CRC64: crc}
		r.u.obs.PartUploaded(size, time.Since(start))
		r.prog.add(size, true)
		return nil
	})
	return rec, err
}

// retry runs f until it succeeds, fails permanently, or uses its attempts.
func (r *run) retry(ctx context.Context, op string, f func() error) error {
	b := retry.Part.New()
	var err error
	for attempt := 1; attempt <= r.u.cfg.PartAttempts; attempt++ {
		gen := r.generation()
		err = f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if _, perm := IsPermanent(err); perm || isNoSuchUpload(err) || errors.Is(err, ErrLeaseLost) {
			return err
		}
		if isStorageFull(err) {
			return fmt.Errorf("%w: %w", ErrStorageFull, err)
		}
		if cerr := r.u.clock.cosClockErr(err); cerr != err {
			return cerr
		}
		if attempt == r.u.cfg.PartAttempts {
			break // no wait after the last attempt
		}
		r.u.obs.Retry(op)
		if isCredentialError(err) {
			if rerr := r.refresh(ctx, gen); rerr != nil {
				return fmt.Errorf("upload: refresh credentials: %w", rerr)
			}
			continue
		}
		if !retry.Sleep(ctx, b.NextBackOff()) {
			return context.Cause(ctx)
		}
	}
	return err
}

func cosErrorCode(err error) string {
	var e *cos.ErrorResponse
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func isNoSuchUpload(err error) bool { return cosErrorCode(err) == "NoSuchUpload" }

// isStorageFull reports a store out of space: 507, whatever the code.
func isStorageFull(err error) bool {
	var e *cos.ErrorResponse
	return errors.As(err, &e) && e.Response != nil && e.Response.StatusCode == http.StatusInsufficientStorage
}

func isCredentialError(err error) bool {
	switch cosErrorCode(err) {
	case "ExpiredToken", "InvalidAccessKeyId", "AccessDenied", "InvalidToken", "TokenRefreshRequired":
		return true
	}
	return false
}

// complete finishes the multipart upload and checks the whole object's CRC-64
// against the one combined from the parts.
func (r *run) complete(ctx context.Context, have map[int]PartRecord) error {
	numbers := make([]int, 0, len(have))
	for n := range have {
		numbers = append(numbers, n)
	}
	sort.Ints(numbers)
	parts := make([]cos.Object, len(numbers))
	crcs := make([]checksum.PartCRC, len(numbers))
	for i, n := range numbers {
		p := have[n]
		parts[i] = cos.Object{PartNumber: n, ETag: p.ETag}
		crcs[i] = checksum.PartCRC{Size: p.Size, CRC: p.CRC64}
	}
	want := checksum.CombineParts(crcs)
	var resp *cos.Response
	err := r.retry(ctx, "complete", func() (err error) {
		_, resp, err = r.cosClient().Object.CompleteMultipartUpload(ctx, r.st.Session.VideoKey, r.st.Session.UploadID,
			&cos.CompleteMultipartUploadOptions{Parts: parts})
		return err
	})
	if isNoSuchUpload(err) {
		// An earlier Complete landed though its answer was lost.
		if done, herr := r.objectComplete(ctx, want, true); herr == nil && done {
			r.abortStale(ctx)
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("upload: complete: %w", err)
	}
	r.abortStale(ctx)
	if got := resp.Header.Get("x-cos-hash-crc64ecma"); got != strconv.FormatUint(want, 10) {
		// The stored object is not the source: start this object over.
		r.st.Session.UploadID = ""
		_ = r.u.store.SaveSession(ctx, r.l, *r.st.Session)
		return fmt.Errorf("upload: whole-object CRC-64 %s, want %d", got, want)
	}
	return nil
}

// abortStale aborts the other multipart uploads of this object: an attempt
// that died between InitiateMultipartUpload and recording its UploadId left
// one that nobody else knows of. Best effort: a failure only leaves it to
// COS's lifecycle rules.
func (r *run) abortStale(ctx context.Context) { r.abortUploads(ctx, r.st.Session.UploadID) }

// abortUploads aborts the multipart uploads of the session's object but
// keep (every one, for ""). Best effort, as abortStale.
func (r *run) abortUploads(ctx context.Context, keep string) {
	key := r.st.Session.VideoKey
	res, _, err := r.cosClient().Object.ListUploads(ctx, &cos.ObjectListUploadsOptions{Prefix: key})
	if err != nil {
		r.u.log.Warn("listing stale multipart uploads failed", "job_id", r.l.JobID, "err", err)
		return
	}
	for _, u := range res.Upload {
		if u.Key != key || u.UploadID == keep {
			continue
		}
		if _, err := r.cosClient().Object.AbortMultipartUpload(ctx, key, u.UploadID); err != nil && !isNoSuchUpload(err) {
			r.u.log.Warn("abort of a stale multipart upload failed", "job_id", r.l.JobID, "err", err)
		}
	}
}

func (r *run) commit(ctx context.Context) (*vod.CommitResponse, error) {
	var cm *vod.CommitResponse
	err := r.withRenewal(ctx, func(sign vod.SignatureFunc) (err error) {
		cm, err = r.u.vod.Commit(ctx, sign, r.st.Session.VodSessionKey)
		return err
	})
	if errors.Is(err, vod.ErrUploadIncomplete) || errors.Is(err, vod.ErrSessionExpired) {
		// The objects or the session are gone: the next attempt starts over.
		_ = r.u.store.SaveSession(ctx, r.l, Session{})
	}
	if err != nil {
		return nil, fmt.Errorf("upload: commit: %w", err)
	}
	return cm, nil
}
