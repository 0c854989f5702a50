package queue

import (
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// TestFollowOnALaggingReplicaCatchesUpWithTheLeader: a follower whose NATS
// server is cut off from its peers (its own connection stays up) reads the
// bucket from that server's replica, which lacks the writes stored since
// the cut: here a cancel over a pause. Their republishes were made before
// the follower subscribed, so none will come, and with no later write to
// the bucket nothing else would tell it. Once the cut ends, the follower
// reads on from its view's last sequence at the stream's leader and
// applies what it lacked.
func TestFollowOnALaggingReplicaCatchesUpWithTheLeader(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cl := testharness.StartNATSCluster(t)
	js := cl.Nodes[0].JetStream(t)
	if _, err := Open(ctx, js, Config{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, ControlBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte(job.ControlPause)); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "KV_"+ControlBucket)
	if err != nil {
		t.Fatal(err)
	}
	var leader string
	testharness.WaitFor(t, 30*time.Second, "every replica of the control bucket current", func() bool {
		info, err := st.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return false
			}
		}
		leader = info.Cluster.Leader
		return true
	})
	// The node cut off is one of the leader's followers; the writer is
	// on another node.
	lagging, writer := -1, -1
	for i, n := range cl.Nodes {
		switch {
		case n.Server.Name() != leader && lagging < 0:
			lagging = i
		case writer < 0:
			writer = i
		}
	}
	wkv, err := cl.Nodes[writer].JetStream(t).KeyValue(ctx, ControlBucket)
	if err != nil {
		t.Fatal(err)
	}
	cl.Isolate(lagging)
	if _, err := wkv.Put(ctx, "k", []byte(job.ControlCancel)); err != nil {
		t.Fatal(err)
	}
	view := followViewWithin(t, cl.Nodes[lagging], time.Minute, ControlBucket, FollowRepublished(ControlChanges+"."))
	if v, _ := view("k"); v != string(job.ControlPause) {
		t.Fatalf("view of k read from the cut-off replica = %q, want its stale pause (the premise of the test)", v)
	}
	if cl.Held() == 0 {
		t.Fatal("the cut held no route traffic")
	}
	cl.Rejoin(lagging)
	testharness.WaitFor(t, 30*time.Second, "the cancel in the view", func() bool {
		v, _ := view("k")
		return v == string(job.ControlCancel)
	})
}
