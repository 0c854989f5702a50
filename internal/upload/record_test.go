package upload

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

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
// record is made; a permanent one is given up at once.
func TestRecordUploadRetriesOnlyWhatCanSucceed(t *testing.T) {
	transient := &recorder{failures: 2, err: errors.New("nats: timeout")}
	recordRun(transient).recordUpload(t.Context())
	if transient.calls != 3 {
		t.Fatalf("transient failures: %d calls, want 3 (two failures, then the record)", transient.calls)
	}
	perm := &recorder{failures: 100, err: &PermanentError{Code: "record_refused", Err: errors.New("closed")}}
	recordRun(perm).recordUpload(t.Context())
	if perm.calls != 1 {
		t.Fatalf("permanent failure: %d calls, want 1", perm.calls)
	}
}
