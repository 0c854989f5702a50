package queue

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/testharness"
)

// TestPurgeUpToKeepsALaterWrite: the sweep purges a marker up to the
// sequence it read, so a key written again after the read (a new pause of
// the same id) keeps its new value.
func TestPurgeUpToKeepsALaterWrite(t *testing.T) {
	n := testharness.StartNATS(t)
	js := n.JetStream(t)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "purge_bucket"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "k", []byte("pause")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	lastSeq := func() uint64 { // the stream's last sequence: the marker's, just after a delete
		st, err := kv.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
	}
	seq := lastSeq()
	if _, err := kv.Put(t.Context(), "k", []byte("cancel")); err != nil { // written after the sweep's read
		t.Fatal(err)
	}
	got, err := purgeUpTo(t.Context(), js.Conn(), "purge_bucket", "$KV.purge_bucket.k", seq)
	if err != nil || got != 0 {
		// History 1: the marker went when the new value came; nothing older is left.
		t.Fatalf("purged %d (%v), want none", got, err)
	}
	if e, err := kv.Get(t.Context(), "k"); err != nil || string(e.Value()) != "cancel" {
		t.Fatalf("k = %v, %v; want the later write kept", e, err)
	}
	if err := kv.Delete(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	if got, err := purgeUpTo(t.Context(), js.Conn(), "purge_bucket", "$KV.purge_bucket.k", lastSeq()); err != nil || got != 1 {
		t.Fatalf("purged %d (%v), want the marker", got, err)
	}
}
