package queue

import (
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
	case <-time.After(10 * time.Second):
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
			o.wait = 100 * time.Millisecond
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
	testharness.WaitFor(t, 10*time.Second, "the write after the refused deletion", func() bool {
		v, _ := view("after")
		return v == string(job.ControlPause)
	})
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

// TestFollowWithoutItsRePublishAppliesWritesAsPublished: a bucket an older
// ingest set up has no RePublish. A follower that expects one learns so
// from the first write whose republish does not come (the leader has it
// stored) and applies the writes as published from then on.
func TestFollowWithoutItsRePublishAppliesWritesAsPublished(t *testing.T) {
	n, js, _ := openInternal(t)
	ctx := t.Context()
	const bucket = "vodpipe_old_control"
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	settled := make(chan bool, 4)
	view := followView(t, n, bucket, FollowRepublished("vodpipe.old.control."),
		func(o *followOptions) {
			o.wait = 100 * time.Millisecond
			o.settled = func(_ string, applied bool) { settled <- applied }
		})
	if _, err := kv.Put(ctx, "k1", []byte(job.ControlPause)); err != nil {
		t.Fatal(err)
	}
	select {
	case applied := <-settled:
		if !applied {
			t.Fatal("the stored write, settled with the leader, did not change the view")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write without a republish was never settled")
	}
	if v, _ := view("k1"); v != string(job.ControlPause) {
		t.Fatalf("view of k1 = %q, want the pause", v)
	}
	// From now on as published: no more settling.
	if _, err := kv.Put(ctx, "k2", []byte(job.ControlCancel)); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 10*time.Second, "k2 in the view", func() bool {
		v, _ := view("k2")
		return v == string(job.ControlCancel)
	})
	select {
	case <-settled:
		t.Fatal("a write was settled with the leader after the follower learnt the bucket has no RePublish")
	default:
	}
}
