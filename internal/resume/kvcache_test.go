package resume

import (
	"errors"
	"testing"
	"time"

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
