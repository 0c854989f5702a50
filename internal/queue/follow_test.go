package queue

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// followView follows bucket into a map of key → value ("" once deleted),
// with opts, and returns a reader of it once the first read is applied.
func followView(t *testing.T, n *testharness.NATS, bucket string, opts ...FollowOption) func(key string) (string, bool) {
	t.Helper()
	return followViewWithin(t, n, 10*time.Second, bucket, opts...)
}

// followViewWithin is followView with the first read given up to within.
func followViewWithin(t *testing.T, n *testharness.NATS, within time.Duration, bucket string, opts ...FollowOption) func(key string) (string, bool) {
	t.Helper()
	var mu sync.Mutex
	view := map[string]string{}
	loaded := make(chan struct{})
	nc := n.Connect(t)
	go func() {
		_ = Follow(t.Context(), nc, bucket, func(c KVChange) {
			mu.Lock()
			defer mu.Unlock()
			view[c.Key] = string(c.Value)
			if c.Deleted {
				view[c.Key] = ""
			}
		}, func() { close(loaded) }, opts...)
	}()
	select {
	case <-loaded:
	case <-time.After(within):
		t.Fatal("the first read of the bucket never ended")
	}
	return func(key string) (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		v, ok := view[key]
		return v, ok
	}
}

// TestARefusedForgetStaleDoesNotHideANewPause: a resubmitted job's
// ForgetStale (a compare-and-set deletion of the earlier job's control)
// that a new pause of the job overtook is refused by JetStream, but it
// reaches the bucket's subscribers as published all the same. Workers
// follow the control bucket's RePublish, which carries stored writes only:
// the pause stays in their view, also once the refused deletion, whose
// republish never comes, has been settled with the stream's leader.
func TestARefusedForgetStaleDoesNotHideANewPause(t *testing.T) {
	n, js, _ := openInternal(t)
	ctx := t.Context()
	kv, err := js.KeyValue(ctx, ControlBucket)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := kv.Put(ctx, "k", []byte(job.ControlPause)) // the earlier job's pause, read by Stale
	if err != nil {
		t.Fatal(err)
	}
	settled := make(chan bool, 4)
	view := followView(t, n, ControlBucket, FollowRepublished(ControlChanges+"."),
		func(o *followOptions) {
			o.wait, o.recheck = 100*time.Millisecond, 200*time.Millisecond
			o.settled = func(key string, applied bool) {
				if key == "k" {
					settled <- applied
				}
			}
		})
	if _, err := kv.Put(ctx, "k", []byte(job.ControlPause)); err != nil { // the new job's pause
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "k", jetstream.LastRevision(stale)); err == nil { // ForgetStale, too late
		t.Fatal("the deletion at the earlier cancel's revision was stored")
	}
	if _, err := kv.Put(ctx, "after", []byte(job.ControlPause)); err != nil { // published after it
		t.Fatal(err)
	}
	waitInView(t, view, "after", string(job.ControlPause))
	if v, _ := view("k"); v != string(job.ControlPause) {
		t.Fatalf("view of k = %q, want the pause the bucket holds", v)
	}
	select {
	case applied := <-settled:
		if applied {
			t.Fatal("settling the refused deletion with the leader changed the view")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the refused deletion was never settled with the leader")
	}
	if v, _ := view("k"); v != string(job.ControlPause) {
		t.Fatalf("after the settle, view of k = %q, want the pause", v)
	}
}

// setRePublish updates bucket's stream to republish onto rp (nil: none),
// as ingest 0.10 (or 0.9, which makes none) sets it up.
func setRePublish(t *testing.T, js jetstream.JetStream, bucket string, rp *jetstream.RePublish) {
	t.Helper()
	st, err := js.Stream(t.Context(), "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.RePublish = rp
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
}

// settles records the keys a follower settled with the leader (the hook
// runs before the change applies) and whether each changed the view.
type settles struct {
	mu   sync.Mutex
	keys map[string][]bool
}

func (s *settles) option(wait time.Duration) FollowOption {
	return func(o *followOptions) {
		o.wait, o.recheck = wait, 2*wait
		o.settled = func(key string, applied bool) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.keys == nil {
				s.keys = map[string][]bool{}
			}
			s.keys[key] = append(s.keys[key], applied)
		}
	}
}

func (s *settles) of(key string) []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.keys[key]...)
}

// TestFollowOfABucketWithoutRePublishAppliesWritesAsPublished: a bucket an
// ingest of 0.9 set up has no RePublish. A follower that expects one reads
// the bucket's configuration as it starts, and applies the writes as
// published at once, asking the leader about none.
func TestFollowOfABucketWithoutRePublishAppliesWritesAsPublished(t *testing.T) {
	n, js, _ := openInternal(t)
	ctx := t.Context()
	const bucket = "vodpipe_old_control"
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	var s settles
	view := followView(t, n, bucket, FollowRepublished("vodpipe.old.control."), s.option(time.Hour))
	if _, err := kv.Put(ctx, "k1", []byte(job.ControlPause)); err != nil {
		t.Fatal(err)
	}
	// With o.wait an hour, only a write applied as published shows.
	waitInView(t, view, "k1", string(job.ControlPause))
}

// followControls follows the control bucket through its RePublish, the
// leader asked after 100 ms, and returns the bucket, the settles and the view.
func followControls(t *testing.T) (jetstream.JetStream, jetstream.KeyValue, *settles, func(string) (string, bool)) {
	t.Helper()
	n, js, _ := openInternal(t)
	kv, err := js.KeyValue(t.Context(), ControlBucket)
	if err != nil {
		t.Fatal(err)
	}
	s := &settles{}
	return js, kv, s, followView(t, n, ControlBucket, FollowRepublished(ControlChanges+"."), s.option(100*time.Millisecond))
}

// waitInView waits until view holds value for key.
func waitInView(t *testing.T, view func(string) (string, bool), key, value string) {
	t.Helper()
	testharness.WaitFor(t, 10*time.Second, key+" = "+value+" in the view", func() bool {
		v, _ := view(key)
		return v == value
	})
}

// TestFollowLearnsThatTheRePublishWasRemoved: an ingest of 0.9 started
// while followers run sets the bucket up again without its RePublish. The
// first write whose republish does not come is asked of the leader, which
// has it stored: the follower applies it, reads the configuration, and
// applies the writes after it as published.
func TestFollowLearnsThatTheRePublishWasRemoved(t *testing.T) {
	js, kv, s, view := followControls(t)
	ctx := t.Context()
	setRePublish(t, js, ControlBucket, nil)
	if _, err := kv.Put(ctx, "k1", []byte(job.ControlPause)); err != nil {
		t.Fatal(err)
	}
	waitInView(t, view, "k1", string(job.ControlPause))
	if got := s.of("k1"); len(got) != 1 || !got[0] {
		t.Fatalf("k1 settled %v, want once, applied (its republish never came)", got)
	}
	if _, err := kv.Put(ctx, "k2", []byte(job.ControlCancel)); err != nil {
		t.Fatal(err)
	}
	waitInView(t, view, "k2", string(job.ControlCancel))
	if got := s.of("k2"); len(got) != 0 {
		t.Fatalf("k2 settled %v, want applied as published", got)
	}
}

// TestFollowMendsALostRepublish: a write the leader stored whose republish
// never came (the RePublish briefly off, or a leader change between the
// two) is asked of the leader and applied; the bucket still republishes,
// so the follower stays on the republishes, and a refused write after it
// changes nothing.
func TestFollowMendsALostRepublish(t *testing.T) {
	js, kv, s, view := followControls(t)
	ctx := t.Context()
	rp := &jetstream.RePublish{Source: "$KV." + ControlBucket + ".>", Destination: ControlChanges + ".>"}
	setRePublish(t, js, ControlBucket, nil)
	rev, err := kv.Put(ctx, "k", []byte(job.ControlPause))
	if err != nil {
		t.Fatal(err)
	}
	setRePublish(t, js, ControlBucket, rp)
	waitInView(t, view, "k", string(job.ControlPause))
	if _, err := kv.Put(ctx, "k", []byte(job.ControlCancel)); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "k", jetstream.LastRevision(rev)); err == nil {
		t.Fatal("the deletion at the pause's revision was stored")
	}
	testharness.WaitFor(t, 10*time.Second, "the refused deletion settled", func() bool { return len(s.of("k")) == 2 })
	if got := s.of("k"); !got[0] || got[1] {
		t.Fatalf("k settled %v, want the lost pause applied, then the refused deletion not", got)
	}
	if v, _ := view("k"); v != string(job.ControlCancel) {
		t.Fatalf("view of k = %q, want the cancel", v)
	}
}

// TestFollowAfterTheBucketIsCreatedAgain: a bucket deleted and created
// again (an operator's reset, a NATS store lost) starts its sequences
// again, and a follower holds values at the old, higher ones. The first
// republish older than its view has it look at the stream: created anew,
// it forgets the sequences and reads the bucket again, so the new writes
// apply.
func TestFollowAfterTheBucketIsCreatedAgain(t *testing.T) {
	js, kv, _, view := followControls(t)
	ctx := t.Context()
	for i := range 5 { // sequences the new stream will not reach at once
		if _, err := kv.Put(ctx, fmt.Sprintf("k%d", i), []byte(job.ControlPause)); err != nil {
			t.Fatal(err)
		}
	}
	waitInView(t, view, "k4", string(job.ControlPause))
	st, err := js.Stream(ctx, "KV_"+ControlBucket)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if err := js.DeleteStream(ctx, cfg.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	kv, err = js.KeyValue(ctx, ControlBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k4", []byte(job.ControlCancel)); err != nil { // sequence 1
		t.Fatal(err)
	}
	waitInView(t, view, "k4", string(job.ControlCancel))
	waitInView(t, view, "k0", "") // gone with the old stream
}

// TestFollowReadsAgainAfterARepublishGap: a follower whose NATS server was
// cut off from the stream's leader for a while (a partition too short for
// its connection to drop: no reconnect, so no new read) has lost the
// republishes of that while. Every stored write is republished, one
// sequence after another, so the next republish tells it: the follower
// reads the bucket again. (The lost republish here: the RePublish off for
// one write, and the leader not asked within the test.)
func TestFollowReadsAgainAfterARepublishGap(t *testing.T) {
	n, js, _ := openInternal(t)
	ctx := t.Context()
	kv, err := js.KeyValue(ctx, ControlBucket)
	if err != nil {
		t.Fatal(err)
	}
	var s settles
	view := followView(t, n, ControlBucket, FollowRepublished(ControlChanges+"."), s.option(time.Hour))
	rp := &jetstream.RePublish{Source: "$KV." + ControlBucket + ".>", Destination: ControlChanges + ".>"}
	if _, err := kv.Put(ctx, "before", []byte(job.ControlPause)); err != nil {
		t.Fatal(err)
	}
	waitInView(t, view, "before", string(job.ControlPause))
	setRePublish(t, js, ControlBucket, nil)
	if _, err := kv.Put(ctx, "lost", []byte(job.ControlCancel)); err != nil {
		t.Fatal(err)
	}
	setRePublish(t, js, ControlBucket, rp)
	if _, err := kv.Put(ctx, "after", []byte(job.ControlPause)); err != nil {
		t.Fatal(err)
	}
	waitInView(t, view, "after", string(job.ControlPause))
	waitInView(t, view, "lost", string(job.ControlCancel))
	if got := s.of("lost"); len(got) != 0 {
		t.Fatalf("lost settled %v with the leader, want it read again", got)
	}
}

// A follower whose leader cannot answer asks again later, less and less
// often, never more than a minute apart: the wait stays positive however
// many tries failed (a shift past the duration's bits would make it
// negative, and the follower would ask at every tick).
func TestVerifyBackoffStaysWithinAMinute(t *testing.T) {
	prev := time.Duration(0)
	for tries := 1; tries <= 200; tries++ {
		d := verifyBackoff(tries)
		if d < prev || d <= 0 || d > time.Minute {
			t.Fatalf("wait after %d tries = %v (after %d: %v), want growing, within (0, 1m]", tries, d, tries-1, prev)
		}
		prev = d
	}
	if verifyBackoff(1) != 2*time.Second {
		t.Fatalf("first wait %v, want 2s", verifyBackoff(1))
	}
}
