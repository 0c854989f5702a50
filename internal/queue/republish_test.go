package queue

import (
	"errors"
	"testing"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// A job whose status write got no answer and was never stored is published
// again, and the update that clears its not_queued mark writes nothing: it
// made an empty status (no job, no state) that the worker could not move
// to running, for ever.
func TestRepublishOfAJobWithNoStatusWritesNoEmptyStatus(t *testing.T) {
	_, js, q := openInternal(t)
	ctx := t.Context()
	j := &job.Job{V: 1, ID: "lost-status", Source: "file:///in/lost-status.mp4"}
	q.Jobs.unconfirmedJob(j)
	if n, err := q.Jobs.RepublishUnconfirmed(ctx); err != nil || n != 1 {
		t.Fatalf("RepublishUnconfirmed = %d, %v", n, err)
	}
	if s, _, err := q.Statuses.Get(ctx, j.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status after the republish: %+v, %v; want none (the worker creates it)", s, err)
	}
	stream, err := js.Stream(ctx, JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("jobs stream: %+v %v; want the job's message", info, err)
	}
}
