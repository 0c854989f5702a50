package queue

import (
	"errors"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/testharness"
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

// An update that changes nothing writes nothing: clearing a not_queued
// mark a status does not have, or marking a job that has finished, would
// give a finished status a fresh TTL (and, with it, a fresh state entry).
func TestNotQueuedUpdatesOfAFinishedStatusWriteNothing(t *testing.T) {
	n := testharness.StartNATS(t)
	ctx := t.Context()
	q, err := Open(ctx, n.JetStream(t), Config{StatusRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	j := &job.Job{V: 1, ID: "finished", Source: "file:///in/finished.mp4"}
	if _, _, err := q.Statuses.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Statuses.Transition(ctx, j.ID, job.StateCanceled, nil); err != nil {
		t.Fatal(err)
	}
	_, rev, err := q.Statuses.Get(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := q.Statuses.Update(ctx, j.ID, clearNotQueued); err != nil || s.State != job.StateCanceled {
		t.Fatalf("clearNotQueued = %+v, %v; want the canceled status, no error", s, err)
	}
	q.Jobs.markNotQueued(ctx, j.ID, errors.New("refused"))
	if s, rev2, err := q.Statuses.Get(ctx, j.ID); err != nil || rev2 != rev || s.Error != nil {
		t.Fatalf("status after the updates: %+v at %d (%v); want it unwritten at %d", s, rev2, err, rev)
	}
	if _, err := q.Statuses.Update(ctx, "never-submitted", clearNotQueued); !errors.Is(err, ErrNotFound) {
		t.Fatalf("clearNotQueued of no status: %v; want ErrNotFound", err)
	}
}
