package queue_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// listAll pages through a listing and returns the ids in order.
func listAll(t *testing.T, q *queue.Queue, state job.State, limit int) []string {
	t.Helper()
	var ids []string
	var after uint64
	for range 10000 {
		p, err := q.Statuses.Page(t.Context(), state, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Statuses) > limit {
			t.Fatalf("page of %d for limit %d", len(p.Statuses), limit)
		}
		for _, s := range p.Statuses {
			if state != "" && s.State != state {
				t.Fatalf("listing of %s holds %s, %s", state, s.Job.ID, s.State)
			}
			ids = append(ids, s.Job.ID)
		}
		if p.Next == 0 {
			return ids
		}
		after = p.Next
	}
	t.Fatal("listing never ended")
	return nil
}

func submitN(t *testing.T, q *queue.Queue, prefix string, n int) []string {
	t.Helper()
	var jobs []*job.Job
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%04d", prefix, i)
		jobs = append(jobs, &job.Job{V: 1, ID: id, Source: "https://example.com/" + id + ".mp4"})
		ids = append(ids, id)
	}
	for _, r := range q.Jobs.Submit(t.Context(), jobs) {
		if r.Err != nil || r.Duplicate {
			t.Fatalf("submit %s: %v (duplicate %v)", r.Job.ID, r.Err, r.Duplicate)
		}
	}
	return ids
}

// TestPagesListEveryJobOnceInOrder: pages of every size list every job
// once, by creation, and a state filter lists exactly the jobs in that
// state, whatever pages they fall on.
func TestPagesListEveryJobOnceInOrder(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ctx := t.Context()
	ids := submitN(t, q, "page", 25)
	// Two more created one by one (the worker's path for jobs published on NATS).
	for _, id := range []string{"page-one-a", "page-one-b"} {
		if _, err := q.Statuses.Update(ctx, id, func(s *job.Status) error {
			s.Job, s.State = job.Job{V: 1, ID: id}, job.StateQueued
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	running := map[string]bool{}
	for _, id := range ids[3:9] {
		if _, err := q.Statuses.Transition(ctx, id, job.StateRunning, nil); err != nil {
			t.Fatal(err)
		}
		running[id] = true
	}
	for _, limit := range []int{1, 2, 7, 27, 100} {
		if got := listAll(t, q, "", limit); !slices.Equal(got, ids) {
			t.Fatalf("limit %d: listed %v, want %v", limit, got, ids)
		}
		gotRunning := listAll(t, q, job.StateRunning, limit)
		if len(gotRunning) != len(running) {
			t.Fatalf("limit %d: running %v, want %d", limit, gotRunning, len(running))
		}
		if got := listAll(t, q, job.StateQueued, limit); len(got) != len(ids)-len(running) {
			t.Fatalf("limit %d: queued %d, want %d", limit, len(got), len(ids)-len(running))
		}
		if got := listAll(t, q, job.StateFailed, limit); len(got) != 0 {
			t.Fatalf("failed: %v", got)
		}
	}
	counts, err := q.Index.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[""] != uint64(len(ids)) || counts[job.StateRunning] != uint64(len(running)) ||
		counts[job.StateQueued] != uint64(len(ids)-len(running)) {
		t.Fatalf("counts %v", counts)
	}
	// A duplicate submit leaves no entry behind.
	for _, r := range q.Jobs.Submit(ctx, []*job.Job{{V: 1, ID: ids[0], Source: "https://example.com/x.mp4"}}) {
		if !r.Duplicate {
			t.Fatalf("resubmit of %s not a duplicate", ids[0])
		}
	}
	if _, created, err := q.Statuses.Create(ctx, &job.Job{V: 1, ID: ids[1]}); err != nil || created {
		t.Fatalf("Create of an existing job: created %v, %v", created, err)
	}
	if after, _ := q.Index.Counts(ctx); after[""] != counts[""] || after[job.StateQueued] != counts[job.StateQueued] {
		t.Fatalf("counts after duplicates %v, before %v", after, counts)
	}
}

// TestListingDuringConcurrentTransitions: jobs moving through their states
// while a listing pages through them are each listed at least once by a
// listing of all jobs, and once the moves are over every state's listing
// and count is exact: the compare-and-set losers' entries are gone.
func TestListingDuringConcurrentTransitions(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ctx := t.Context()
	ids := submitN(t, q, "moving", 60)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i, id := range ids {
				if i%4 == w {
					continue // three movers per job, racing
				}
				for _, to := range []job.State{job.StateRunning, job.StatePaused, job.StateQueued, job.StateRunning, job.StateCompleted} {
					_, err := q.Statuses.Update(ctx, id, func(s *job.Status) error {
						if job.CheckTransition(s.State, to) != nil {
							return errSkip
						}
						s.State = to
						return nil
					})
					if err != nil && err != errSkip {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	seen := map[string]int{}
	for range 5 {
		for _, id := range listAll(t, q, "", 7) {
			seen[id]++
		}
	}
	wg.Wait()
	for _, id := range ids {
		if seen[id] < 5 {
			t.Fatalf("%s listed %d times in 5 listings of all jobs", id, seen[id])
		}
	}
	byState := map[job.State]int{}
	for _, id := range ids {
		s, _, err := q.Statuses.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		byState[s.State]++
	}
	for _, st := range []job.State{job.StateQueued, job.StateRunning, job.StatePaused, job.StateCompleted} {
		if got := listAll(t, q, st, 9); len(got) != byState[st] {
			t.Fatalf("%s listed %d, statuses say %d", st, len(got), byState[st])
		}
	}
	counts, err := q.Index.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for st, n := range byState {
		if counts[st] != uint64(n) {
			t.Fatalf("count of %s = %d, statuses say %d (counts %v)", st, counts[st], n, counts)
		}
	}
}

var errSkip = fmt.Errorf("skip")

// TestReindexListsStatusesOlderThanTheIndex: statuses written before the
// job index existed (as an older vodpipe wrote them, straight into the
// bucket) are found by Open and listed once Reindex has run.
func TestReindexListsStatusesOlderThanTheIndex(t *testing.T) {
	q, n := openQueue(t, queue.Config{})
	ctx := t.Context()
	js := n.JetStream(t)
	kv, err := js.KeyValue(ctx, queue.StatusBucket)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 12 {
		id := fmt.Sprintf("old-%02d", i)
		b, _ := job.MarshalStatus(&job.Status{Job: job.Job{V: 1, ID: id}, State: job.StateCompleted})
		if _, err := kv.Put(ctx, id, b); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if q.NeedsReindex() {
		t.Fatal("the first Open saw statuses that were written after it")
	}
	if got := listAll(t, q, "", 5); len(got) != 0 {
		t.Fatalf("listed before reindex: %v", got)
	}
	q2, err := queue.Open(ctx, js, queue.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !q2.NeedsReindex() {
		t.Fatal("Open did not see the statuses without index entries")
	}
	if n, err := q2.Statuses.Reindex(ctx); err != nil || n != len(ids) {
		t.Fatalf("Reindex = %d, %v", n, err)
	}
	if n, err := q2.Statuses.Reindex(ctx); err != nil || n != 0 {
		t.Fatalf("second Reindex = %d, %v; want nothing left to do", n, err)
	}
	if got := listAll(t, q2, job.StateCompleted, 5); !slices.Equal(got, ids) {
		t.Fatalf("completed after reindex %v, want %v", got, ids)
	}
	q3, err := queue.Open(ctx, js, queue.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if q3.NeedsReindex() {
		t.Fatal("Open after the reindex still wants one")
	}
}

// TestStrayIndexEntriesAreSkippedAndDeleted: an entry that a status moved
// past (a crash between the status write and the delete leaves one) is not
// listed, and the listing that meets it deletes it.
func TestStrayIndexEntriesAreSkippedAndDeleted(t *testing.T) {
	q, n := openQueue(t, queue.Config{})
	ctx := t.Context()
	ids := submitN(t, q, "stray", 3)
	js := n.JetStream(t)
	// A stray "running" entry for stray-0, older than its status's next entry.
	if _, err := js.Publish(ctx, queue.IndexPrefix+".state.running", []byte(ids[0])); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Statuses.Transition(ctx, ids[0], job.StateRunning, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Statuses.Transition(ctx, ids[0], job.StateCompleted, nil); err != nil {
		t.Fatal(err)
	}
	// An entry of a job that has no status at all (its creation crashed).
	if _, err := js.Publish(ctx, queue.IndexPrefix+".state.running", []byte("no-such-job")); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, q, job.StateRunning, 10); len(got) != 0 {
		t.Fatalf("running lists %v", got)
	}
	s, err := js.Stream(ctx, queue.IndexStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(queue.IndexPrefix+".state.running"))
	if err != nil {
		t.Fatal(err)
	}
	// The stray older than the status's entry is gone; the orphan stays
	// (its status may be on its way) but is never listed.
	if got := info.State.Subjects[queue.IndexPrefix+".state.running"]; got != 1 {
		t.Fatalf("running entries left: %d, want the orphan only", got)
	}
	if got := listAll(t, q, job.StateCompleted, 10); !slices.Equal(got, ids[:1]) {
		t.Fatalf("completed lists %v", got)
	}
}

// TestPagesOfTheLargestSize: a page of 1,000 (the API's largest) arrives
// whole: every message of a batched read is kept, none dropped as a slow
// consumer's, and so is the batch's end marker.
func TestPagesOfTheLargestSize(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ids := submitN(t, q, "big", 2100)
	p, err := q.Statuses.Page(t.Context(), "", 0, 1000)
	if err != nil || len(p.Statuses) != 1000 || p.Next == 0 {
		t.Fatalf("first page: %d statuses, next %d, %v", len(p.Statuses), p.Next, err)
	}
	if got := listAll(t, q, job.StateQueued, 1000); !slices.Equal(got, ids) {
		t.Fatalf("queued listing of %d, want %d", len(got), len(ids))
	}
}

// TestFinishedStatusesExpireWithTheirIndexEntries: a finished job's status
// expires after the retention, the listings stop showing it, and the sweep
// deletes its entry by creation; unfinished jobs stay, however old.
func TestFinishedStatusesExpireWithTheirIndexEntries(t *testing.T) {
	q, _ := openQueue(t, queue.Config{StatusRetention: 2 * time.Second})
	ctx := t.Context()
	ids := submitN(t, q, "ret", 3)
	for _, id := range ids[:2] {
		if _, err := q.Statuses.Transition(ctx, id, job.StateRunning, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.Statuses.Transition(ctx, ids[0], job.StateCompleted, nil); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 10*time.Second, "the completed status to expire", func() bool {
		_, _, err := q.Statuses.Get(ctx, ids[0])
		return errors.Is(err, queue.ErrNotFound)
	})
	// (A listing that meets the entry deletes it too: the sweep goes first
	// here, TestListingPastExpiredJobsCostsAPage has the listing's.)
	n, err := q.Statuses.SweepIndex(ctx)
	if err != nil || n != 1 {
		t.Fatalf("SweepIndex = %d, %v; want the expired job's entry", n, err)
	}
	if counts, _ := q.Index.Counts(ctx); counts[""] != 2 {
		t.Fatalf("counts after the sweep: %v", counts)
	}
	if got := listAll(t, q, "", 10); !slices.Equal(got, ids[1:]) {
		t.Fatalf("listed %v after the expiry, want %v", got, ids[1:])
	}
	if got := listAll(t, q, job.StateCompleted, 10); len(got) != 0 {
		t.Fatalf("completed lists %v", got)
	}
	// The running and queued jobs are older than the retention and stay.
	for _, id := range ids[1:] {
		if _, _, err := q.Statuses.Get(ctx, id); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	// The id is free again: a new job.
	if _, created, err := q.Statuses.Create(ctx, &job.Job{V: 1, ID: ids[0]}); err != nil || !created {
		t.Fatalf("Create after expiry: created %v, %v", created, err)
	}
}

// TestOpenUpgradesALayoutWithoutTTLs: a status bucket and an index made
// before retention (no per-key TTLs allowed) are updated in place by Open.
func TestOpenUpgradesALayoutWithoutTTLs(t *testing.T) {
	n := testharness.StartNATS(t)
	ctx := t.Context()
	js := n.JetStream(t)
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: queue.StatusBucket, History: 1,
		Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: queue.IndexStream, Subjects: []string{queue.IndexPrefix + ".>"},
		Storage: jetstream.FileStorage, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(ctx, js, queue.Config{StatusRetention: time.Hour})
	if err != nil {
		t.Fatalf("Open over an older layout: %v", err)
	}
	ids := submitN(t, q, "upgraded", 1)
	if _, err := q.Statuses.Transition(ctx, ids[0], job.StateCanceled, nil); err != nil {
		t.Fatalf("a finished status with a TTL on the upgraded bucket: %v", err)
	}
}

// TestCountsDropCrashStraysAfterTheSweep: entries a crash left (a worker
// that died between its "running" entry and the status, an ingest between
// a job's entries and its status's creation) inflate the per-state counts
// until SweepStrays, which deletes them once older than its grace, keeps
// every entry a status points at and entries younger than the grace, and
// does so within its budget a call, going on where it stopped.
func TestCountsDropCrashStraysAfterTheSweep(t *testing.T) {
	q, n := openQueue(t, queue.Config{})
	ctx := t.Context()
	ids := submitN(t, q, "sweep", 6)
	js := n.JetStream(t)
	stray := func(subject, id string) {
		t.Helper()
		if _, err := js.Publish(ctx, queue.IndexPrefix+subject, []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	// A removal lost before sweep-0001's transition: its status moves past it.
	stray(".state.running", ids[1])
	for _, id := range ids[:3] {
		if _, err := q.Statuses.Transition(ctx, id, job.StateRunning, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A worker that died between the entry and the status: sweep-0004 is
	// queued, its "running" entry points nowhere; a lost removal: a second
	// "running" entry of sweep-0000; an ingest that died before the status.
	stray(".state.running", ids[4])
	stray(".state.running", ids[0])
	stray(".created", "never-created")
	stray(".state.queued", "never-created")
	counts := func() map[job.State]uint64 {
		t.Helper()
		c, err := q.Index.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := counts(); c[job.StateRunning] != 6 || c[""] != 7 || c[job.StateQueued] != 4 {
		t.Fatalf("counts with the strays = %v, want running 6, queued 4, all 7", c)
	}
	// Within the grace nothing goes: a status write may be on its way.
	var cur queue.StrayCursor
	if got, err := q.Statuses.SweepStrays(ctx, &cur, 1000, time.Hour); err != nil || got != 0 {
		t.Fatalf("sweep within the grace deleted %d (%v), want 0", got, err)
	}
	// A budget of one entry a subject: the sweep takes several calls, each
	// going on from the last.
	deleted := 0
	for range 20 {
		got, err := q.Statuses.SweepStrays(ctx, &cur, 7, 0)
		if err != nil {
			t.Fatal(err)
		}
		deleted += got
		if c := counts(); c[job.StateRunning] == 3 && c[""] == 6 && c[job.StateQueued] == 3 {
			break
		}
	}
	if c := counts(); c[job.StateRunning] != 3 || c[""] != 6 || c[job.StateQueued] != 3 || deleted != 5 {
		t.Fatalf("counts after the sweeps = %v (%d deleted), want running 3, queued 3, all 6 (5 deleted)", c, deleted)
	}
	if got := listAll(t, q, job.StateRunning, 10); !slices.Equal(got, ids[:3]) {
		t.Fatalf("running lists %v, want %v", got, ids[:3])
	}
	if got := listAll(t, q, "", 10); !slices.Equal(got, ids) {
		t.Fatalf("all lists %v, want %v", got, ids)
	}
}

// bigJob is a valid job whose stored status is about 100 KB: json.Marshal
// escapes '<', '>' and '&' as \u003c (six bytes for one), in strings and
// in json.RawMessage metadata alike, so fields within the job's limits
// (4096-character URLs, 8 KiB of metadata, 1000 runes of sessionContext)
// grow about sixfold in the status bucket.
func bigJob(id string) *job.Job {
	src := "https://example.com/" + id + ".mp4?q="
	cov := "https://example.com/" + id + ".jpg?q="
	meta := `{"a":"` + strings.Repeat("<", job.MaxMetadataSize-8) + `"}`
	return &job.Job{
		V: 1, ID: id,
		Source:         src + strings.Repeat("&", job.MaxSourceLen-len(src)),
		Cover:          cov + strings.Repeat("&", job.MaxSourceLen-len(cov)),
		Metadata:       []byte(meta),
		SessionContext: strings.Repeat("<", job.MaxSessionContextLen),
		SourceContext:  strings.Repeat("<", job.MaxSourceContextLen),
	}
}

// submitBig submits n big jobs (bigJob): 700 of them are 70 MiB of
// statuses, more than the server's max_pending (64 MiB) that bounds one
// batched read's answer.
func submitBig(t *testing.T, q *queue.Queue, n int) []string {
	t.Helper()
	var ids []string
	for start := 0; start < n; start += 100 {
		var jobs []*job.Job
		for i := start; i < min(start+100, n); i++ {
			j := bigJob(fmt.Sprintf("big-%04d", i))
			if err := j.Validate(); err != nil {
				t.Fatalf("the job is not valid: %v", err)
			}
			jobs = append(jobs, j)
			ids = append(ids, j.ID)
		}
		for _, r := range q.Jobs.Submit(t.Context(), jobs) {
			if r.Err != nil || r.Duplicate {
				t.Fatalf("submit %s: %v (duplicate %v)", r.Job.ID, r.Err, r.Duplicate)
			}
		}
	}
	b, _ := job.MarshalStatus(&job.Status{Job: *bigJob("big-0000"), State: job.StateQueued})
	t.Logf("a status is %d bytes; %d of them %d MiB", len(b), n, n*len(b)>>20)
	return ids
}

// TestPagesOfLargeStatusesListEveryJob: a page of the API's largest size
// (1000) reads its statuses with one multi-subject direct get, which the
// server answers only up to its max_pending bytes, ending the batch with
// the count it held back. Those statuses are asked for again: a page must
// not take them for missing and leave their jobs out of the listing.
func TestPagesOfLargeStatusesListEveryJob(t *testing.T) {
	q, _ := openQueue(t, queue.Config{})
	ids := submitBig(t, q, 700)
	if got := listAll(t, q, "", 1000); !slices.Equal(got, ids) {
		t.Fatalf("listing of all jobs with limit 1000 lists %d of %d jobs", len(got), len(ids))
	}
	if got := listAll(t, q, job.StateQueued, 1000); !slices.Equal(got, ids) {
		t.Fatalf("listing of queued jobs with limit 1000 lists %d of %d jobs", len(got), len(ids))
	}
}

// TestPagesOfLargeStatusesKeepOldLiveJobs: a status held back from a
// page's batched read is no expired job's, however old its entry: the page
// must not delete the entries by creation of live jobs older than the
// retention (they would be gone from every later listing and the count).
func TestPagesOfLargeStatusesKeepOldLiveJobs(t *testing.T) {
	const retention = 2 * time.Second
	q, _ := openQueue(t, queue.Config{StatusRetention: retention})
	ctx := t.Context()
	ids := submitBig(t, q, 700)
	// Every entry older than the retention; the jobs are queued, kept.
	time.Sleep(retention + 500*time.Millisecond)
	if _, err := q.Statuses.Page(ctx, "", 0, 1000); err != nil {
		t.Fatal(err)
	}
	counts, err := q.Index.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[""] != uint64(len(ids)) {
		t.Fatalf("after one listing, %d entries by creation left for %d queued jobs", counts[""], len(ids))
	}
	if n, err := q.Statuses.SweepIndex(ctx); err != nil || n != 0 {
		t.Fatalf("SweepIndex = %d, %v; want nothing deleted (every job is queued)", n, err)
	}
	if got := listAll(t, q, "", 100); !slices.Equal(got, ids) {
		t.Fatalf("listing of all jobs in pages of 100 lists %d of %d", len(got), len(ids))
	}
}

// TestOpenAfterStatusesExpiredWantsNoReindex: a finished status that
// expired leaves a marker in the bucket for a minute (LimitMarkerTTL),
// which the bucket's message count includes, while its entry by creation
// goes at the next SweepIndex. An ingest started in that minute must not
// take the markers for statuses older than the index and read the whole
// bucket again.
func TestOpenAfterStatusesExpiredWantsNoReindex(t *testing.T) {
	q, n := openQueue(t, queue.Config{StatusRetention: 2 * time.Second})
	ctx := t.Context()
	ids := submitN(t, q, "exp", 3)
	for _, id := range ids {
		if _, err := q.Statuses.Transition(ctx, id, job.StateCanceled, nil); err != nil {
			t.Fatal(err)
		}
	}
	testharness.WaitFor(t, 20*time.Second, "the finished statuses to expire", func() bool {
		for _, id := range ids {
			if _, _, err := q.Statuses.Get(ctx, id); !errors.Is(err, queue.ErrNotFound) {
				return false
			}
		}
		return true
	})
	if swept, err := q.Statuses.SweepIndex(ctx); err != nil || swept != len(ids) {
		t.Fatalf("SweepIndex = %d, %v", swept, err)
	}
	// Live statuses after the markers: Open reads past the markers to them.
	kept := submitN(t, q, "kept", 2)
	q2, err := queue.Open(ctx, n.JetStream(t), queue.Config{StatusRetention: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if q2.NeedsReindex() {
		t.Fatal("Open wants a reindex of the whole status bucket: the expiry markers count as statuses")
	}
	if got := listAll(t, q2, "", 10); !slices.Equal(got, kept) {
		t.Fatalf("listed %v, want %v", got, kept)
	}
}

// TestFinishedStatusWrittenAgainStaysInItsStateListing: a finished job's
// state entry expires a margin after its status, but every later write of
// the status (an update that leaves the state) gives the status a fresh
// TTL of the retention: the write gives it a fresh state entry too, or the
// job drops out of its state's listing and count while GET still shows it.
// (The margin, a minute, is a second here, and the status is written again
// every 0.5 s to stand for one late write under the default 720h.)
func TestFinishedStatusWrittenAgainStaysInItsStateListing(t *testing.T) {
	const retention, margin = 2 * time.Second, time.Second
	q, _ := openQueue(t, queue.Config{StatusRetention: retention})
	queue.SetEntryTTLMargin(q, margin)
	ctx := t.Context()
	ids := submitN(t, q, "rewrite", 1)
	if _, err := q.Statuses.Transition(ctx, ids[0], job.StateCompleted, nil); err != nil {
		t.Fatal(err)
	}
	// Past the TTL of the entry written as the job completed.
	for end := time.Now().Add(retention + margin + 1500*time.Millisecond); time.Now().Before(end); {
		if _, err := q.Statuses.Update(ctx, ids[0], func(*job.Status) error { return nil }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	s, _, err := q.Statuses.Get(ctx, ids[0])
	if err != nil || s.State != job.StateCompleted {
		t.Fatalf("status: %v %v", s, err)
	}
	counts, err := q.Index.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := listAll(t, q, job.StateCompleted, 10)
	if !slices.Equal(got, ids) || counts[job.StateCompleted] != 1 {
		t.Fatalf("a completed status is stored, but the completed listing holds %v and the count is %d", got, counts[job.StateCompleted])
	}
}
