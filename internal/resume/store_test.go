package resume

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/internal/upload"
)

// store is what both implementations provide.
type store interface {
	upload.Leaser
	upload.ResumeStore
}

// suite is the behaviour both implementations promise. TestStores runs it
// against each backend.
var suite = []struct {
	name string
	test func(t *testing.T, s store)
}{
	{"AcquireRenewRelease", testAcquireRenewRelease},
	{"AcquireHeld", testAcquireHeld},
	{"LeaseExpiry", testLeaseExpiry},
	{"RenewKeepsLease", testRenewKeepsLease},
	{"FencingTokensIncrease", testFencingTokensIncrease},
	{"StaleWorkerCannotWrite", testStaleWorkerCannotWrite},
	{"NoWriteLandsAfterTakeover", testNoWriteLandsAfterTakeover},
	{"StateRoundTrip", testStateRoundTrip},
	{"SaveSessionResetsState", testSaveSessionResetsState},
	{"ConcurrentSavePart", testConcurrentSavePart},
	{"JobIDs", testJobIDs},
	{"InvalidArguments", testInvalidArguments},
}

// backends are the implementations under test. start sets up what a
// backend's tests share and returns a constructor of isolated stores.
var backends = []struct {
	name  string
	start func(t *testing.T) func(t *testing.T) store
}{
	{"redis", func(*testing.T) func(*testing.T) store {
		return func(t *testing.T) store { return NewRedis(testharness.StartRedis(t).Client(t)) }
	}},
	// One node for all tests, each under its own key prefix: a cluster node
	// takes two seconds to accept writes.
	{"redis-cluster", func(t *testing.T) func(*testing.T) store {
		c := startRedisCluster(t)
		var n atomic.Int64
		return func(*testing.T) store { return NewRedis(c, WithPrefix(fmt.Sprintf("t%d", n.Add(1)))) }
	}},
	{"memory", func(*testing.T) func(*testing.T) store {
		return func(*testing.T) store { return NewMemory() }
	}},
	{"kv", func(*testing.T) func(*testing.T) store {
		return func(t *testing.T) store {
			kv, err := NewKV(t.Context(), testharness.StartNATS(t).JetStream(t), "resume", 1)
			if err != nil {
				t.Fatal(err)
			}
			return kv
		}
	}},
}

func TestStores(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			open := b.start(t)
			for _, c := range suite {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.test(t, open(t))
				})
			}
		})
	}
}

const (
	longTTL = time.Minute
	// setupTTL is a lease that outlives a test's setup writes on a loaded
	// machine and still expires soon.
	setupTTL = 3 * time.Second
)

func testAcquireRenewRelease(t *testing.T, s store) {
	ctx := t.Context()
	l, err := s.Acquire(ctx, "job-1", "w1", longTTL)
	if err != nil {
		t.Fatal(err)
	}
	if l.JobID != "job-1" || l.Owner != "w1" || l.TTL != longTTL || l.Token < 1 {
		t.Fatalf("lease = %+v", l)
	}
	if err := s.Renew(ctx, l); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if err := s.Release(ctx, l); err != nil {
		t.Fatalf("release: %v", err)
	}
	if err := s.Renew(ctx, l); !errors.Is(err, upload.ErrLeaseLost) {
		t.Fatalf("renew after release = %v, want ErrLeaseLost", err)
	}
	if err := s.Release(ctx, l); err != nil {
		t.Fatalf("second release = %v, want nil", err)
	}
	l2, err := s.Acquire(ctx, "job-1", "w2", longTTL)
	if err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	if l2.Token <= l.Token {
		t.Fatalf("token after release = %d, want > %d", l2.Token, l.Token)
	}
}

func testAcquireHeld(t *testing.T, s store) {
	ctx := t.Context()
	l, err := s.Acquire(ctx, "job-1", "w1", longTTL)
	if err != nil {
		t.Fatal(err)
	}
	for _, owner := range []string{"w2", "w1"} {
		if _, err := s.Acquire(ctx, "job-1", owner, longTTL); !errors.Is(err, upload.ErrLeaseHeld) {
			t.Fatalf("acquire by %s = %v, want ErrLeaseHeld", owner, err)
		}
	}
	// A refused acquisition must not have disturbed the holder.
	if err := s.Renew(ctx, l); err != nil {
		t.Fatalf("holder's renew: %v", err)
	}
	// Other jobs are independent.
	if _, err := s.Acquire(ctx, "job-2", "w2", longTTL); err != nil {
		t.Fatalf("acquire other job: %v", err)
	}
}

func testLeaseExpiry(t *testing.T, s store) {
	ctx := t.Context()
	l1, err := s.Acquire(ctx, "job-1", "w1", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	l2 := acquireWhenExpired(t, s, "job-1", "w2", longTTL)
	if l2.Token <= l1.Token {
		t.Fatalf("token after expiry = %d, want > %d", l2.Token, l1.Token)
	}
	if err := s.Renew(ctx, l1); !errors.Is(err, upload.ErrLeaseLost) {
		t.Fatalf("renew of expired lease = %v, want ErrLeaseLost", err)
	}
	// The expired holder's release must not free the new holder's lease.
	if err := s.Release(ctx, l1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(ctx, "job-1", "w3", longTTL); !errors.Is(err, upload.ErrLeaseHeld) {
		t.Fatalf("acquire after stale release = %v, want ErrLeaseHeld", err)
	}
}

func testRenewKeepsLease(t *testing.T, s store) {
	ctx := t.Context()
	const ttl = 3 * time.Second // a renew may come 2.4 s late on a loaded machine
	l, err := s.Acquire(ctx, "job-1", "w1", ttl)
	if err != nil {
		t.Fatal(err)
	}
	// Renewing at a fifth of the TTL for longer than the TTL keeps the lease.
	tick := time.NewTicker(ttl / 5)
	defer tick.Stop()
	for range 7 {
		<-tick.C
		if err := s.Renew(ctx, l); err != nil {
			t.Fatalf("renew: %v", err)
		}
		if _, err := s.Acquire(ctx, "job-1", "w2", ttl); !errors.Is(err, upload.ErrLeaseHeld) {
			t.Fatalf("acquire while renewed = %v, want ErrLeaseHeld", err)
		}
	}
}

func testFencingTokensIncrease(t *testing.T, s store) {
	ctx := t.Context()
	var last int64
	for i := range 6 {
		l, err := s.Acquire(ctx, "job-1", fmt.Sprintf("w%d", i%2), longTTL)
		if err != nil {
			t.Fatal(err)
		}
		if l.Token <= last {
			t.Fatalf("acquisition %d: token %d after %d", i, l.Token, last)
		}
		last = l.Token
		if i%2 == 0 { // refused acquisitions and deleted state do not reset the count
			if _, err := s.Acquire(ctx, "job-1", "other", longTTL); !errors.Is(err, upload.ErrLeaseHeld) {
				t.Fatal(err)
			}
			if err := s.SaveSession(ctx, l, session(1)); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, l); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Release(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	// And across an expiry.
	l, err := s.Acquire(ctx, "job-1", "w1", 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if l.Token <= last {
		t.Fatalf("token %d after %d", l.Token, last)
	}
	if l2 := acquireWhenExpired(t, s, "job-1", "w2", longTTL); l2.Token <= l.Token {
		t.Fatalf("token after expiry %d, want > %d", l2.Token, l.Token)
	}
}

// testStaleWorkerCannotWrite is the fencing guarantee: once a lease expired,
// was released or was taken over, no write made with it changes anything.
func testStaleWorkerCannotWrite(t *testing.T, s store) {
	cases := []struct {
		name string
		// lose makes l stale and returns the lease of whoever holds the job now, if anyone.
		lose func(t *testing.T, s store, l upload.Lease) *upload.Lease
	}{
		{"taken over", func(t *testing.T, s store, l upload.Lease) *upload.Lease {
			l2 := acquireWhenExpired(t, s, l.JobID, "w2", longTTL)
			return &l2
		}},
		{"taken over by same owner", func(t *testing.T, s store, l upload.Lease) *upload.Lease {
			l2 := acquireWhenExpired(t, s, l.JobID, l.Owner, longTTL)
			return &l2
		}},
		{"expired", func(t *testing.T, s store, l upload.Lease) *upload.Lease {
			waitLeaseLost(t, s, l)
			return nil
		}},
		{"released", func(t *testing.T, s store, l upload.Lease) *upload.Lease {
			if err := s.Release(t.Context(), l); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			job := fmt.Sprintf("job-%d", i)
			ctx := t.Context()
			l, err := s.Acquire(ctx, job, "w1", setupTTL)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SaveSession(ctx, l, session(1)); err != nil {
				t.Fatal(err)
			}
			if err := s.SavePart(ctx, l, part(1)); err != nil {
				t.Fatal(err)
			}
			now := tc.lose(t, s, l)
			if now != nil { // the new holder's state is what must survive
				if err := s.SavePart(ctx, *now, part(2)); err != nil {
					t.Fatal(err)
				}
			}
			before := mustLoad(t, s, job)

			for _, w := range allWrites(ctx, l) {
				if err := w.write(s); !errors.Is(err, upload.ErrLeaseLost) {
					t.Errorf("stale %s = %v, want ErrLeaseLost", w.name, err)
				}
			}
			if after := mustLoad(t, s, job); !reflect.DeepEqual(after, before) {
				t.Fatalf("stale writes changed state:\nbefore %+v\nafter  %+v", before, after)
			}
			if now != nil {
				if err := s.Renew(ctx, *now); err != nil {
					t.Fatalf("new holder's renew: %v", err)
				}
				if err := s.MarkVideoDone(ctx, *now); err != nil {
					t.Fatalf("new holder's write: %v", err)
				}
			}
		})
	}
}

// testNoWriteLandsAfterTakeover races a worker writing as fast as it can
// against another that takes its lease over when it expires: whatever the
// interleaving, the state the new holder reads right after Acquire is the
// state it keeps.
func testNoWriteLandsAfterTakeover(t *testing.T, s store) {
	ctx := t.Context()
	l, err := s.Acquire(ctx, "job-1", "w1", setupTTL)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSession(ctx, l, session(1)); err != nil {
		t.Fatal(err)
	}
	stale := make(chan error, 1)
	go func() {
		for n := 1; ; n++ {
			if err := s.SavePart(ctx, l, part(n)); err != nil {
				stale <- err
				return
			}
		}
	}()
	acquireWhenExpired(t, s, "job-1", "w2", longTTL)
	taken := mustLoad(t, s, "job-1")
	select {
	case err := <-stale:
		if !errors.Is(err, upload.ErrLeaseLost) {
			t.Fatalf("stale writer stopped with %v, want ErrLeaseLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stale writer still writing 10s after the takeover")
	}
	if got := mustLoad(t, s, "job-1"); !reflect.DeepEqual(got, taken) {
		t.Fatalf("a stale write landed after the takeover: %d parts at takeover, %d now",
			len(taken.Parts), len(got.Parts))
	}
}

func testStateRoundTrip(t *testing.T, s store) {
	ctx := t.Context()
	if _, err := s.Load(ctx, "job-1"); !errors.Is(err, upload.ErrNoState) {
		t.Fatalf("load before any write = %v, want ErrNoState", err)
	}
	l, err := s.Acquire(ctx, "job-1", "w1", longTTL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "job-1"); !errors.Is(err, upload.ErrNoState) {
		t.Fatalf("load after acquire = %v, want ErrNoState", err)
	}
	if err := s.SetUploadID(ctx, l, "u-1"); !errors.Is(err, upload.ErrNoState) {
		t.Fatalf("upload id without session = %v, want ErrNoState", err)
	}
	sess := session(1)
	steps := []error{
		s.SaveSession(ctx, l, sess),
		s.SetUploadID(ctx, l, "upload-1"),
		s.SavePart(ctx, l, part(1)),
		s.SavePart(ctx, l, part(2)),
		s.SavePart(ctx, l, part(10000)),
		s.SavePart(ctx, l, upload.PartRecord{Number: 2, Size: 7, ETag: `"again"`, CRC64: 1}), // a part is replaced, not added
		s.MarkVideoDone(ctx, l),
		s.MarkCoverDone(ctx, l),
		s.SaveCommit(ctx, l, "5285890781234", "https://vod/m.mp4", "https://vod/c.jpg"),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	sess.UploadID = "upload-1"
	want := &upload.State{
		Session: &sess,
		Parts: map[int]upload.PartRecord{
			1:     part(1),
			2:     {Number: 2, Size: 7, ETag: `"again"`, CRC64: 1},
			10000: part(10000),
		},
		VideoDone: true,
		CoverDone: true,
		FileID:    "5285890781234",
		MediaURL:  "https://vod/m.mp4",
		CoverURL:  "https://vod/c.jpg",
	}
	if got := mustLoad(t, s, "job-1"); !reflect.DeepEqual(got, want) {
		t.Fatalf("state:\n got %+v %+v\nwant %+v %+v", got, got.Session, want, want.Session)
	}
	// A later worker resuming the job sees the same state.
	if err := s.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	l2, err := s.Acquire(ctx, "job-1", "w2", longTTL)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s, "job-1"); !reflect.DeepEqual(got, want) {
		t.Fatalf("state after new acquisition: %+v", got)
	}
	if err := s.Delete(ctx, l2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "job-1"); !errors.Is(err, upload.ErrNoState) {
		t.Fatalf("load after delete = %v, want ErrNoState", err)
	}
	// Progress without a session (never expected, but kept as written).
	if err := s.MarkCoverDone(ctx, l2); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s, "job-1"); !reflect.DeepEqual(got, &upload.State{CoverDone: true}) {
		t.Fatalf("state = %+v", got)
	}
}

func testSaveSessionResetsState(t *testing.T, s store) {
	ctx := t.Context()
	l, err := s.Acquire(ctx, "job-1", "w1", longTTL)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range []error{
		s.SaveSession(ctx, l, session(1)),
		s.SetUploadID(ctx, l, "upload-1"),
		s.SavePart(ctx, l, part(1)),
		s.SavePart(ctx, l, part(2)),
		s.MarkVideoDone(ctx, l),
		s.MarkCoverDone(ctx, l),
		s.SaveCommit(ctx, l, "f", "m", "c"),
	} {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	next := session(2)
	if err := s.SaveSession(ctx, l, next); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s, "job-1"); !reflect.DeepEqual(got, &upload.State{Session: &next}) {
		t.Fatalf("state after new session = %+v (session %+v)", got, got.Session)
	}
	// A session saved with its UploadID keeps it.
	next.UploadID = "upload-3"
	if err := s.SaveSession(ctx, l, next); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s, "job-1"); got.Session == nil || got.Session.UploadID != "upload-3" {
		t.Fatalf("session = %+v", got.Session)
	}
}

func testConcurrentSavePart(t *testing.T, s store) {
	ctx := t.Context()
	l, err := s.Acquire(ctx, "job-1", "w1", longTTL)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSession(ctx, l, session(1)); err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 16, 4
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				errs <- s.SavePart(ctx, l, part(1+w*perWriter+i))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := mustLoad(t, s, "job-1")
	if len(got.Parts) != writers*perWriter {
		t.Fatalf("%d parts landed, want %d", len(got.Parts), writers*perWriter)
	}
	for n := 1; n <= writers*perWriter; n++ {
		if got.Parts[n] != part(n) {
			t.Fatalf("part %d = %+v", n, got.Parts[n])
		}
	}
}

// testJobIDs checks that ids with characters that mean something in keys
// (hash-tag braces, key-token dots, "=" of the escape) each get keys of their own.
func testJobIDs(t *testing.T, s store) {
	ids := []string{
		"job-1", "a.b", ".a", "a.", "a..b", "{x}", "}x{", "a}b", "=", "=job-1",
		"am1vYi0x", "with space", "a/b", "a*b>", "ü", "a:b", "a:{b}:lease",
	}
	ctx := t.Context()
	leases := make(map[string]upload.Lease)
	for _, id := range ids {
		l, err := s.Acquire(ctx, id, "w1", longTTL)
		if err != nil {
			t.Fatalf("acquire %q: %v", id, err)
		}
		leases[id] = l
	}
	for i, id := range ids {
		if err := s.SavePart(ctx, leases[id], part(i+1)); err != nil {
			t.Fatalf("save %q: %v", id, err)
		}
	}
	for i, id := range ids {
		got := mustLoad(t, s, id)
		if len(got.Parts) != 1 || got.Parts[i+1] != part(i+1) {
			t.Fatalf("job %q parts = %+v", id, got.Parts)
		}
	}
}

func testInvalidArguments(t *testing.T, s store) {
	ctx := t.Context()
	for _, tc := range []struct {
		name  string
		owner string
		job   string
		ttl   time.Duration
	}{
		{"empty job", "w1", "", longTTL},
		{"empty owner", "", "job-1", longTTL},
		{"zero ttl", "w1", "job-1", 0},
		{"sub-millisecond ttl", "w1", "job-1", time.Microsecond},
	} {
		if _, err := s.Acquire(ctx, tc.job, tc.owner, tc.ttl); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: acquire = %v, want ErrInvalid", tc.name, err)
		}
	}
	if _, err := s.Load(ctx, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("load empty job = %v, want ErrInvalid", err)
	}
	l, err := s.Acquire(ctx, "job-1", "w1", longTTL)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SavePart(ctx, l, upload.PartRecord{Number: 0}); !errors.Is(err, ErrInvalid) {
		t.Errorf("part 0 = %v, want ErrInvalid", err)
	}
	if err := s.Renew(ctx, upload.Lease{JobID: "job-1", Owner: "w1", TTL: longTTL}); !errors.Is(err, ErrInvalid) {
		t.Errorf("renew without token = %v, want ErrInvalid", err)
	}
}

type namedWrite struct {
	name  string
	write func(s store) error
}

// allWrites is every ResumeStore write, made with l.
func allWrites(ctx context.Context, l upload.Lease) []namedWrite {
	return []namedWrite{
		{"SaveSession", func(s store) error { return s.SaveSession(ctx, l, session(9)) }},
		{"SetUploadID", func(s store) error { return s.SetUploadID(ctx, l, "stale-upload") }},
		{"SavePart", func(s store) error { return s.SavePart(ctx, l, part(99)) }},
		{"MarkVideoDone", func(s store) error { return s.MarkVideoDone(ctx, l) }},
		{"MarkCoverDone", func(s store) error { return s.MarkCoverDone(ctx, l) }},
		{"SaveCommit", func(s store) error { return s.SaveCommit(ctx, l, "stale", "stale", "stale") }},
		{"Delete", func(s store) error { return s.Delete(ctx, l) }},
	}
}

// acquireWhenExpired polls until owner gets the job's lease, which must
// happen once the current holder's lease expires.
func acquireWhenExpired(t *testing.T, s store, jobID, owner string, ttl time.Duration) upload.Lease {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := s.Acquire(t.Context(), jobID, owner, ttl)
		if err == nil {
			return l
		}
		if !errors.Is(err, upload.ErrLeaseHeld) {
			t.Fatalf("acquire: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("lease did not expire within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLeaseLost polls until the store reports l lost. It renews nothing: it
// probes with a write that would fail the same way.
func waitLeaseLost(t *testing.T, s store, l upload.Lease) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.MarkVideoDone(t.Context(), l)
		if errors.Is(err, upload.ErrLeaseLost) {
			return
		}
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("lease did not expire within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustLoad(t *testing.T, s store, jobID string) *upload.State {
	t.Helper()
	st, err := s.Load(t.Context(), jobID)
	if err != nil {
		t.Fatalf("load %q: %v", jobID, err)
	}
	return st
}

func session(n int) upload.Session {
	return upload.Session{
		VodSessionKey: fmt.Sprintf("session-%d", n),
		Opened:        time.Date(2025, 3, n, 10, 0, 0, 123456789, time.UTC),
		Bucket:        "vod-bucket-1250000000",
		Region:        "ap-guangzhou",
		VideoKey:      fmt.Sprintf("/1250000000/v/%d.mp4", n),
		CoverKey:      fmt.Sprintf("/1250000000/c/%d.jpg", n),
		PartSize:      8 << 20,
		Size:          1<<53 + 1, // survives where a double would not
		CoverSize:     4096,
	}
}

func part(n int) upload.PartRecord {
	return upload.PartRecord{Number: n, Size: 8 << 20, ETag: fmt.Sprintf(`"etag-%d"`, n), CRC64: math.MaxUint64 - uint64(n)}
}
