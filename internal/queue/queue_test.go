package queue_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

func openQueue(t *testing.T, cfg queue.Config) (*queue.Queue, *testharness.NATS) {
	t.Helper()
	n := testharness.StartNATS(t)
	q, err := queue.Open(t.Context(), n.JetStream(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q, n
}

func newJob(id string) *job.Job {
	return &job.Job{V: 1, ID: id, Source: "file:///in/" + id + ".mp4"}
}

// pausedSoon submits a job (its message and its queued status) and asks
// for a pause that no worker has carried out.
func pausedSoon(t *testing.T, q *queue.Queue, id string) *job.Job {
	t.Helper()
	j := newJob(id)
	if _, err := q.Jobs.Publish(t.Context(), j); err != nil {
		t.Fatal(err)
	}
	if _, _, err := q.Statuses.Create(t.Context(), j); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Control.Pause(t.Context(), j.ID); err != nil {
		t.Fatal(err)
	}
	return j
}

// TestOpenWidensTheWorkersFilter: a queue made by an older vodpipe, whose
// worker consumer took only vodpipe.jobs.submit, is opened with the consumer
// taking all the stream holds. A message on another subject that the old
// consumer had passed is dead-lettered (widening does not move the consumer
// back); one after it reaches a worker.
func TestOpenWidensTheWorkersFilter(t *testing.T) {
	_, n := openQueue(t, queue.Config{})
	ctx := t.Context()
	js := n.JetStream(t)
	c, err := js.Consumer(ctx, queue.JobsStream, queue.WorkerConsumer)
	if err != nil {
		t.Fatal(err)
	}
	old := c.CachedInfo().Config
	old.FilterSubject = queue.JobsSubject
	if _, err := js.UpdateConsumer(ctx, queue.JobsStream, old); err != nil {
		t.Fatal(err)
	}
	publish := func(subj, id string) {
		t.Helper()
		if _, err := js.Publish(ctx, subj, []byte(`{"v":1,"id":"`+id+`","source":"file:///in/a.mp4"}`)); err != nil {
			t.Fatal(err)
		}
	}
	publish("vodpipe.jobs.sumbit", "passed-1")
	publish(queue.JobsSubject, "good-1")
	// The old consumer delivers good-1, passing passed-1 by.
	msgs, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range msgs.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	publish("vodpipe.jobs.sumbit", "later-1")
	q, err := queue.Open(ctx, js, queue.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dl, err := q.DeadLetters.All(ctx)
	if err != nil || len(dl) != 1 || dl[0].JobID != "passed-1" || !strings.Contains(dl[0].Reason, "vodpipe.jobs.sumbit") {
		t.Fatalf("dead letters = %+v, %v", dl, err)
	}
	wc, err := q.Jobs.Consumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err = wc.Fetch(2, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range msgs.Messages() {
		got = append(got, m.Subject()+" "+string(m.Data()))
	}
	if len(got) != 1 || !strings.Contains(got[0], "later-1") {
		t.Fatalf("the workers' consumer delivered %v, want only later-1", got)
	}
	if d, err := q.Depth(ctx); err != nil || d.Stranded != 0 {
		t.Fatalf("depth = %+v, %v", d, err)
	}
	// Opening again sweeps nothing more.
	if _, err := queue.Open(ctx, js, queue.Config{}); err != nil {
		t.Fatal(err)
	}
	if dl, _ := q.DeadLetters.All(ctx); len(dl) != 1 {
		t.Fatalf("dead letters after a second open = %+v", dl)
	}
}

func TestOpenIsIdempotentAndUpdatesConfig(t *testing.T) {
	q, n := openQueue(t, queue.Config{})
	js := n.JetStream(t)
	ctx := t.Context()
	// A consumer as an older vodpipe made it, with JetStream bounding deliveries.
	old := jetstream.ConsumerConfig{Durable: queue.WorkerConsumer, AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 10,
		FilterSubject: "vodpipe.jobs.>"}
	if _, err := js.UpdateConsumer(ctx, queue.JobsStream, old); err != nil {
		t.Fatal(err)
	}
	// Opening again with a changed config updates, never fails.
	q2, err := queue.Open(ctx, js, queue.Config{DuplicateWindow: 10 * time.Minute, AckWait: time.Minute, MaxDeliver: 5})
	if err != nil {
		t.Fatalf("reopen with changed config: %v", err)
	}
	s, err := js.Stream(ctx, queue.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	if info.Config.Duplicates != 10*time.Minute || info.Config.Retention != jetstream.WorkQueuePolicy || info.Config.Storage != jetstream.FileStorage {
		t.Fatalf("jobs stream config = %+v", info.Config)
	}
	c, err := q2.Jobs.Consumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ci, _ := c.Info(ctx)
	// The worker bounds deliveries (q2.Config().MaxDeliver), never the consumer.
	if ci.Config.AckWait != time.Minute || ci.Config.MaxDeliver != -1 || ci.Config.AckPolicy != jetstream.AckExplicitPolicy ||
		q2.Config().MaxDeliver != 5 {
		t.Fatalf("consumer config = %+v, queue config %+v", ci.Config, q2.Config())
	}
	_ = q
}

func TestPublishTwiceRunsOnce(t *testing.T) {
	q, n := openQueue(t, queue.Config{})
	ctx := t.Context()
	r1, err := q.Jobs.Publish(ctx, newJob("dup-1"))
	if err != nil || r1.Duplicate {
		t.Fatalf("first publish: %+v %v", r1, err)
	}
	r2, err := q.Jobs.Publish(ctx, newJob("dup-1"))
	if err != nil || !r2.Duplicate {
		t.Fatalf("second publish not a duplicate: %+v %v", r2, err)
	}
	batch := q.Jobs.PublishBatch(ctx, []*job.Job{newJob("b-1"), newJob("dup-1"), newJob("b-2")})
	if batch[0].Duplicate || !batch[1].Duplicate || batch[2].Duplicate || batch[0].Err != nil {
		t.Fatalf("batch = %+v", batch)
	}
	wantJobs(t, n, q, 3)
}

// wantJobs checks that the jobs stream holds want messages (exact once each
// publish is acknowledged) and waits for the workers' consumer to count
// them pending (that count follows the stream asynchronously).
func wantJobs(t *testing.T, n *testharness.NATS, q *queue.Queue, want uint64) {
	t.Helper()
	ctx := t.Context()
	st, err := n.JetStream(t).Stream(ctx, queue.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	si, err := st.Info(ctx)
	if err != nil || si.State.Msgs != want {
		t.Fatalf("jobs stream holds %+v (%v), want %d messages", si.State, err, want)
	}
	c, err := q.Jobs.Consumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 5*time.Second, fmt.Sprintf("the consumer to count %d pending", want), func() bool {
		ci, err := c.Info(ctx)
		return err == nil && ci.NumPending == want
	})
}

func TestStatusTransitionsAreEnforcedUnderConcurrency(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ctx := t.Context()
	j := newJob("st-1")
	if _, created, err := q.Statuses.Create(ctx, j); err != nil || !created {
		t.Fatal(created, err)
	}
	if s, created, err := q.Statuses.Create(ctx, j); err != nil || created || s.State != job.StateQueued {
		t.Fatalf("second create: %+v %v %v", s, created, err)
	}
	// Many concurrent progress updates: none is lost.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := q.Statuses.Update(ctx, j.ID, func(s *job.Status) error { s.BytesDone++; return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s, _, err := q.Statuses.Get(ctx, j.ID)
	if err != nil || s.BytesDone != 20 {
		t.Fatalf("bytesDone = %d, %v", s.BytesDone, err)
	}
	if _, err := q.Statuses.Transition(ctx, j.ID, job.StateRunning, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Statuses.Transition(ctx, j.ID, job.StateCompleted, func(s *job.Status) { s.FileID = "f1" }); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Statuses.Transition(ctx, j.ID, job.StateRunning, nil); !errors.Is(err, job.ErrBadTransition) {
		t.Fatalf("completed → running: %v", err)
	}
	if _, _, err := q.Statuses.Get(ctx, "missing"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

func TestPauseResumeCancelControl(t *testing.T) {
	q, n := openQueue(t, queue.Config{})
	ctx := t.Context()
	j := pausedSoon(t, q, "ctl-1")
	if c, _ := q.Control.Get(ctx, j.ID); c != job.ControlPause {
		t.Fatalf("control = %q", c)
	}
	// A worker would mark it paused and ack: simulate the state change,
	// after runs that count against the job's bound.
	if _, err := q.Statuses.Transition(ctx, j.ID, job.StatePaused, func(s *job.Status) { s.Runs = 4 }); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Control.Resume(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if c, _ := q.Control.Get(ctx, j.ID); c != job.ControlNone {
		t.Fatalf("control after resume = %q", c)
	}
	s, _, _ := q.Statuses.Get(ctx, j.ID)
	if s.State != job.StateQueued || s.Runs != 0 {
		t.Fatalf("after resume: state %s, runs %d (a resume starts the count again)", s.State, s.Runs)
	}
	// Resume re-enqueued the job despite the duplicate window: two messages wait.
	wantJobs(t, n, q, 2)
	if _, err := q.Control.Resume(ctx, j.ID); !errors.Is(err, queue.ErrConflict) {
		t.Fatalf("resume of a queued job: %v", err)
	}
	if _, err := q.Control.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if c, _ := q.Control.Get(ctx, j.ID); c != job.ControlCancel {
		t.Fatalf("control = %q", c)
	}
}

// An accepted cancel is never lost to a later pause or resume: both
// answer ErrConflict and the cancel stays, for a queued and a paused job.
func TestAcceptedCancelIsNeverOverwritten(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ctx := t.Context()
	for _, paused := range []bool{false, true} {
		j := newJob(fmt.Sprintf("cancel-first-%v", paused))
		if _, _, err := q.Statuses.Create(ctx, j); err != nil {
			t.Fatal(err)
		}
		if paused {
			if _, err := q.Statuses.Transition(ctx, j.ID, job.StatePaused, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := q.Control.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Control.Pause(ctx, j.ID); !paused && !errors.Is(err, queue.ErrConflict) {
			t.Fatalf("pause after cancel of a queued job: %v, want ErrConflict", err)
		}
		if _, err := q.Control.Resume(ctx, j.ID); !errors.Is(err, queue.ErrConflict) {
			t.Fatalf("resume after cancel (paused %v): %v, want ErrConflict", paused, err)
		}
		if c, _ := q.Control.Get(ctx, j.ID); c != job.ControlCancel {
			t.Fatalf("control after pause and resume (paused %v) = %q, want the cancel", paused, c)
		}
	}
}

func TestDeadLetterKeepsNonJSONMessages(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ctx := t.Context()
	if err := q.DeadLetters.Publish(ctx, job.DeadLetter{Code: "invalid_message", Reason: "not JSON"}, []byte("\xff\x00garbage")); err != nil {
		t.Fatal(err)
	}
	dl, err := q.DeadLetters.All(ctx)
	if err != nil || len(dl) != 1 || string(dl[0].RawMessage) != "\xff\x00garbage" || dl[0].JobID != "" {
		t.Fatalf("dead letters = %+v, %v", dl, err)
	}
}

func TestSubmitBatchRecordsPublishesAndDetectsDuplicates(t *testing.T) {
	q, n := openQueue(t, queue.Config{})
	ctx := t.Context()
	if _, err := q.Jobs.Publish(ctx, newJob("old-1")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := q.Statuses.Create(ctx, newJob("old-1")); err != nil {
		t.Fatal(err)
	}
	res := q.Jobs.Submit(ctx, []*job.Job{newJob("n-1"), newJob("old-1"), newJob("n-2"), newJob("n-1")})
	dups := []bool{false, true, false, true}
	for i, r := range res {
		if r.Err != nil || r.Duplicate != dups[i] || r.Status == nil || r.Status.Job.ID != r.Job.ID {
			t.Fatalf("result %d = %+v", i, r)
		}
	}
	wantJobs(t, n, q, 3) // old-1 once, n-1, n-2
	for _, id := range []string{"n-1", "n-2"} {
		if s, _, err := q.Statuses.Get(ctx, id); err != nil || s.State != job.StateQueued {
			t.Fatalf("status %s = %+v %v", id, s, err)
		}
	}
}

// A batch whose caller went away (an interrupted `vodpipe submit`: the
// request's context is cancelled) is carried through: every job it
// records gets its message, none is left queued with nothing to run it.
func TestSubmitOfAGoneCallerIsCarriedThrough(t *testing.T) {
	q, n := openQueue(t, queue.Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	jobs := []*job.Job{newJob("g-1"), newJob("g-2"), newJob("g-3")}
	for i, r := range q.Jobs.Submit(ctx, jobs) {
		if r.Err != nil || r.Duplicate {
			t.Fatalf("result %d = %+v", i, r)
		}
	}
	wantJobs(t, n, q, uint64(len(jobs)))
	for _, j := range jobs {
		if s, _, err := q.Statuses.Get(t.Context(), j.ID); err != nil || s.State != job.StateQueued {
			t.Fatalf("status %s = %+v %v", j.ID, s, err)
		}
	}
}

// TestResubmittedBatchCostsOneReadPerThousand: submitting again jobs that
// already have statuses (a library's submit run repeated, past the
// republish window) writes nothing: no index entry made and deleted again,
// no refused status create, no job; it costs one batched status read per
// thousand jobs, and each job comes back a duplicate with its status.
func TestResubmittedBatchCostsOneReadPerThousand(t *testing.T) {
	q, n := openQueue(t, queue.Config{RepublishWindow: time.Nanosecond})
	ctx := t.Context()
	var jobs []*job.Job
	for i := range 1500 {
		jobs = append(jobs, newJob(fmt.Sprintf("again-%04d", i)))
	}
	for _, r := range q.Jobs.Submit(ctx, jobs) {
		if r.Err != nil || r.Duplicate {
			t.Fatalf("first submit of %s: %+v", r.Job.ID, r)
		}
	}
	if _, err := q.Statuses.Transition(ctx, "again-0007", job.StateRunning, nil); err != nil {
		t.Fatal(err)
	}
	indexWrites := n.CountMessages(t, queue.IndexPrefix+".>")
	indexDeletes := n.CountMessages(t, "$JS.API.STREAM.MSG.DELETE."+queue.IndexStream)
	statusWrites := n.CountMessages(t, "$KV."+queue.StatusBucket+".>")
	batchReads := n.CountMessages(t, "$JS.API.DIRECT.GET.KV_"+queue.StatusBucket)
	jobsPublished := n.CountMessages(t, queue.JobsSubject)
	for _, r := range q.Jobs.Submit(ctx, jobs) {
		if r.Err != nil || !r.Duplicate || r.Status == nil || r.Status.Job.ID != r.Job.ID {
			t.Fatalf("second submit of %s: %+v", r.Job.ID, r)
		}
		if want := job.StateQueued; r.Job.ID == "again-0007" && r.Status.State != job.StateRunning || r.Job.ID != "again-0007" && r.Status.State != want {
			t.Fatalf("second submit of %s: status %s", r.Job.ID, r.Status.State)
		}
	}
	if w, d, s, j := indexWrites(), indexDeletes(), statusWrites(), jobsPublished(); w+d+s+j != 0 {
		t.Fatalf("the second submit wrote %d index entries, deleted %d, wrote %d statuses and published %d jobs; want none", w, d, s, j)
	}
	if r := batchReads(); r != 2 {
		t.Fatalf("the second submit read statuses in %d batches, want 2 (1500 jobs, a thousand a read)", r)
	}
}

// TestRetryMendsASubmitWhoseIngestDied: an ingest that died between a
// job's status and its message (the status alone stored) left the job
// queued with nothing to run it; the client's retry, within the republish
// window, publishes the stored job (once: JetStream drops a second copy),
// with or without a new process. A job past the window, or one delivered
// before (its message exists), is not published again.
func TestRetryMendsASubmitWhoseIngestDied(t *testing.T) {
	q, n := openQueue(t, queue.Config{})
	ctx := t.Context()
	// What a dead ingest left: statuses without messages.
	for _, id := range []string{"orphan", "old-orphan", "ran"} {
		if _, _, err := q.Statuses.Create(ctx, newJob(id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.Statuses.Update(ctx, "old-orphan", func(s *job.Status) error {
		s.CreatedAt = time.Now().Add(-6 * time.Minute) // past the 5-minute window
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A job a worker handed back: queued again, its run not counted, its delivery counted.
	if _, err := q.Statuses.Update(ctx, "ran", func(s *job.Status) error { s.Attempt = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	wantJobs(t, n, q, 0)
	// The retry reaches a new ingest process (a queue opened anew).
	q2, err := queue.Open(ctx, n.JetStream(t), queue.Config{})
	if err != nil {
		t.Fatal(err)
	}
	retry := newJob("orphan")
	retry.Source = "file:///in/someone-elses.mp4" // the stored job is published, not the retry's body
	for i, jobs := range [][]*job.Job{{retry, newJob("old-orphan"), newJob("ran")}, {newJob("orphan")}} {
		for _, r := range q2.Jobs.Submit(ctx, jobs) {
			if r.Err != nil || !r.Duplicate || r.Status == nil || r.Status.State != job.StateQueued {
				t.Fatalf("submit %d of %s: %+v", i+1, r.Job.ID, r)
			}
		}
		wantJobs(t, n, q2, 1) // orphan's, once
	}
	c, err := q2.Jobs.Consumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got, err := job.Decode(m.Data())
	if err != nil || got.ID != "orphan" || got.Source != newJob("orphan").Source {
		t.Fatalf("published %+v (%v), want the stored job orphan", got, err)
	}
	if !q2.Jobs.MayBeUnpublished(&job.Status{Job: *newJob("x"), State: job.StateQueued, CreatedAt: time.Now()}) ||
		q2.Jobs.MayBeUnpublished(&job.Status{Job: *newJob("x"), State: job.StateRunning, CreatedAt: time.Now()}) {
		t.Fatal("MayBeUnpublished: a fresh queued job may be unpublished, a running one may not")
	}
}

// TestTransitionFromAKnownRevision: a transition written against the
// revision its caller knows saves the read; when someone wrote in between
// (progress, an operator's pause) it reads again, keeps their write and
// checks the state machine on what is there now.
func TestTransitionFromAKnownRevision(t *testing.T) {
	q, n := openQueue(t, queue.Config{})
	ctx := t.Context()
	// Every read of a status is a direct get of its bucket: count them.
	reads := n.CountMessages(t, "$JS.API.DIRECT.GET.KV_"+queue.StatusBucket+".>")
	if _, _, err := q.Statuses.Create(ctx, newJob("k1")); err != nil {
		t.Fatal(err)
	}
	st, rev, err := q.Statuses.Get(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	before := reads()
	st, rev2, err := q.Statuses.TransitionFrom(ctx, "k1", queue.Known{Status: st, Rev: rev}, job.StateRunning, func(s *job.Status) { s.Worker = "w1" })
	if err != nil || st.State != job.StateRunning || rev2 <= rev {
		t.Fatalf("from the known revision: %+v rev %d→%d, %v", st, rev, rev2, err)
	}
	if got := reads() - before; got != 0 {
		t.Fatalf("a transition from the current revision read the status %d times, want none", got)
	}
	// A write in between: the known revision is stale.
	if _, err := q.Statuses.Update(ctx, "k1", func(s *job.Status) error { s.BytesDone = 42; return nil }); err != nil {
		t.Fatal(err)
	}
	before = reads()
	done, _, err := q.Statuses.TransitionFrom(ctx, "k1", queue.Known{Status: st, Rev: rev2}, job.StateCompleted, func(s *job.Status) { s.FileID = "f1" })
	if err != nil {
		t.Fatal(err)
	}
	if got := reads() - before; got != 1 {
		t.Fatalf("a transition from a stale revision read the status %d times, want once", got)
	}
	cur, _, err := q.Statuses.Get(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	if cur.State != job.StateCompleted || cur.FileID != "f1" || cur.BytesDone != 42 || cur.Worker != "w1" || done.BytesDone != 42 {
		t.Fatalf("after a stale revision: %+v", cur)
	}
	// The state machine is checked against the stored state, not the caller's copy.
	if _, _, err := q.Statuses.TransitionFrom(ctx, "k1", queue.Known{Status: st, Rev: rev2}, job.StateRunning, nil); !errors.Is(err, job.ErrBadTransition) {
		t.Fatalf("completed → running from a stale copy: %v, want ErrBadTransition", err)
	}
}

// TestCompleteRecordsStatusAndFile: the completion writes the completed
// status and the FileId → job mapping together; a FileId that cannot be a
// key still gets its status written and the mapping's failure reported.
func TestCompleteRecordsStatusAndFile(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ctx := t.Context()
	for _, id := range []string{"c1", "c2"} {
		if _, _, err := q.Statuses.Create(ctx, newJob(id)); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Statuses.Transition(ctx, id, job.StateRunning, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Statuses.Complete(ctx, "c1", queue.Known{}, "5285890781234", func(s *job.Status) { s.FileID = "5285890781234" }); err != nil {
		t.Fatal(err)
	}
	if st, _, err := q.Statuses.Get(ctx, "c1"); err != nil || st.State != job.StateCompleted || st.FileID != "5285890781234" {
		t.Fatalf("status = %+v, %v", st, err)
	}
	if id, err := q.Files.JobFor(ctx, "5285890781234"); err != nil || id != "c1" {
		t.Fatalf("file → job = %q, %v", id, err)
	}
	if err := q.Statuses.Complete(ctx, "c2", queue.Known{}, "not a key*", nil); err == nil {
		t.Fatal("a FileId that is no valid key must be reported")
	}
	if st, _, _ := q.Statuses.Get(ctx, "c2"); st.State != job.StateCompleted {
		t.Fatalf("status = %+v, want completed anyway", st)
	}
	if err := q.Statuses.Complete(ctx, "c1", queue.Known{}, "5285890781234", nil); !errors.Is(err, job.ErrBadTransition) {
		t.Fatalf("completing twice: %v, want ErrBadTransition", err)
	}
}

// TestDeadLetterOfAMessageAtTheSizeLimit: the job stream takes messages up
// to 1 MiB, so a dead letter must hold one that size (base64 in a JSON
// envelope would pass NATS's payload limit): it keeps the first part and
// says so. Dead-lettering the same message for the same reason again (a
// redelivery whose first failure record was cut short) adds no entry.
func TestDeadLetterOfAMessageAtTheSizeLimit(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ctx := t.Context()
	raw := []byte(strings.Repeat("\xff", 1<<20-64)) // not JSON: stored as bytes
	for attempt := 1; attempt <= 2; attempt++ {
		d := job.DeadLetter{JobID: "huge-1", Code: "invalid_message", Reason: "too big", Attempt: attempt, StreamSeq: 7}
		if err := q.DeadLetters.Publish(ctx, d, raw); err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
	}
	dl, err := q.DeadLetters.All(ctx)
	if err != nil || len(dl) != 1 {
		t.Fatalf("dead letters = %d, %v; want 1", len(dl), err)
	}
	if d := dl[0]; !d.Truncated || d.Size != len(raw) || len(d.RawMessage) == 0 || len(d.RawMessage) >= len(raw) ||
		string(d.RawMessage) != string(raw[:len(d.RawMessage)]) {
		t.Fatalf("dead letter: truncated %v, size %d, kept %d bytes", d.Truncated, d.Size, len(d.RawMessage))
	}
	// JSON under the size kept, which the envelope's escaping (< as \u003c)
	// would blow past the limit: kept whole, as bytes.
	angles := []byte(`{"v":1,"id":"angles-1","source":"` + strings.Repeat("<", 400<<10) + `"}`)
	if err := q.DeadLetters.Publish(ctx, job.DeadLetter{JobID: "angles-1", Code: "invalid_message", Reason: "bad", StreamSeq: 8}, angles); err != nil {
		t.Fatal(err)
	}
	if dl, err = q.DeadLetters.All(ctx); err != nil || len(dl) != 2 {
		t.Fatalf("dead letters = %d, %v; want 2", len(dl), err)
	}
	if d := dl[1]; d.Truncated || string(d.RawMessage) != string(angles) {
		t.Fatalf("angles dead letter: truncated %v, kept %d of %d bytes", d.Truncated, len(d.RawMessage), len(angles))
	}
}

func TestOpenRefusesANegativeMaxDeliver(t *testing.T) {
	n := testharness.StartNATS(t)
	_, err := queue.Open(t.Context(), n.JetStream(t), queue.Config{MaxDeliver: -1})
	if err == nil || !strings.Contains(err.Error(), "VODPIPE_JOBS_MAX_DELIVER") {
		t.Fatalf("open with MaxDeliver -1: %v", err)
	}
}

// TestUploadRecordIsFoundByMediaURL: a storage path recorded before a commit
// is found from the media URL VOD serves the file at, whatever its host or
// query; other paths and URLs without a path are not found.
func TestUploadRecordIsFoundByMediaURL(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ctx := t.Context()
	if err := q.Files.RecordUpload(ctx, "/1400000000/ab12cd/f0.mp4", "up-1"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"http://1400000000.vod2.myqcloud.com/1400000000/ab12cd/f0.mp4", "https://cdn.example/1400000000/ab12cd/f0.mp4?t=1"} {
		if id, err := q.Files.JobForMediaURL(ctx, u); err != nil || id != "up-1" {
			t.Errorf("%s: %q, %v", u, id, err)
		}
	}
	for _, u := range []string{"http://h/1400000000/ab12cd/f1.mp4", "http://h/", "", "::"} {
		if id, err := q.Files.JobForMediaURL(ctx, u); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("%q: %q, %v, want ErrNotFound", u, id, err)
		}
	}
}

// TestSigningJob: the signature service signs only for a job a worker may be
// processing: running, or unfinished with a cancel pending.
func TestSigningJob(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ctx := t.Context()
	for _, id := range []string{"queued", "running", "paused-cancel", "paused", "completed"} {
		if _, _, err := q.Statuses.Create(ctx, newJob(id)); err != nil {
			t.Fatal(err)
		}
	}
	move := func(id string, to ...job.State) {
		t.Helper()
		for _, s := range to {
			if _, err := q.Statuses.Transition(ctx, id, s, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	move("running", job.StateRunning)
	move("paused-cancel", job.StatePaused)
	move("paused", job.StatePaused)
	move("completed", job.StateRunning, job.StateCompleted)
	if err := q.Control.Set(ctx, "paused-cancel", job.ControlCancel); err != nil {
		t.Fatal(err)
	}
	for id, active := range map[string]bool{"running": true, "paused-cancel": true, "queued": false, "paused": false,
		"completed": false, "unknown": false} {
		j, err := q.Statuses.SigningJob(ctx, id)
		switch {
		case active && (err != nil || j.ID != id):
			t.Errorf("%s: job %v, err %v; want the job", id, j, err)
		case !active && !errors.Is(err, job.ErrNotActive):
			t.Errorf("%s: err = %v, want job.ErrNotActive", id, err)
		}
	}
}

// A resume of a job whose pause no worker has carried out yet withdraws the
// pause and is accepted: the job goes on, queued, without a second copy.
func TestResumeWithdrawsAPendingPause(t *testing.T) {
	q, n := openQueue(t, queue.Config{})
	ctx := t.Context()
	j := pausedSoon(t, q, "withdraw-1")
	s, err := q.Control.Resume(ctx, j.ID)
	if err != nil || s.State != job.StateQueued {
		t.Fatalf("resume with a pause pending = %+v, %v; want accepted, the job queued", s, err)
	}
	if c, _ := q.Control.Get(ctx, j.ID); c != job.ControlNone {
		t.Fatalf("control after the resume = %q, want none", c)
	}
	wantJobs(t, n, q, 1)
	// With nothing pending a resume of a queued job is still a conflict.
	if _, err := q.Control.Resume(ctx, j.ID); !errors.Is(err, queue.ErrConflict) {
		t.Fatalf("second resume: %v, want ErrConflict", err)
	}
	// A running job is never turned queued by a resume.
	if _, err := q.Statuses.Transition(ctx, j.ID, job.StateRunning, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Control.Resume(ctx, j.ID); !errors.Is(err, queue.ErrConflict) {
		t.Fatalf("resume of a running job: %v, want ErrConflict", err)
	}
	if st, _, _ := q.Statuses.Get(ctx, j.ID); st.State != job.StateRunning {
		t.Fatalf("state after resuming a running job = %s", st.State)
	}
}

// Every id shape job.Validate accepts is a key the stores take: an id the
// status bucket refused would make a job no worker can ever start.
func TestEveryValidIDIsAStorableKey(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	for _, id := range []string{"a", "A-1", "a.b", "a.-b._c", "0_x", "v1.2.3-rc_4", strings.Repeat("z", job.MaxIDLen)} {
		j := newJob(id)
		if err := j.Validate(); err != nil {
			t.Fatalf("%q refused: %v", id, err)
		}
		if r := q.Jobs.Submit(t.Context(), []*job.Job{j})[0]; r.Err != nil {
			t.Errorf("%q: valid, but submitting it failed: %v", id, r.Err)
		}
		if _, _, err := q.Statuses.Get(t.Context(), id); err != nil {
			t.Errorf("%q: status not readable: %v", id, err)
		}
	}
	for _, id := range []string{"x.", "a..b", ".a", "a.", "-a", "a b", "a*", "a>"} {
		if err := newJob(id).Validate(); err == nil {
			t.Errorf("%q accepted: the status bucket cannot hold it", id)
		}
	}
}

// fillJobs publishes filler jobs until the jobs stream refuses one.
func fillJobs(t *testing.T, q *queue.Queue) {
	t.Helper()
	for i := range 10000 {
		if _, err := q.Jobs.Publish(t.Context(), newJob(fmt.Sprintf("fill-%d", i))); err != nil {
			return
		}
	}
	t.Fatal("the jobs stream never filled up")
}

// makeRoom empties the jobs stream.
func makeRoom(t *testing.T, n *testharness.NATS) {
	t.Helper()
	s, err := n.JetStream(t).Stream(t.Context(), queue.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// A resume whose requeue JetStream refuses (its jobs stream full) leaves
// the job paused with its pause, not queued with no message: the resume
// fails, and once there is room again a second one runs it.
func TestResumeThatCannotRequeueLeavesTheJobPaused(t *testing.T) {
	q, n := openQueue(t, queue.Config{JobsMaxBytes: 8 << 10})
	ctx := t.Context()
	j := pausedSoon(t, q, "r-1")
	if _, err := q.Statuses.Transition(ctx, j.ID, job.StatePaused, nil); err != nil {
		t.Fatal(err)
	}
	fillJobs(t, q)
	if _, err := q.Control.Resume(ctx, j.ID); err == nil {
		t.Fatal("resume succeeded with the jobs stream full")
	}
	if s, _, err := q.Statuses.Get(ctx, j.ID); err != nil || s.State != job.StatePaused {
		t.Fatalf("after a failed resume the job is %+v (%v), want paused", s, err)
	}
	if c, err := q.Control.Get(ctx, j.ID); err != nil || c != job.ControlPause {
		t.Fatalf("after a failed resume the control is %q (%v), want the pause back", c, err)
	}
	makeRoom(t, n)
	if s, err := q.Control.Resume(ctx, j.ID); err != nil || s.State != job.StateQueued {
		t.Fatalf("resume with room: %+v %v", s, err)
	}
	wantJobs(t, n, q, 1)
}

// A dead letter whose requeue JetStream refuses stays a dead letter of a
// failed job, so requeueing it again works.
func TestDeadLetterRequeueThatCannotPublishLeavesTheJobFailed(t *testing.T) {
	q, n := openQueue(t, queue.Config{JobsMaxBytes: 8 << 10})
	ctx := t.Context()
	j := newJob("dl-1")
	if _, _, err := q.Statuses.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Statuses.Transition(ctx, j.ID, job.StateFailed, func(s *job.Status) {
		s.Error = &job.Error{Code: "source_missing", Message: "gone"}
	}); err != nil {
		t.Fatal(err)
	}
	b, _ := j.Encode()
	if err := q.DeadLetters.Publish(ctx, job.DeadLetter{JobID: j.ID, Code: "source_missing", Reason: "gone"}, b); err != nil {
		t.Fatal(err)
	}
	entries, _, err := q.DeadLetters.Page(ctx, 0, 10)
	if err != nil || len(entries) != 1 {
		t.Fatalf("dead letters: %v %v", entries, err)
	}
	fillJobs(t, q)
	if _, err := q.DeadLetters.Requeue(ctx, entries[0].Seq); err == nil {
		t.Fatal("requeue succeeded with the jobs stream full")
	}
	if s, _, err := q.Statuses.Get(ctx, j.ID); err != nil || s.State != job.StateFailed || s.Error == nil || s.Error.Code != "source_missing" {
		t.Fatalf("after a failed requeue the job is %+v (%v), want failed as before", s, err)
	}
	makeRoom(t, n)
	if s, err := q.DeadLetters.Requeue(ctx, entries[0].Seq); err != nil || s.State != job.StateQueued {
		t.Fatalf("requeue with room: %+v %v", s, err)
	}
	wantJobs(t, n, q, 1)
}

// A listing from the start reads past the entries by creation of jobs whose
// status expired until ingest's sweep deletes them: each call stays within
// a page's bounds (index and status reads, deletions) however many there
// are, deletes some of them as it goes, and following its cursor reaches
// the jobs that are still there.
func TestListingPastExpiredJobsCostsAPage(t *testing.T) {
	q, n := openQueue(t, queue.Config{StatusRetention: 2 * time.Second})
	ctx := t.Context()
	const expired = 2000 // more than a call reads (pageRounds × pageReadAhead)
	var jobs []*job.Job
	for i := range expired {
		jobs = append(jobs, newJob(fmt.Sprintf("old-%04d", i)))
	}
	for _, r := range q.Jobs.Submit(ctx, jobs) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < expired; i += 8 {
				if _, err := q.Statuses.Transition(ctx, jobs[i].ID, job.StateCompleted, nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	testharness.WaitFor(t, 30*time.Second, "the finished statuses to expire", func() bool {
		for _, id := range []string{jobs[0].ID, jobs[expired-1].ID} {
			if _, _, err := q.Statuses.Get(ctx, id); !errors.Is(err, queue.ErrNotFound) {
				return false
			}
		}
		return true
	})
	if r := q.Jobs.Submit(ctx, []*job.Job{newJob("live-1")})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	indexReads := n.CountMessages(t, "$JS.API.DIRECT.GET."+queue.IndexStream)
	statusReads := n.CountMessages(t, "$JS.API.DIRECT.GET.KV_"+queue.StatusBucket)
	deletes := n.CountMessages(t, "$JS.API.STREAM.MSG.DELETE."+queue.IndexStream)
	var got []string
	var calls int
	var ir, sr, dl int64
	for after := uint64(0); ; calls++ {
		if calls > expired {
			t.Fatal("the cursor never reached the end")
		}
		page, err := q.Statuses.Page(ctx, "", after, 1)
		if err != nil {
			t.Fatal(err)
		}
		r, s, d := indexReads(), statusReads(), deletes()
		if r-ir > 8 || s-sr > 8 || d-dl > 256 {
			t.Fatalf("call %d: %d index reads, %d status reads, %d deletions (want at most 8, 8 and 256)", calls, r-ir, s-sr, d-dl)
		}
		ir, sr, dl = r, s, d
		for _, st := range page.Statuses {
			got = append(got, st.Job.ID)
		}
		if page.Next == 0 {
			break
		}
		after = page.Next
	}
	if strings.Join(got, ",") != "live-1" {
		t.Fatalf("listed %v, want only live-1", got)
	}
	t.Logf("%d calls, %d entries of expired jobs deleted on the way", calls+1, dl)
	// Ingest's sweep deletes the rest: the listing is one call again.
	if swept, err := q.Statuses.SweepIndex(ctx); err != nil || swept != expired-int(dl) {
		t.Fatalf("the sweep deleted %d entries (%v), want the %d the listings left", swept, err, expired-int(dl))
	}
	page, err := q.Statuses.Page(ctx, "", 0, 1)
	if err != nil || len(page.Statuses) != 1 || page.Statuses[0].Job.ID != "live-1" || page.Next != 0 {
		t.Fatalf("listing after the sweep: %+v %v", page, err)
	}
}

// A cancel accepted as its job finished, which no worker carried out, is
// an earlier job's once the id is submitted again after the retention: the
// new job starts without it (a worker would cancel it at once, and its
// pause would be refused as "cancel pending"). A control the new job gets
// after it exists stays.
func TestAControlOfAnEarlierJobDoesNotReachTheNextOfItsID(t *testing.T) {
	q, _ := openQueue(t, queue.Config{StatusRetention: 2 * time.Second})
	ctx := t.Context()
	j := newJob("again")
	if r := q.Jobs.Submit(ctx, []*job.Job{j})[0]; r.Err != nil || r.Duplicate {
		t.Fatalf("submit: %+v", r)
	}
	completeWithALateCancel(t, q, j.ID)
	// Submitted again at once: the expiry's marker (kept a minute) is the
	// id's last entry, and the new status is created over it.
	if r := q.Jobs.Submit(ctx, []*job.Job{j})[0]; r.Err != nil || r.Duplicate || r.Status.State != job.StateQueued {
		t.Fatalf("submit after the expiry: %+v", r)
	}
	if s, _, err := q.Statuses.Get(ctx, j.ID); err != nil || s.State != job.StateQueued {
		t.Fatalf("the new job's status: %+v %v", s, err)
	}
	if c, err := q.Control.Get(ctx, j.ID); err != nil || c != job.ControlNone {
		t.Fatalf("the new job starts with control %q (%v)", c, err)
	}
	if _, err := q.Control.Pause(ctx, j.ID); err != nil {
		t.Fatalf("pause of the new job: %v", err)
	}
	// ForgetStale deletes only the revision Stale read.
	stale, err := q.Control.Stale(ctx, []string{j.ID, "no-such-job"})
	if err != nil || len(stale) != 1 || stale[j.ID] == 0 {
		t.Fatalf("Stale = %v, %v; want the pause's revision alone", stale, err)
	}
	if _, err := q.Control.Resume(ctx, j.ID); err != nil { // withdraws the pause
		t.Fatal(err)
	}
	if _, err := q.Control.Pause(ctx, j.ID); err != nil { // a newer one
		t.Fatal(err)
	}
	if gone, err := q.Control.ForgetStale(ctx, j.ID, stale[j.ID]); err != nil || gone {
		t.Fatalf("ForgetStale of an older revision: deleted %v, %v", gone, err)
	}
	if c, _ := q.Control.Get(ctx, j.ID); c != job.ControlPause {
		t.Fatalf("the newer pause is gone: control %q", c)
	}
}

// TestSweepKeepsTheControlBucketToLiveJobs: a worker reads every key of the
// control bucket at its start, so the bucket must not keep a marker of
// every pause and cancel ever cleared, nor the pause or cancel of every job
// that finished before a run met it. The sweep purges the deletion markers
// older than its age and deletes (a marker every follower applies, purged
// by the next sweep) the controls of jobs finished or gone, at most its
// bound of each a call; a live job's control stays. Until 0.10 the cancel
// of a job long gone stayed for good.
func TestSweepKeepsTheControlBucketToLiveJobs(t *testing.T) {
	q, n := openQueue(t, queue.Config{StatusRetention: time.Second})
	ctx := t.Context()
	live, cleared, cleared2, done := newJob("live"), newJob("cleared"), newJob("cleared2"), newJob("done")
	for _, r := range q.Jobs.Submit(ctx, []*job.Job{live, cleared, cleared2, done}) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	for _, id := range []string{live.ID, cleared.ID, cleared2.ID} {
		if _, err := q.Control.Pause(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{cleared.ID, cleared2.ID} {
		if _, err := q.Control.Resume(ctx, id); err != nil { // withdrawn: a marker
			t.Fatal(err)
		}
	}
	completeWithALateCancel(t, q, done.ID)
	bucket := func() map[string]string {
		entries, err := queue.ReadBucket(ctx, n.Connect(t), queue.ControlBucket)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, e := range entries {
			out[e.Key] = string(e.Value)
			if e.Deleted {
				out[e.Key] = "(deleted)"
			}
		}
		return out
	}
	want := map[string]string{live.ID: string(job.ControlPause), cleared.ID: "(deleted)", cleared2.ID: "(deleted)", done.ID: string(job.ControlCancel)}
	if got := bucket(); !maps.Equal(got, want) {
		t.Fatalf("bucket = %v, want %v", got, want)
	}
	if n, err := q.Control.Sweep(ctx, time.Hour, 100); err != nil || n != 0 {
		t.Fatalf("a sweep of entries younger than its age removed %d (%v), want none", n, err)
	}
	// In the stream's order: the live pause (kept), then a marker, which
	// is all a sweep that may remove one removes.
	if n, err := q.Control.Sweep(ctx, 0, 1); err != nil || n != 1 {
		t.Fatalf("a sweep that may remove one removed %d (%v)", n, err)
	}
	if n, err := q.Control.Sweep(ctx, 0, 100); err != nil || n != 2 {
		t.Fatalf("the next sweep removed %d (%v), want the other marker and the gone job's cancel", n, err)
	}
	want = map[string]string{live.ID: string(job.ControlPause), done.ID: "(deleted)"}
	if got := bucket(); !maps.Equal(got, want) {
		t.Fatalf("after the sweeps, bucket = %v, want %v", got, want)
	}
	if n, err := q.Control.Sweep(ctx, 0, 100); err != nil || n != 1 {
		t.Fatalf("the sweep after removed %d (%v), want the cancel's marker", n, err)
	}
	want = map[string]string{live.ID: string(job.ControlPause)}
	if got := bucket(); !maps.Equal(got, want) {
		t.Fatalf("at last, bucket = %v, want %v", got, want)
	}
	if n, err := q.Control.Sweep(ctx, 0, 100); err != nil || n != 0 {
		t.Fatalf("a sweep of a swept bucket removed %d (%v)", n, err)
	}
}

// TestSweepDeletesThePauseOfAJobThatFinished: a pause accepted while a job
// ran, which its run never met at a part boundary (a job of one request,
// its last part in flight), stayed in the control bucket for good once the
// job completed, and every worker read it at its start. The sweep deletes
// it once the job has been finished for its age, and a worker's view
// follows; a pause of a job that runs still stays.
func TestSweepDeletesThePauseOfAJobThatFinished(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ctx := t.Context()
	done, running := newJob("finished-while-paused"), newJob("running-paused")
	for _, r := range q.Jobs.Submit(ctx, []*job.Job{done, running}) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	for _, id := range []string{done.ID, running.ID} {
		if _, err := q.Statuses.Transition(ctx, id, job.StateRunning, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Control.Pause(ctx, id); err != nil { // accepted: the job runs
			t.Fatal(err)
		}
	}
	if err := q.Statuses.Complete(ctx, done.ID, queue.Known{}, "5285890781234567890", nil); err != nil {
		t.Fatal(err)
	}
	view := watchControls(t, q)
	if n, err := q.Control.Sweep(ctx, time.Hour, 100); err != nil || n != 0 {
		t.Fatalf("a sweep before the job was finished for its age removed %d (%v)", n, err)
	}
	if n, err := q.Control.Sweep(ctx, 0, 100); err != nil || n != 1 {
		t.Fatalf("sweep removed %d (%v), want the finished job's pause", n, err)
	}
	if c, _ := q.Control.Get(ctx, done.ID); c != job.ControlNone {
		t.Fatalf("the finished job's control = %q, want none", c)
	}
	if c, _ := q.Control.Get(ctx, running.ID); c != job.ControlPause {
		t.Fatalf("the running job's pause = %q, want it kept", c)
	}
	testharness.WaitFor(t, 10*time.Second, "the worker's view without the finished job's pause", func() bool {
		return view(done.ID) == job.ControlNone && view(running.ID) == job.ControlPause
	})
}

// watchControls follows the control bucket as a worker does (Control.Watch)
// and returns, once it has read the bucket, what its view holds of a job.
func watchControls(t *testing.T, q *queue.Queue) func(id string) job.Control {
	t.Helper()
	var mu sync.Mutex
	view := map[string]job.Control{}
	loaded := make(chan struct{})
	go func() {
		_ = q.Control.Watch(t.Context(), func(id string, c job.Control) {
			mu.Lock()
			defer mu.Unlock()
			view[id] = c
		}, func() { close(loaded) })
	}()
	<-loaded
	return func(id string) job.Control {
		mu.Lock()
		defer mu.Unlock()
		return view[id]
	}
}

// TestARefusedDeletionDoesNotHideACancel: a key-value write reaches the
// bucket's subscribers as it is published, stored or not. A resume's
// compare-and-set deletion of a pause that a cancel overtook is refused by
// JetStream, and so is a pause at the old revision; a worker following the
// control bucket must still hold the cancel: it asks the stream's leader
// before it lets a conditional write take a cancel out of its view.
func TestARefusedDeletionDoesNotHideACancel(t *testing.T) {
	q, n := openQueue(t, queue.Config{})
	ctx := t.Context()
	view := watchControls(t, q)
	kv, err := n.JetStream(t).KeyValue(ctx, queue.ControlBucket)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Put(ctx, "k", []byte(job.ControlPause))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Control.Set(ctx, "k", job.ControlCancel); err != nil { // the cancel overtakes the resume
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "k", jetstream.LastRevision(rev)); err == nil { // the resume, refused
		t.Fatal("the deletion at the pause's revision was stored")
	}
	if _, err := kv.Update(ctx, "k", []byte(job.ControlPause), rev); err == nil { // a pause, refused
		t.Fatal("the pause at the old revision was stored")
	}
	if err := q.Control.Set(ctx, "after", job.ControlPause); err != nil { // published after the deletion
		t.Fatal(err)
	}
	testharness.WaitFor(t, 10*time.Second, "the write after the refused deletion", func() bool {
		return view("after") == job.ControlPause
	})
	if c := view("k"); c != job.ControlCancel {
		t.Fatalf("view of k = %q, want the cancel the bucket holds", c)
	}
}

// completeWithALateCancel runs queued job id to completed with a cancel
// accepted as it finished (the worker past its last look), and waits for
// its status to expire (the queue's retention must be short): the cancel
// stays in the control bucket, an earlier job's.
func completeWithALateCancel(t *testing.T, q *queue.Queue, id string) {
	t.Helper()
	ctx := t.Context()
	if _, err := q.Statuses.Transition(ctx, id, job.StateRunning, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Control.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Statuses.Transition(ctx, id, job.StateCompleted, nil); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 10*time.Second, "the completed status to expire", func() bool {
		_, _, err := q.Statuses.Get(ctx, id)
		return errors.Is(err, queue.ErrNotFound)
	})
}

// TestSubSecondStatusRetentionIsRefused: JetStream refuses a per-message
// TTL under a second, so with a retention of 500ms no job could ever be
// finished (every write of completed, failed or canceled refused): Open
// and Attach refuse it, naming the variable; a second works.
func TestSubSecondStatusRetentionIsRefused(t *testing.T) {
	n := testharness.StartNATS(t)
	ctx := t.Context()
	js := n.JetStream(t)
	for name, open := range map[string]func(context.Context, jetstream.JetStream, queue.Config) (*queue.Queue, error){
		"Open": queue.Open, "Attach": queue.Attach} {
		_, err := open(ctx, js, queue.Config{StatusRetention: 500 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), "VODPIPE_STATUS_RETENTION") || !strings.Contains(err.Error(), "1s") {
			t.Fatalf("%s with a retention of 500ms: %v; want a refusal naming VODPIPE_STATUS_RETENTION and 1s", name, err)
		}
	}
	q, err := queue.Open(ctx, js, queue.Config{StatusRetention: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ids := submitN(t, q, "second", 1)
	if _, err := q.Statuses.Transition(ctx, ids[0], job.StateCanceled, nil); err != nil {
		t.Fatalf("a job cannot be finished with a retention of 1s: %v", err)
	}
}

// TestStatusRetentionOutlastsTheWindowsThatReadIt: the services refuse a
// retention shorter than the Idempotency-Key's window, the duplicate window
// or the ack wait (a retry or a late message would find no status and run a
// finished job again), naming the variable and the minimum; forever (-1s)
// is always allowed.
func TestStatusRetentionOutlastsTheWindowsThatReadIt(t *testing.T) {
	for _, c := range []struct {
		cfg     queue.Config
		minimum string // "": allowed
	}{
		{queue.Config{}, ""},
		{queue.Config{StatusRetention: -time.Second}, ""},
		{queue.Config{StatusRetention: 24 * time.Hour}, ""},
		{queue.Config{StatusRetention: 72 * time.Hour}, ""},
		{queue.Config{StatusRetention: 2 * time.Second}, "24h0m0s"},
		{queue.Config{StatusRetention: 23 * time.Hour}, "24h0m0s"},
		{queue.Config{StatusRetention: 24 * time.Hour, DuplicateWindow: 48 * time.Hour}, "48h0m0s"},
		{queue.Config{StatusRetention: 24 * time.Hour, AckWait: 30 * time.Hour}, "30h0m0s"},
	} {
		err := c.cfg.CheckStatusRetention()
		switch {
		case c.minimum == "" && err != nil:
			t.Errorf("retention %s refused: %v", c.cfg.StatusRetention, err)
		case c.minimum != "" && (err == nil || !strings.Contains(err.Error(), "VODPIPE_STATUS_RETENTION") || !strings.Contains(err.Error(), "at least "+c.minimum)):
			t.Errorf("retention %s with %+v: %v; want a refusal naming VODPIPE_STATUS_RETENTION and at least %s", c.cfg.StatusRetention, c.cfg, err, c.minimum)
		}
	}
}
