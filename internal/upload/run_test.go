package upload_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/resume"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/internal/upload"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// localSigner signs in this process with the signature service's own code
// (no NATS): the upload core's Signer for tests of the core alone.
type localSigner struct {
	s     *signer.Signer
	calls atomic.Int32
}

func (l *localSigner) SignJob(_ context.Context, j *job.Job) (string, error) {
	l.calls.Add(1)
	r, err := l.s.Sign(signer.ForJob(j, 0))
	return r.Signature, err
}

// core is the upload core with real parts around it: vodsim, an in-memory
// resume store, the signing code, file sources.
type core struct {
	t       *testing.T
	sim     *testharness.Vodsim
	store   *resume.Memory
	signer  *localSigner
	up      *upload.Uploader
	sources *upload.Sources
	root    string
	leases  map[string]upload.Lease
}

func newCore(t *testing.T, policy signer.Policy, simMod ...func(*vodsim.Config)) *core {
	t.Helper()
	c := &core{t: t, sim: testharness.StartVodsim(t, simMod...), store: resume.NewMemory(), root: t.TempDir(),
		leases: map[string]upload.Lease{}}
	if policy.MaxValidity == 0 {
		policy.MaxValidity = time.Hour
	}
	s, err := signer.New(testharness.VodsimSecretID, testharness.VodsimSecretKey, policy)
	if err != nil {
		t.Fatal(err)
	}
	c.signer = &localSigner{s: s}
	sources, err := upload.NewSources(upload.SourcesConfig{Root: c.root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sources.Close() })
	c.sources = sources
	c.up = c.uploader(c.store)
	return c
}

// uploader is the core's uploader with store as its resume store.
func (c *core) uploader(store upload.ResumeStore) *upload.Uploader {
	return upload.New(upload.Config{PartSize: 1 << 20, Concurrency: 2, COSScheme: "http"}, upload.Deps{
		VOD: c.sim.VODClient(), Signer: c.signer, Sources: c.sources, Store: store,
		COSTransport: vod.DialOverride(c.sim.Addr, 8),
	})
}

// source writes size random bytes under the root and returns the job for them.
func (c *core) source(id string, size int) (*job.Job, []byte) {
	c.t.Helper()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(size), 7))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	path := filepath.Join(c.root, id+".mp4")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		c.t.Fatal(err)
	}
	j := &job.Job{V: job.Version, ID: id, Source: "file://" + path}
	j.Normalize()
	return j, data
}

// lease takes the job's lease until the test ends or the next lease of the
// job: as a worker does, each run gets one.
func (c *core) lease(jobID string) upload.Lease {
	c.t.Helper()
	if l, ok := c.leases[jobID]; ok {
		_ = c.store.Release(c.t.Context(), l)
	}
	l, err := c.store.Acquire(c.t.Context(), jobID, "core-test", time.Minute)
	if err != nil {
		c.t.Fatal(err)
	}
	c.leases[jobID] = l
	return l
}

// stored checks that vodsim holds data under the FileId.
func (c *core) stored(fileID string, data []byte) {
	c.t.Helper()
	for _, f := range c.sim.Files() {
		if f.FileID != fileID {
			continue
		}
		rc, err := c.sim.OpenObject(f.Bucket, f.VideoKey)
		if err != nil {
			c.t.Fatal(err)
		}
		defer rc.Close()
		got, _ := io.ReadAll(rc)
		if sha256.Sum256(got) != sha256.Sum256(data) {
			c.t.Fatalf("stored %d bytes differ from the %d-byte source", len(got), len(data))
		}
		return
	}
	c.t.Fatalf("FileId %s not issued by vodsim", fileID)
}

func none() job.Control { return job.ControlNone }

// barrierStore is the in-memory store with resume.Redis's one-step barrier
// (upload.SessionCommitBarrier), counting the session writes of each kind;
// fail makes the next barrier fail, as a worker that dies right before it.
type barrierStore struct {
	*resume.Memory
	saves, barriers atomic.Int32
	fail            atomic.Bool
	// failAfter makes the next barrier record the session, then fail: a
	// worker that dies between the barrier and the commit.
	failAfter atomic.Bool
}

func (s *barrierStore) SaveSession(ctx context.Context, l upload.Lease, sess upload.Session) error {
	s.saves.Add(1)
	return s.Memory.SaveSession(ctx, l, sess)
}

func (s *barrierStore) SaveSessionBeforeCommit(ctx context.Context, l upload.Lease, sess upload.Session) error {
	s.barriers.Add(1)
	if s.fail.Swap(false) {
		return errors.New("the worker died")
	}
	if err := s.Memory.SaveSession(ctx, l, sess); err != nil {
		return err
	}
	if s.failAfter.Swap(false) {
		return errors.New("the worker died after the barrier")
	}
	return nil
}

// A source of one part and no cover records its VOD session once, with the
// barrier before the commit: nothing is written between ApplyUploadUGC and
// then, and a run that stops before the barrier leaves no session, so the
// next one opens its own and only that one is committed; a run that dies
// after it leaves the session, which the next run commits. A source of
// several parts records its session right after ApplyUploadUGC, as before.
func TestCoreOnePartRecordsItsSessionWithTheBarrier(t *testing.T) {
	c := newCore(t, signer.Policy{})
	store := &barrierStore{Memory: c.store}
	up := c.uploader(store)
	ctx := t.Context()
	j, data := c.source("one-part", 300<<10)
	store.fail.Store(true)
	if _, err := up.Run(ctx, j, c.lease(j.ID), none); err == nil {
		t.Fatal("the run went on past a failed barrier")
	}
	if st, err := c.store.Load(ctx, j.ID); !errors.Is(err, upload.ErrNoState) {
		t.Fatalf("state after a run stopped before the barrier = %+v, %v; want none", st, err)
	}
	res, err := up.Run(ctx, j, c.lease(j.ID), none)
	if err != nil {
		t.Fatal(err)
	}
	if s, b := store.saves.Load(), store.barriers.Load(); s != 0 || b != 2 {
		t.Fatalf("session writes: %d SaveSession, %d SaveSessionBeforeCommit; want 0 and 2 (one a run)", s, b)
	}
	c.stored(res.FileID, data)
	if n := len(c.sim.Files()); n != 1 {
		t.Fatalf("vodsim files = %d, want 1", n)
	}
	if st, err := c.store.Load(ctx, j.ID); err != nil || st.Session == nil || st.FileID != res.FileID {
		t.Fatalf("state after the commit = %+v, %v; want the session and the FileId", st, err)
	}

	// Dead between the barrier and the commit: the next run resumes the
	// recorded session and commits it, one file.
	again, data2 := c.source("one-part-again", 300<<10)
	store.failAfter.Store(true)
	if _, err := up.Run(ctx, again, c.lease(again.ID), none); err == nil {
		t.Fatal("the run went on past a barrier that failed after recording the session")
	}
	st, err := c.store.Load(ctx, again.ID)
	if err != nil || st.Session == nil {
		t.Fatalf("state after the barrier = %+v, %v; want the session", st, err)
	}
	recorded := st.Session.VodSessionKey
	res2, err := up.Run(ctx, again, c.lease(again.ID), none)
	if err != nil {
		t.Fatal(err)
	}
	c.stored(res2.FileID, data2)
	if n := len(c.sim.Files()); n != 2 {
		t.Fatalf("vodsim files = %d, want 2 (one a job)", n)
	}
	if st, err := c.store.Load(ctx, again.ID); err != nil || st.Session == nil || st.Session.VodSessionKey != recorded {
		t.Fatalf("session after the second run = %+v, %v; want the recorded one, %s, committed", st, err, recorded)
	}

	saves, barriers := store.saves.Load(), store.barriers.Load()
	multi, _ := c.source("parts", 2<<20+1)
	if _, err := up.Run(ctx, multi, c.lease(multi.ID), none); err != nil {
		t.Fatal(err)
	}
	if s, b := store.saves.Load()-saves, store.barriers.Load()-barriers; s != 1 || b != 0 {
		t.Fatalf("session writes of a multipart run: %d SaveSession, %d barriers; want 1 and none", s, b)
	}
}

// Jobs of one policy share a signature that is not one-time: the second
// asks the signature service for none. A job of another policy (a source
// context of its own) and a one-time job ask for their own, and a one-time
// job's signatures are shared with nobody.
func TestCoreJobsOfOnePolicyShareASignature(t *testing.T) {
	c := newCore(t, signer.Policy{})
	ctx := t.Context()
	run := func(j *job.Job) {
		t.Helper()
		if _, err := c.up.Run(ctx, j, c.lease(j.ID), none); err != nil {
			t.Fatalf("%s: %v", j.ID, err)
		}
	}
	asked := func(what string, want int32, f func()) {
		t.Helper()
		before := c.signer.calls.Load()
		f()
		if got := c.signer.calls.Load() - before; got != want {
			t.Fatalf("%s: %d signature requests, want %d", what, got, want)
		}
	}
	a, _ := c.source("share-a", 200<<10)
	b, _ := c.source("share-b", 2<<20+7) // parts: Apply, the parts' credentials, Commit
	other, _ := c.source("share-other", 100<<10)
	other.SourceContext = "a context of its own"
	once, _ := c.source("share-once", 100<<10)
	once.OneTimeSignature = true
	after, _ := c.source("share-after", 100<<10)
	asked("the first job", 1, func() { run(a) })
	asked("a job of the same policy", 0, func() { run(b) })
	asked("a job of another policy", 1, func() { run(other) })
	asked("a one-time job (ApplyUploadUGC, then CommitUploadUGC)", 2, func() { run(once) })
	asked("a job of the first policy after the one-time job", 0, func() { run(after) })
	if n := len(c.sim.Files()); n != 5 {
		t.Fatalf("vodsim files = %d, want 5", n)
	}
}

func TestCoreUploadsInPartsAndCommits(t *testing.T) {
	c := newCore(t, signer.Policy{})
	j, data := c.source("parts-1", 3<<20+123)
	res, err := c.up.Run(t.Context(), j, c.lease(j.ID), none)
	if err != nil {
		t.Fatal(err)
	}
	if res.FileID == "" || res.Size != int64(len(data)) || res.Sent != int64(len(data)) || res.Resumed != 0 {
		t.Fatalf("result = %+v", res)
	}
	c.stored(res.FileID, data)
	st, err := c.store.Load(t.Context(), j.ID)
	if err != nil || st.FileID != res.FileID || len(st.Parts) != 4 || !st.VideoDone {
		t.Fatalf("resume state = %+v, %v; want the commit, 4 parts and the video done", st, err)
	}
	// Run again: the state says committed, so nothing is sent and the same FileId comes back.
	again, err := c.up.Run(t.Context(), j, c.lease(j.ID), none)
	if err != nil || !again.AlreadyCommitted || again.FileID != res.FileID || again.Sent != 0 {
		t.Fatalf("second run = %+v, %v; want the recorded commit and nothing sent", again, err)
	}
	if n := len(c.sim.Files()); n != 1 {
		t.Fatalf("vodsim files = %d, want 1", n)
	}
}

// runUntilPaused runs j until a pause it meets after three control checks.
func (c *core) runUntilPaused(j *job.Job) {
	c.t.Helper()
	var checks atomic.Int32
	pauseSoon := func() job.Control {
		if checks.Add(1) > 3 {
			return job.ControlPause
		}
		return job.ControlNone
	}
	if _, err := c.up.Run(c.t.Context(), j, c.lease(j.ID), pauseSoon); !errors.Is(err, upload.ErrPaused) {
		c.t.Fatalf("run with a pause: %v, want ErrPaused", err)
	}
}

// A pause stops at a part boundary with the parts so far recorded; the next
// run, under a new lease, sends only what is missing, with a fresh
// signature when the job's signatures are one-time.
func TestCoreResumesWhereItPaused(t *testing.T) {
	c := newCore(t, signer.Policy{ForceOneTime: true})
	j, data := c.source("resume-1", 6<<20+5)
	c.runUntilPaused(j)
	st, err := c.store.Load(t.Context(), j.ID)
	if err != nil || len(st.Parts) == 0 || len(st.Parts) >= 7 || st.Session == nil || st.Session.UploadID == "" {
		t.Fatalf("state after the pause = %+v, %v; want some of 7 parts and the multipart upload", st, err)
	}
	done := int64(len(st.Parts)) << 20
	signed := c.signer.calls.Load()
	res, err := c.up.Run(t.Context(), j, c.lease(j.ID), none)
	if err != nil {
		t.Fatal(err)
	}
	c.stored(res.FileID, data)
	if res.Resumed < done || res.Sent > int64(len(data))-done+2<<20 {
		t.Fatalf("resumed %d, sent %d of %d; %d were recorded", res.Resumed, res.Sent, len(data), done)
	}
	if c.signer.calls.Load() == signed {
		t.Fatal("the resume reused a spent one-time signature")
	}
	for _, u := range c.sim.SignatureUses() {
		if u.OneTime && u.Uses > 1 {
			t.Fatalf("a one-time signature was used %d times", u.Uses)
		}
	}
}

// A source replaced by other content of the same size between two runs
// (rewritten in place, or another file moved onto its path) is uploaded
// whole in a new session: the parts kept from the paused one are the old
// content's, and resuming them committed a file made of both.
func TestCoreStartsOverWhenTheSourceChangedAtTheSameSize(t *testing.T) {
	c := newCore(t, signer.Policy{})
	j, _ := c.source("changed-1", 6<<20+5)
	c.runUntilPaused(j)
	if st, err := c.store.Load(t.Context(), j.ID); err != nil || len(st.Parts) == 0 {
		t.Fatalf("state after the pause = %+v, %v; want some parts", st, err)
	}
	path := filepath.Join(c.root, "changed-1.mp4")
	replaced := make([]byte, 6<<20+5)
	rng := rand.New(rand.NewPCG(99, 7))
	for i := range replaced {
		replaced[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(path, replaced, 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute) // another version even on a coarse clock
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	res, err := c.up.Run(t.Context(), j, c.lease(j.ID), none)
	if err != nil {
		t.Fatal(err)
	}
	c.stored(res.FileID, replaced)
	if res.Resumed != 0 {
		t.Fatalf("resumed %d bytes of the old content", res.Resumed)
	}
}

// Parts COS holds but the state lost (a write that did not land before a
// crash) are found with ListParts and not sent again; a part the state
// records but COS does not have is sent again.
func TestCoreReconcilesWithListParts(t *testing.T) {
	c := newCore(t, signer.Policy{})
	j, data := c.source("reconcile-1", 8<<20)
	var checks atomic.Int32
	pauseSoon := func() job.Control {
		if checks.Add(1) > 6 {
			return job.ControlPause
		}
		return job.ControlNone
	}
	l := c.lease(j.ID)
	if _, err := c.up.Run(t.Context(), j, l, pauseSoon); !errors.Is(err, upload.ErrPaused) {
		t.Fatalf("run with a pause: %v", err)
	}
	st, err := c.store.Load(t.Context(), j.ID)
	if err != nil || len(st.Parts) < 4 {
		t.Fatalf("state after the pause = %+v, %v; want 4 parts or more, for the resend to tell", st, err)
	}
	// Forget every recorded part but the first: COS still has them.
	kept := st.Parts[1]
	session := *st.Session
	l = c.lease(j.ID)
	if err := c.store.SaveSession(t.Context(), l, session); err != nil {
		t.Fatal(err)
	}
	if err := c.store.SavePart(t.Context(), l, kept); err != nil {
		t.Fatal(err)
	}
	inCOS := int64(len(st.Parts)) << 20
	res, err := c.up.Run(t.Context(), j, l, none)
	if err != nil {
		t.Fatal(err)
	}
	c.stored(res.FileID, data)
	if res.Sent > int64(len(data))-inCOS+2<<20 {
		t.Fatalf("sent %d bytes; COS held %d of %d already", res.Sent, inCOS, len(data))
	}
}

// Bytes COS stored differently from what was sent (its CRC-64 differs)
// are never committed: with every part corrupted, the run fails and no file
// exists.
func TestCoreNeverCommitsCorruptedParts(t *testing.T) {
	c := newCore(t, signer.Policy{})
	if err := c.sim.SetFaults(vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpUploadPart, CorruptRate: 1}}}); err != nil {
		t.Fatal(err)
	}
	j, _ := c.source("crc-1", 2<<20+9)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res, err := c.up.Run(ctx, j, c.lease(j.ID), none)
	if err == nil {
		t.Fatalf("run with every part corrupted = %+v, want an error", res)
	}
	if !errors.Is(err, upload.ErrCRCMismatch) {
		t.Fatalf("run: %v, want the CRC-64 check's refusal", err)
	}
	if files := c.sim.Files(); len(files) != 0 {
		t.Fatalf("vodsim files = %+v, want none", files)
	}
}

// Temporary credentials that expire during an upload are renewed: a
// credential lifetime shorter than the upload still commits.
func TestCoreRenewsExpiringCredentials(t *testing.T) {
	c := newCore(t, signer.Policy{}, func(cfg *vodsim.Config) {
		cfg.Faults = vodsim.FaultConfig{Bandwidth: 2 << 20, CredentialLifetime: vodsim.Duration(2 * time.Second)}
	})
	j, data := c.source("renew-1", 6<<20)
	res, err := c.up.Run(t.Context(), j, c.lease(j.ID), none)
	if err != nil {
		t.Fatal(err)
	}
	c.stored(res.FileID, data)
	applies := 0
	for _, s := range c.sim.Sessions() {
		applies += s.Applies
	}
	if applies < 2 {
		t.Fatalf("applies = %d for a 3-second upload with 2-second credentials, want a renewal", applies)
	}
}
