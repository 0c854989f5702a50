package resume

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/internal/upload"
)

func TestKVKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ job, lease string }{
		{"job-1", "lease.job-1"},
		{"2025.06.01_a-b", "lease.2025.06.01_a-b"},
		{"a..b", "lease.=YS4uYg"},
		{".a", "lease.=LmE"},
		{"a.", "lease.=YS4"},
		{"a b", "lease.=YSBi"},
		{"a*", "lease.=YSo"},
		{"a>", "lease.=YT4"},
		{"=YQ", "lease.=PVlR"}, // looks escaped, so it is escaped itself
		{"ü", "lease.=w7w"},
	} {
		lease, state := kvKeys(tc.job)
		if lease != tc.lease || state != "state."+lease[len("lease."):] {
			t.Errorf("kvKeys(%q) = %q, %q; want %q", tc.job, lease, state, tc.lease)
		}
	}
}

func TestNewKV(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	js := testharness.StartNATS(t).JetStream(t)
	s, err := NewKV(ctx, js, "resume", 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.Acquire(ctx, "job-1", "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSession(ctx, l, session(1)); err != nil {
		t.Fatal(err)
	}
	// Creating it again is harmless and keeps what is stored.
	s2, err := NewKV(ctx, js, "resume", 1)
	if err != nil {
		t.Fatalf("second NewKV: %v", err)
	}
	if st, err := s2.Load(ctx, "job-1"); err != nil || st.Session.VodSessionKey != "session-1" {
		t.Fatalf("load through second KV = %+v, %v", st, err)
	}
	if _, err := s2.Acquire(ctx, "job-1", "w2", time.Minute); !errors.Is(err, upload.ErrLeaseHeld) {
		t.Fatalf("acquire through second KV = %v, want ErrLeaseHeld", err)
	}
	kv, err := js.KeyValue(ctx, "resume")
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != DefaultStateTTL || st.History() != 1 {
		t.Fatalf("bucket TTL %v history %d, want %v and 1", st.TTL(), st.History(), DefaultStateTTL)
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); !ok || bs.StreamInfo().Config.Replicas != 1 {
		t.Fatalf("bucket status %T, want 1 replica", st)
	}
	if _, err := NewKV(ctx, js, "no.dots", 1); err == nil {
		t.Fatal("NewKV accepted an invalid bucket name")
	}
	// The replicas reach the server: a single server refuses 3.
	if _, err := NewKV(ctx, js, "resume3", 3); err == nil || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("NewKV with 3 replicas on one server = %v, want the server's refusal", err)
	}
}

// TestKVLostLeaseEntry covers a lease entry gone from the bucket (its TTL ran
// out before the state's): the next token must still pass the state's fence,
// and the stale holder must still be refused.
func TestKVLostLeaseEntry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	js := testharness.StartNATS(t).JetStream(t)
	s, err := NewKV(ctx, js, "resume", 1)
	if err != nil {
		t.Fatal(err)
	}
	l1, err := s.Acquire(ctx, "job-1", "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	l2 := l1
	for range 3 { // push the fence past 1
		if err := s.Release(ctx, l2); err != nil {
			t.Fatal(err)
		}
		if l2, err = s.Acquire(ctx, "job-1", "w1", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SavePart(ctx, l2, part(1)); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "resume")
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, "lease.job-1"); err != nil {
		t.Fatal(err)
	}

	l3, err := s.Acquire(ctx, "job-1", "w2", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if l3.Token <= l2.Token {
		t.Fatalf("token after lost lease entry = %d, want > %d", l3.Token, l2.Token)
	}
	// Acquire raised the state's fence before returning, ahead of any write.
	if st, _, err := s.getState(ctx, "state.job-1"); err != nil || st.Fence != l3.Token {
		t.Fatalf("fence after acquire = %d, %v; want %d", st.Fence, err, l3.Token)
	}
	if err := s.SavePart(ctx, l3, part(2)); err != nil {
		t.Fatalf("new holder's write: %v", err)
	}
	for _, l := range []upload.Lease{l1, l2} {
		if err := s.SavePart(ctx, l, part(3)); !errors.Is(err, upload.ErrLeaseLost) {
			t.Fatalf("stale write with token %d = %v, want ErrLeaseLost", l.Token, err)
		}
	}
	e, err := kv.Get(ctx, "state.job-1")
	if err != nil {
		t.Fatal(err)
	}
	var st stateEntry
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Fence != l3.Token || len(st.State.Parts) != 2 {
		t.Fatalf("state entry = fence %d, %d parts; want fence %d, 2 parts", st.Fence, len(st.State.Parts), l3.Token)
	}
}

// TestKVFenceRefusesOlderToken writes the state entry's fence past a lease
// directly, as a takeover does between the old holder's lease check and its
// write: the old holder's write must fail even though its lease entry still
// names it.
func TestKVFenceRefusesOlderToken(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	js := testharness.StartNATS(t).JetStream(t)
	s, err := NewKV(ctx, js, "resume", 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.Acquire(ctx, "job-1", "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	raise := func(token int64) error {
		st, rev, err := s.getState(ctx, "state.job-1")
		if err != nil {
			return err
		}
		_, _, err = s.raiseFence(ctx, "state.job-1", token, st, rev)
		return err
	}
	if err := raise(l.Token + 1); err != nil {
		t.Fatal(err)
	}
	for _, w := range allWrites(ctx, l) {
		if err := w.write(s); !errors.Is(err, upload.ErrLeaseLost) {
			t.Errorf("%s = %v, want ErrLeaseLost", w.name, err)
		}
	}
	// raiseFence never lowers the fence.
	if err := raise(l.Token); err != nil {
		t.Fatal(err)
	}
	if _, rev, err := s.getState(ctx, "state.job-1"); err != nil || rev == 0 {
		t.Fatalf("state entry: rev %d, %v", rev, err)
	}
	if st, _, _ := s.getState(ctx, "state.job-1"); st.Fence != l.Token+1 {
		t.Fatalf("fence = %d, want %d", st.Fence, l.Token+1)
	}
}
