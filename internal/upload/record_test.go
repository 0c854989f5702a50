package upload

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// recorder is a CommitRecorder that fails its first calls with err.
type recorder struct {
	calls, failures int
	err             error
}

func (r *recorder) RecordUpload(context.Context, string, string) error {
	r.calls++
	if r.calls <= r.failures {
		return r.err
	}
	return nil
}

func recordRun(c CommitRecorder) *run {
	return &run{u: &Uploader{commits: c, log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		j: &job.Job{ID: "j1"}, st: &State{Session: &Session{VideoKey: "app/video/a.mp4"}}}
}

// A transient failure of the storage-path record is tried again until the
// record is made; one that lasts ends the run before its commit, with an
// error that is not permanent (the job runs again); a permanent one is
// given up at once, and the commit goes ahead.
func TestRecordUploadRetriesOnlyWhatCanSucceed(t *testing.T) {
	transient := &recorder{failures: 2, err: errors.New("nats: timeout")}
	if err := recordRun(transient).recordUpload(t.Context()); err != nil || transient.calls != 3 {
		t.Fatalf("transient failures: %v after %d calls, want success at the third", err, transient.calls)
	}
	lasting := &recorder{failures: 1 << 30, err: errors.New("nats: timeout")}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err := recordRun(lasting).recordUpload(ctx)
	if _, perm := IsPermanent(err); err == nil || perm || lasting.calls < 2 {
		t.Fatalf("a record failing throughout: %v after %d calls, want a transient error (no commit)", err, lasting.calls)
	}
	perm := &recorder{failures: 100, err: &PermanentError{Code: "record_refused", Err: errors.New("closed")}}
	if err := recordRun(perm).recordUpload(t.Context()); err != nil || perm.calls != 1 {
		t.Fatalf("permanent failure: %v after %d calls, want the commit to go ahead after 1", err, perm.calls)
	}
}
