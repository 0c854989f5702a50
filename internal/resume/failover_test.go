package resume

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/upload"
)

// eventually retries f until it succeeds or 20 s pass: a client that
// follows a failover fails a few calls while the sentinels elect.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A primary SIGKILLed right after the worker's barrier before its commit
// loses neither the lease nor the session: after the sentinels promote the
// replica, another worker finds the lease held and, once it is free, the
// session to commit again (the same file). The new primary has no replica
// until the old one rejoins, and the barrier says so rather than letting a
// commit go on that one more failure could orphan.
func TestRedisSentinelFailoverKeepsLeaseAndSession(t *testing.T) {
	ctx := t.Context()
	g, err := child.StartSentinel(ctx, t.TempDir(), child.SentinelOptions{Extra: []string{"--save", "", "--appendonly", "no"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: child.SentinelMaster, SentinelAddrs: g.Addrs(),
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	r := NewRedis(c, WithReplicas(1, 500*time.Millisecond))

	l, _, err := r.AcquireLoad(ctx, "job-1", "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sess := upload.Session{VodSessionKey: "session-1", Bucket: "b", Region: "r", VideoKey: "k", PartSize: 1 << 20, Size: 3 << 20}
	if err := r.SaveSession(ctx, l, sess); err != nil {
		t.Fatal(err)
	}
	if err := r.SavePart(ctx, l, upload.PartRecord{Number: 1, ETag: `"e1"`, Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := r.BeforeCommit(ctx, l); err != nil {
		t.Fatalf("barrier with a replica in sync: %v", err)
	}

	old, err := g.KillPrimary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := g.WaitPrimary(wctx, old); err != nil {
		t.Fatal(err)
	}
	// The client follows the new primary, where the lease still is.
	eventually(t, "renew on the new primary", func() error { return r.Renew(ctx, l) })
	if _, err := r.Acquire(ctx, "job-1", "w2", time.Minute); !errors.Is(err, upload.ErrLeaseHeld) {
		t.Fatalf("another worker's acquire after the failover: %v, want ErrLeaseHeld", err)
	}
	st, err := r.Load(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Session == nil || st.Session.VodSessionKey != "session-1" || len(st.Parts) != 1 {
		t.Fatalf("state after the failover: %+v, want session-1 with its part", st)
	}
	// No replica now: the barrier refuses.
	if err := r.BeforeCommit(ctx, l); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("barrier with no replica: %v, want ErrNotReplicated", err)
	}
	if err := g.Rejoin(ctx, old); err != nil {
		t.Fatal(err)
	}
	eventually(t, "barrier once the old primary rejoined as replica", func() error { return r.BeforeCommit(ctx, l) })
}

// The barrier fails a lease that is no longer the caller's, and a store
// without replicas asked for waits for none.
func TestRedisBeforeCommit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	p, err := child.StartRedis(ctx, t.TempDir(), "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	host, port, _ := net.SplitHostPort(p.Addr)
	rep, err := child.StartRedis(ctx, t.TempDir(), "--save", "", "--appendonly", "no", "--replicaof", host, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rep.Stop() })
	primary := redis.NewClient(&redis.Options{Addr: p.Addr})
	t.Cleanup(func() { _ = primary.Close() })
	eventually(t, "replica in sync", func() error {
		n, err := primary.Do(ctx, "WAIT", 1, 100).Int64()
		if err == nil && n < 1 {
			err = errors.New("no replica yet")
		}
		return err
	})

	r := NewRedis(primary, WithReplicas(1, time.Second))
	l, err := r.Acquire(ctx, "job-1", "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.BeforeCommit(ctx, l); err != nil {
		t.Fatalf("with a replica: %v", err)
	}
	other := l
	other.Owner = "w2"
	if err := r.BeforeCommit(ctx, other); !errors.Is(err, upload.ErrLeaseLost) {
		t.Fatalf("someone else's lease: %v, want ErrLeaseLost", err)
	}
	// Two replicas asked of a primary with one: the write stands, the barrier refuses.
	r2 := NewRedis(primary, WithReplicas(2, 200*time.Millisecond))
	if err := r2.BeforeCommit(ctx, l); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("two replicas asked, one there: %v, want ErrNotReplicated", err)
	}
	if err := r2.SaveSessionBeforeCommit(ctx, l, upload.Session{VodSessionKey: "s"}); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("the session with the barrier, two replicas asked, one there: %v, want ErrNotReplicated", err)
	}
	if err := r.SaveSessionBeforeCommit(ctx, l, upload.Session{VodSessionKey: "s"}); err != nil {
		t.Fatalf("the session with the barrier, with a replica: %v", err)
	}
	if _, err := r2.Acquire(ctx, "job-2", "w1", time.Minute); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("acquire short of replicas: %v, want ErrNotReplicated", err)
	}
	// The multipart UploadId is waited for as the session is: lost to a
	// failover, the next run would open another upload and send every
	// part again.
	if err := r2.SetUploadID(ctx, l, "u-1"); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("the UploadId short of replicas: %v, want ErrNotReplicated", err)
	}
	if err := r.SetUploadID(ctx, l, "u-1"); err != nil {
		t.Fatalf("the UploadId with a replica: %v", err)
	}
	if err := NewRedis(primary).BeforeCommit(ctx, l); err != nil {
		t.Fatalf("no replicas asked: %v", err)
	}
}
