package worker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/internal/upload"
)

// A record that cannot succeed (the worker's connection is closed) is marked
// permanent, so the uploader commits at once instead of retrying it; one on
// a connection that is reconnecting is not, and one that works is recorded.
func TestUploadRecordOnAClosedConnectionIsPermanent(t *testing.T) {
	n := testharness.StartNATS(t)
	nc := n.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(t.Context(), js, queue.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rec := uploadRecorder{q.Files}
	if err := rec.RecordUpload(t.Context(), "/app/video/a.mp4", "job-a"); err != nil {
		t.Fatalf("record on an open connection: %v", err)
	}
	if id, err := q.Files.JobForMediaURL(t.Context(), "http://play.example/app/video/a.mp4"); err != nil || id != "job-a" {
		t.Fatalf("recorded job: %q, %v", id, err)
	}

	// The server goes away: the connection reconnects, and a record that
	// times out meanwhile is worth trying again.
	n.Shutdown()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err = rec.RecordUpload(ctx, "/app/video/b.mp4", "job-b")
	if _, perm := upload.IsPermanent(err); err == nil || perm {
		t.Fatalf("record while reconnecting: %v (permanent %v), want a transient error", err, perm)
	}

	nc.Close()
	err = rec.RecordUpload(t.Context(), "/app/video/b.mp4", "job-b")
	if code, perm := upload.IsPermanent(err); !perm || code != "record_refused" {
		t.Fatalf("record on a closed connection: %v (permanent %v, code %q), want a permanent record_refused", err, perm, code)
	}
}
