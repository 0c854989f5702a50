package upload_test

// What a run leaves behind when it stops for good, starts over or is
// cancelled, and the sources COS's bounds make special. Each test failed
// before 0.10.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/resume"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/internal/upload"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// A run that starts over in a new VOD session (the source changed between
// runs) aborts the old session's multipart upload with the old session's
// credentials; until 0.10 nobody did (abortStale lists the new session's key
// only), and its parts stayed stored.
func TestStartingOverAbortsTheAbandonedMultipartUpload(t *testing.T) {
	c := newCore(t, signer.Policy{})
	j, _ := c.source("t-startover", 6<<20+5)
	c.runUntilPaused(j)
	if ups := c.sim.Uploads(); len(ups) != 1 {
		t.Fatalf("open uploads after the pause = %d, want 1", len(ups))
	}
	path := filepath.Join(c.root, "t-startover.mp4")
	if err := os.WriteFile(path, make([]byte, 6<<20+5), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if _, err := c.up.Run(t.Context(), j, c.lease(j.ID), none); err != nil {
		t.Fatal(err)
	}
	if ups := c.sim.Uploads(); len(ups) != 0 {
		t.Fatalf("%d multipart uploads left open after the job committed (first: %s %s, %d parts)",
			len(ups), ups[0].Key, ups[0].ID, len(ups[0].Parts))
	}
}

// A source of more parts than COS allows (10,000) at the configured part
// size (1 MiB here) is sent in parts of the smallest whole number of MiB
// that takes 10,000 at most. Until 0.10 it went ahead at the configured size
// and part 10,001 was refused (retried as transient, the job run again
// MaxDeliver times, then dead-lettered). The sparse file costs no disk.
func TestSourceOverTheCOSPartLimitTakesLargerParts(t *testing.T) {
	c := newCore(t, signer.Policy{})
	path := filepath.Join(c.root, "t-huge.mp4")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(10_000<<20 + 1); err != nil { // 10,001 parts of 1 MiB
		t.Fatal(err)
	}
	_ = f.Close()
	j := &job.Job{V: job.Version, ID: "t-huge", Source: "file://" + path}
	j.Normalize()
	var checks atomic.Int32
	pauseSoon := func() job.Control {
		if checks.Add(1) > 4 {
			return job.ControlPause
		}
		return job.ControlNone
	}
	_, err = c.up.Run(t.Context(), j, c.lease(j.ID), pauseSoon)
	if !errors.Is(err, upload.ErrPaused) {
		t.Fatalf("run: %v, want the pause after a few parts", err)
	}
	st, lerr := c.store.Load(t.Context(), j.ID)
	if lerr != nil || st.Session == nil {
		t.Fatalf("state %+v, %v", st, lerr)
	}
	if parts := (st.Session.Size + st.Session.PartSize - 1) / st.Session.PartSize; parts > 10_000 || st.Session.PartSize != 2<<20 {
		t.Fatalf("a %d-byte source goes in %d parts of %d bytes; want parts of 2 MiB, 10,000 at most",
			st.Session.Size, parts, st.Session.PartSize)
	}
	for _, up := range c.sim.Uploads() {
		for _, p := range up.Parts {
			if p.Size != 2<<20 {
				t.Fatalf("part %d of %d bytes stored, want 2 MiB", p.Number, p.Size)
			}
		}
	}
}

// A run that fails for good mid-upload (an http source that changed: a
// permanent source_changed) aborts its multipart upload and drops its state;
// until 0.10 the upload stayed open with its parts (the worker's fail does
// not abort it either).
func TestPermanentFailureAbortsTheMultipartUpload(t *testing.T) {
	c := newCore(t, signer.Policy{})
	sources, err := upload.NewSources(upload.SourcesConfig{Root: c.root, AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sources.Close() })
	c.sources = sources
	up := c.uploader(c.store)

	const size = 4<<20 + 3
	var ranges atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The resource changes after the probe and two parts: a new ETag,
		// so If-Range answers the whole resource (200), as a CDN would.
		etag := `"v1"`
		if ranges.Add(1) > 3 {
			etag = `"v2"`
		}
		w.Header().Set("ETag", etag)
		rng := r.Header.Get("Range")
		if ir := r.Header.Get("If-Range"); ir != "" && ir != etag || rng == "" {
			w.Header().Set("Content-Length", strconv.Itoa(size))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(make([]byte, size))
			return
		}
		var from, to int
		if _, err := fmt.Sscanf(rng, "bytes=%d-%d", &from, &to); err != nil {
			http.Error(w, "bad range", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Range", "bytes "+strconv.Itoa(from)+"-"+strconv.Itoa(to)+"/"+strconv.Itoa(size))
		w.Header().Set("Content-Length", strconv.Itoa(to-from+1))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(make([]byte, to-from+1))
	}))
	t.Cleanup(srv.Close)
	j := &job.Job{V: job.Version, ID: "t-permanent", Source: srv.URL + "/v.mp4"}
	j.Normalize()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = up.Run(ctx, j, c.lease(j.ID), none)
	code, perm := upload.IsPermanent(err)
	if !perm || code != "source_changed" {
		t.Fatalf("run: %v (code %q); want the permanent source_changed the test sets up", err, code)
	}
	if ups := c.sim.Uploads(); len(ups) != 0 {
		t.Fatalf("a job failed for good left %d multipart uploads open (%d parts)", len(ups), len(ups[0].Parts))
	}
}

// commitLost is the memory store whose SaveCommit fails once: the worker
// died between CommitUploadUGC and recording it.
type commitLost struct {
	*resume.Memory
	failed atomic.Bool
}

func (s *commitLost) SaveCommit(ctx context.Context, l upload.Lease, fileID, mediaURL, coverURL string) error {
	if !s.failed.Swap(true) {
		return errors.New("the worker died after the commit")
	}
	return s.Memory.SaveCommit(ctx, l, fileID, mediaURL, coverURL)
}

// A commit that landed but was not recorded is committed again in the
// same session (VOD answers the same FileId), whatever the session's age: a
// session whose files are stored needs only its commit. Until 0.10 a session
// older than SessionMaxAge (23 h) was started over, the whole file uploaded
// again and a second file committed, though VOD (24 h) still held it.
func TestUnrecordedCommitOfAnOldSessionMakesNoSecondFile(t *testing.T) {
	c := newCore(t, signer.Policy{})
	store := &commitLost{Memory: c.store}
	up := c.uploader(store)
	ctx := t.Context()
	j, data := c.source("t-oldsession", 3<<20+1)
	if _, err := up.Run(ctx, j, c.lease(j.ID), none); err == nil {
		t.Fatal("the run recorded its commit; the test needs it lost")
	}
	files := c.sim.Files()
	if len(files) != 1 {
		t.Fatalf("vodsim files after the first run = %d, want 1", len(files))
	}
	// The session ages past SessionMaxAge (as a job paused for most of a
	// day, or a very long upload): 23.5 h old, still valid at VOD.
	st, err := c.store.Load(ctx, j.ID)
	if err != nil || st.Session == nil || !st.VideoDone {
		t.Fatalf("state after the unrecorded commit = %+v, %v", st, err)
	}
	l := c.lease(j.ID)
	old := *st.Session
	old.Opened = time.Now().Add(-23*time.Hour - 30*time.Minute)
	if err := c.store.SaveSession(ctx, l, old); err != nil {
		t.Fatal(err)
	}
	if err := c.store.SetUploadID(ctx, l, old.UploadID); err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Parts {
		if err := c.store.SavePart(ctx, l, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.store.MarkVideoDone(ctx, l); err != nil {
		t.Fatal(err)
	}
	res, err := up.Run(ctx, j, l, none)
	if err != nil {
		t.Fatal(err)
	}
	c.stored(res.FileID, data)
	if n := len(c.sim.Files()); n != 1 || res.FileID != files[0].FileID {
		t.Fatalf("vodsim files = %d, FileId %s (first %s): the job committed a second file", n, res.FileID, files[0].FileID)
	}
}

// A 0-byte source fails for good at once (source_empty): until 0.10 it burnt
// its attempts on a request COS never takes (411, the empty body sent
// chunked by the SDK).
func TestEmptySourceIsRefusedForGood(t *testing.T) {
	c := newCore(t, signer.Policy{})
	j, _ := c.source("t-empty", 0)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.up.Run(ctx, j, c.lease(j.ID), none)
	if code, perm := upload.IsPermanent(err); !perm || code != "source_empty" {
		t.Fatalf("run of a 0-byte source after %s: %v (%q); want the permanent source_empty", time.Since(start).Round(time.Millisecond), err, code)
	}
}

// uploadIDLost is the memory store whose SetUploadID fails once: the
// worker died between InitiateMultipartUpload and recording its UploadId.
type uploadIDLost struct {
	*resume.Memory
	failed atomic.Bool
}

func (s *uploadIDLost) SetUploadID(ctx context.Context, l upload.Lease, id string) error {
	if !s.failed.Swap(true) {
		return errors.New("the worker died after InitiateMultipartUpload")
	}
	return s.Memory.SetUploadID(ctx, l, id)
}

// A job canceled after a run died between InitiateMultipartUpload and
// recording the UploadId: cancel aborts every multipart upload of the
// session's object, the orphan too (until 0.10 only the recorded UploadId,
// none here, and the orphan stayed open).
func TestCancelAbortsAnOrphanedMultipartUpload(t *testing.T) {
	c := newCore(t, signer.Policy{})
	up := c.uploader(&uploadIDLost{Memory: c.store})
	j, _ := c.source("t-orphan", 3<<20+1)
	if _, err := up.Run(t.Context(), j, c.lease(j.ID), none); err == nil {
		t.Fatal("the run went on without its UploadId recorded")
	}
	if n := len(c.sim.Uploads()); n != 1 {
		t.Fatalf("open uploads after the crash = %d, want the orphan", n)
	}
	cancel := func() job.Control { return job.ControlCancel }
	if _, err := up.Run(t.Context(), j, c.lease(j.ID), cancel); !errors.Is(err, upload.ErrCanceled) {
		t.Fatalf("canceled run: %v", err)
	}
	if ups := c.sim.Uploads(); len(ups) != 0 {
		t.Fatalf("%d multipart uploads left open after the cancel (key %s)", len(ups), ups[0].Key)
	}
}
