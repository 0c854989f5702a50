package resume

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/internal/upload"
)

// Two worker processes share one bucket: a writes part records from the
// state its own last write left (no read), b takes the job over after a's
// lease expired. a's next write must still fail with ErrLeaseLost, and b's
// state must hold b's parts and a's parts written before the takeover only.
func TestKVWritesFromItsLastWriteStillSeeOtherWriters(t *testing.T) {
	ctx := t.Context()
	js := testharness.StartNATS(t).JetStream(t)
	a, err := NewKV(ctx, js, "resume", 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewKV(ctx, js, "resume", 1)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 300 * time.Millisecond
	la, err := a.Acquire(ctx, "job", "a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SaveSession(ctx, la, upload.Session{VodSessionKey: "s", PartSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 3; n++ {
		if err := a.SavePart(ctx, la, upload.PartRecord{Number: n, Size: 1, ETag: "a"}); err != nil {
			t.Fatalf("a's part %d: %v", n, err)
		}
	}
	if got := a.cachedRev("job"); got == 0 {
		t.Fatal("a keeps no last write of the job: every write reads the state again")
	}
	// Another writer under the same lease (a's process restarted with it)
	// changes the state behind a's kept entry: a's next write starts from
	// it, loses the compare-and-set, reads again and keeps b's part.
	if err := b.SavePart(ctx, la, upload.PartRecord{Number: 9, Size: 1, ETag: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := a.SavePart(ctx, la, upload.PartRecord{Number: 10, Size: 1, ETag: "a"}); err != nil {
		t.Fatal(err)
	}
	st, err := a.Load(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Parts) != 5 || st.Parts[9].ETag != "b" || st.Parts[10].ETag != "a" {
		t.Fatalf("parts = %+v, want 1-3 and 10 of a's, 9 of b's", st.Parts)
	}
	var lb upload.Lease
	for deadline := time.Now().Add(10 * time.Second); ; {
		if lb, err = b.Acquire(ctx, "job", "b", time.Minute); err == nil {
			break
		}
		if !errors.Is(err, upload.ErrLeaseHeld) || time.Now().After(deadline) {
			t.Fatalf("b's acquire: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the lease expires by a's clock: nothing to watch
	}
	if err := b.SavePart(ctx, lb, upload.PartRecord{Number: 4, Size: 1, ETag: "b"}); err != nil {
		t.Fatal(err)
	}
	// a's lease is gone by the clock: the lease check refuses.
	if err := a.SavePart(ctx, la, upload.PartRecord{Number: 5, Size: 1, ETag: "a"}); !errors.Is(err, upload.ErrLeaseLost) {
		t.Fatalf("a's write after b's takeover = %v, want ErrLeaseLost", err)
	}
	if st, err = b.Load(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	if len(st.Parts) != 6 || st.Parts[4].ETag != "b" || st.Parts[1].ETag != "a" {
		t.Fatalf("parts after the takeover = %+v, want a's 1-3 and 10, b's 4 and 9", st.Parts)
	}
	if err := b.SavePart(ctx, lb, upload.PartRecord{Number: 6, Size: 1, ETag: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx, lb); err != nil {
		t.Fatal(err)
	}
	if got := b.cachedRev("job"); got != 0 {
		t.Fatalf("a released lease's last write is kept at revision %d", got)
	}
	lb2, err := b.Acquire(ctx, "job", "b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SavePart(ctx, la, upload.PartRecord{Number: 7, Size: 1, ETag: "a"}); !errors.Is(err, upload.ErrLeaseLost) {
		t.Fatalf("a's write = %v, want ErrLeaseLost", err)
	}
	if err := b.SavePart(ctx, lb2, upload.PartRecord{Number: 8, Size: 1, ETag: "b"}); err != nil {
		t.Fatalf("b's write under its new lease: %v", err)
	}
	if st, err = b.Load(ctx, "job"); err != nil || len(st.Parts) != 8 {
		t.Fatalf("parts = %+v, %v; want 1-4, 6, 8-10", st, err)
	}
	if err := b.Delete(ctx, lb2); err != nil {
		t.Fatal(err)
	}
	if got := b.cachedRev("job"); got != 0 {
		t.Fatalf("a deleted state is kept at revision %d", got)
	}
}

// cachedRev is the revision of the job's kept last write (0: none).
func (k *KV) cachedRev(jobID string) uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if w := k.written[jobID]; w != nil {
		return w.rev
	}
	return 0
}

// countingKV counts a bucket's reads and writes, by key kind (lease. or state.).
type countingKV struct {
	jetstream.KeyValue
	mu     sync.Mutex
	gets   map[string]int
	writes int
}

func (c *countingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	c.mu.Lock()
	c.gets[strings.SplitN(key, ".", 2)[0]]++
	c.mu.Unlock()
	return c.KeyValue.Get(ctx, key)
}

func (c *countingKV) Create(ctx context.Context, key string, v []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	c.count()
	return c.KeyValue.Create(ctx, key, v, opts...)
}

func (c *countingKV) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	c.count()
	return c.KeyValue.Update(ctx, key, v, rev)
}

func (c *countingKV) count() { c.mu.Lock(); c.writes++; c.mu.Unlock() }

func (c *countingKV) reset() (gets map[string]int, writes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gets, writes = c.gets, c.writes
	c.gets, c.writes = map[string]int{}, 0
	return gets, writes
}

// What a job of one part costs the single-process mode's store, as the
// worker calls it (AcquireLoad, the session, the commit, Release): the
// state is read once, by the acquire that raises its fence, and each of
// the five writes but the lease's first is checked against the lease; the
// state the acquire returns is the stored one, a copy the store's next
// writes do not touch.
func TestKVOnePartJobReadsItsStateOnce(t *testing.T) {
	ctx := t.Context()
	js := testharness.StartNATS(t).JetStream(t)
	raw, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "resume", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := &countingKV{KeyValue: raw, gets: map[string]int{}}
	s := WrapKV(c)
	l, loaded, err := s.AcquireLoad(ctx, "job", "w1", time.Minute)
	if err != nil || loaded.State != nil || loaded.Err != nil {
		t.Fatalf("first acquire = %+v, %+v, %v; want a lease and no state", l, loaded, err)
	}
	if err := s.SaveSession(ctx, l, upload.Session{VodSessionKey: "s", Size: 10, PartSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCommit(ctx, l, "5285890781234", "https://vod/m.mp4", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	gets, writes := c.reset()
	if gets["state"] != 1 || gets["lease"] != 4 || writes != 5 {
		t.Fatalf("reads %v, %d writes; want the state read once, the lease 4 times, 5 writes", gets, writes)
	}

	// Taken again, the job's state comes with the lease, as Load reads it.
	l2, loaded, err := s.AcquireLoad(ctx, "job", "w2", time.Minute)
	if err != nil || loaded.Err != nil {
		t.Fatalf("second acquire: %v, %v", err, loaded.Err)
	}
	if l2.Token <= l.Token {
		t.Fatalf("second lease %+v after %+v: want a larger token", l2, l)
	}
	want, err := s.Load(ctx, "job")
	if err != nil || !reflect.DeepEqual(loaded.State, want) || loaded.State.FileID != "5285890781234" {
		t.Fatalf("state with the lease = %+v, Load = %+v, %v", loaded.State, want, err)
	}
	if _, _, err := s.AcquireLoad(ctx, "job", "w3", time.Minute); !errors.Is(err, upload.ErrLeaseHeld) {
		t.Fatalf("acquire while held = %v, want ErrLeaseHeld", err)
	}
	// A write under the new lease leaves the state handed out as it was.
	if err := s.SavePart(ctx, l2, upload.PartRecord{Number: 1, Size: 1, ETag: "e"}); err != nil {
		t.Fatal(err)
	}
	if len(loaded.State.Parts) != 0 {
		t.Fatalf("the state AcquireLoad returned changed with a write: %+v", loaded.State.Parts)
	}
}

// A lease given up late (its holder stalled past its expiry and a new lease
// took the job in the same process) leaves the new lease's kept entry: the
// new lease's first write still starts from it, with no read.
func TestKVReleaseOfAnOldLeaseKeepsTheNewOnesEntry(t *testing.T) {
	ctx := t.Context()
	js := testharness.StartNATS(t).JetStream(t)
	k, err := NewKV(ctx, js, "resume", 1)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 200 * time.Millisecond
	old, err := k.Acquire(ctx, "job", "w1", ttl)
	if err != nil {
		t.Fatal(err)
	}
	var cur upload.Lease
	testharness.WaitFor(t, 5*time.Second, "the old lease to expire and a new one to take the job", func() bool {
		cur, err = k.Acquire(ctx, "job", "w2", time.Minute)
		return err == nil
	})
	kept := k.cachedRev("job")
	if kept == 0 {
		t.Fatal("the new lease's entry is not kept")
	}
	if err := k.Release(ctx, old); err != nil {
		t.Fatal(err)
	}
	if got := k.cachedRev("job"); got != kept {
		t.Fatalf("after the old lease's release the kept entry is at revision %d, want the new lease's %d", got, kept)
	}
	if err := k.Release(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if got := k.cachedRev("job"); got != 0 {
		t.Fatalf("after the new lease's own release an entry is kept (revision %d)", got)
	}
}
