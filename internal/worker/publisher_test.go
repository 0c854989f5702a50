package worker_test

// What a NATS publisher (the `publisher` user may publish any payload with
// any headers on vodpipe.jobs.submit) may not do to other submitters' jobs
// and to the workers. Each test failed before 0.10.

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// A job submitted through ingest, in its retry back-off after a transient
// source failure (status queued, its message naked for ~1 s), gets a copy
// from a publisher: same id, the publisher's own source and metadata, no
// Nats-Msg-Id. The worker finds the recorded status and runs the recorded
// job, never the message's fields (until 0.10 it ran the message: the
// submitter's job completed with the publisher's bytes).
func TestPublisherCopyRunsTheRecordedJob(t *testing.T) {
	e := newEnv(t, true)
	e.cfg.SourcesConfig.AllowPrivate = true
	ctx := t.Context()
	victimBytes := []byte(strings.Repeat("the submitter's video ", 500))
	var served atomic.Int32
	var healthy atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if !healthy.Load() {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		http.ServeContent(w, r, "v.mp4", time.Unix(1700000000, 0), strings.NewReader(string(victimBytes)))
	}))
	t.Cleanup(srv.Close)
	evilSrc, evilBytes := e.source("evil.mp4", 3000)

	victim := &job.Job{ID: "clip-2026-0001", Source: srv.URL + "/v.mp4", SourceContext: "user=42"}
	e.startWorker("w1")
	e.submit(victim) // what ingest does: status, then the message
	testharness.WaitFor(t, 10*time.Second, "the victim's transient failure", func() bool {
		s, _, err := e.q.Statuses.Get(ctx, victim.ID)
		return err == nil && s.State == job.StateQueued && s.Error != nil && s.Error.Code == "transient"
	})
	healthy.Store(true)

	evil := &job.Job{V: 1, ID: victim.ID, Source: evilSrc, Metadata: json.RawMessage(`{"by":"publisher"}`)}
	if _, err := e.q.JetStream().Publish(ctx, queue.JobsSubject, must(evil.Encode())); err != nil {
		t.Fatal(err)
	}
	s := e.waitState(victim.ID, job.StateCompleted, 30*time.Second)
	if s.Job.Source != victim.Source {
		t.Fatalf("recorded job changed: %+v", s.Job)
	}
	file := e.file(s)
	rc, err := e.sim.OpenObject(file.Bucket, file.VideoKey)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := make([]byte, len(evilBytes)+1)
	n, _ := rc.Read(got)
	if n == len(evilBytes) && string(got[:n]) == string(evilBytes) {
		t.Fatalf("job %s (submitted through ingest with source %s) completed as FileId %s with the publisher's file %s",
			victim.ID, victim.Source, s.FileID, evilSrc)
	}
	e.storedEquals(s, victimBytes)
}

// A publisher publishes anything (here: not even JSON) with Nats-Msg-Id set
// to an id a submitter will use later. Ingest's submit of that id then
// stores a queued status and publishes the job, and JetStream answers
// "duplicate" (the id is spent for VODPIPE_JOBS_DUPLICATE_WINDOW, 1 h): the
// job is published again under an id of its own, and runs. Until 0.10 no
// message existed: it never ran, no dead letter, no job.failed.
func TestForgedMsgIDDoesNotDropALaterSubmit(t *testing.T) {
	e := newEnv(t, true)
	ctx := t.Context()
	e.startWorker("w1")
	const id = "clip-2026-0002"
	if _, err := e.q.JetStream().PublishMsg(ctx, &nats.Msg{Subject: queue.JobsSubject, Data: []byte("x"),
		Header: nats.Header{jetstream.MsgIDHeader: []string{id}}}); err != nil {
		t.Fatal(err)
	}
	src, _ := e.source("later.mp4", 1000)
	j := &job.Job{V: 1, ID: id, Source: src}
	j.Normalize()
	res := e.q.Jobs.Submit(ctx, []*job.Job{j})
	if res[0].Err != nil || res[0].Duplicate {
		t.Fatalf("submit: %+v", res[0])
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, _, err := e.q.Statuses.Get(ctx, id)
		if err == nil && s.State.Terminal() {
			return // ran (or failed visibly)
		}
		if time.Now().After(deadline) {
			ci, _ := must(e.q.Jobs.Consumer(ctx)).Info(ctx)
			t.Fatalf("job %s accepted by ingest (queued, not duplicate) never ran: status %+v; consumer pending %d ack-pending %d",
				id, s, ci.NumPending, ci.NumAckPending)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// An invalid message whose id is longer than NATS's 4 KiB control line (a
// 5,000-character id; the message is 5 KB, far under the 64 KiB limit) must
// be dead-lettered like any other invalid one, and the worker go on. Until
// 0.10 its dead letter's subject held the id, past the server's control
// line, which closed the worker's connection for good.
func TestOverlongIDIsDeadLetteredAndTheWorkerGoesOn(t *testing.T) {
	for name, msg := range map[string]*nats.Msg{
		"id in the body": {Subject: queue.JobsSubject,
			Data: []byte(`{"v":1,"id":"` + strings.Repeat("a", 5000) + `","source":"file:///x.mp4"}`)},
		"id in Nats-Msg-Id": {Subject: queue.JobsSubject, Data: []byte("not json"),
			Header: nats.Header{jetstream.MsgIDHeader: []string{strings.Repeat("b", 5000)}}},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, true)
			ctx := t.Context()
			e.startWorker("w1")
			if _, err := e.q.JetStream().PublishMsg(ctx, msg); err != nil {
				t.Fatal(err)
			}
			ok := &job.Job{ID: "after-1", Source: must2(e.source("after.mp4", 100))}
			e.submit(ok)
			deadline := time.Now().Add(15 * time.Second)
			for {
				dl, _ := e.q.DeadLetters.All(ctx)
				s, _, _ := e.q.Statuses.Get(ctx, ok.ID)
				if len(dl) == 1 && s != nil && s.State == job.StateCompleted {
					return
				}
				if time.Now().After(deadline) {
					log := e.logBuf.String()
					hint := ""
					if i := strings.Index(log, "maximum control line"); i >= 0 {
						hint = log[max(0, i-200):min(len(log), i+100)]
					}
					t.Fatalf("after the overlong id: %d dead letters (want 1), next job %+v; worker log near the error: %s",
						len(dl), s, hint)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// A publisher's invalid message naming a failed job's id is filed as
// that job's newest dead letter; ingest's POST /v1/jobs/{id}/retry runs
// from the newest that holds a run of the job (DeadLetters.LastOf). Until
// 0.10 it took the forged one and failed with 422.
func TestForgedDeadLetterDoesNotHideTheJobsOwn(t *testing.T) {
	e := newEnv(t, true)
	ctx := t.Context()
	e.startWorker("w1")
	victim := &job.Job{ID: "clip-2026-0003", Source: "file://" + e.root + "/missing.mp4"}
	e.submit(victim)
	e.waitState(victim.ID, job.StateFailed, 20*time.Second)
	// Its id in an invalid body (a Nats-Msg-Id of victim.ID would be
	// dropped as a duplicate for the window; after it, that works too).
	if _, err := e.q.JetStream().Publish(ctx, queue.JobsSubject, []byte(`{"v":1,"id":"`+victim.ID+`","source":"ftp://x"}`)); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 15*time.Second, "2 dead letters", func() bool {
		dl, err := e.q.DeadLetters.All(ctx)
		return err == nil && len(dl) == 2
	})
	last, err := e.q.DeadLetters.LastOf(ctx, victim.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.DeadLetters.Requeue(ctx, last.Seq); errors.Is(err, queue.ErrNotAJob) {
		t.Fatalf("retry of failed job %s runs from the publisher's forged dead letter (reason %q): %v",
			victim.ID, last.Reason, err)
	}
}
