package resume

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/internal/upload"
)

// startRedisCluster starts a one-node Redis Cluster owning every slot and
// returns a cluster client on it. One node is enough to prove the scripts
// legal on a cluster: Redis refuses a script whose keys span slots
// (CROSSSLOT) whichever node owns them.
func startRedisCluster(t *testing.T) redis.UniversalClient {
	t.Helper()
	r, err := testharness.RunRedis(t.TempDir(), "--save", "", "--appendonly", "no",
		"--cluster-enabled", "yes", "--cluster-announce-ip", "127.0.0.1")
	if err != nil {
		t.Fatalf("start redis cluster node: %v", err)
	}
	t.Cleanup(func() { _ = r.Stop() })

	ctx := t.Context()
	node := r.Client(t)
	if err := node.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("cluster addslotsrange: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := node.ClusterInfo(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ok within 10s:\n%s", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{r.Addr}, IsClusterMode: true})
	t.Cleanup(func() { _ = c.Close() })
	if _, ok := c.(*redis.ClusterClient); !ok {
		t.Fatalf("universal client is %T, want *redis.ClusterClient", c)
	}
	return c
}

func TestRedisKeyLayout(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := testharness.StartRedis(t).Client(t)
	for _, tc := range []struct {
		name   string
		opts   []Option
		job    string
		prefix string
	}{
		{"default prefix", nil, "job-1", "vodpipe:{job-1}:"},
		{"own prefix", []Option{WithPrefix("staging")}, "job-1", "staging:{job-1}:"},
		{"brace escaped", nil, "a}b", "vodpipe:{=YX1i}:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewRedis(c, tc.opts...)
			l, err := s.Acquire(ctx, tc.job, "w1", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SaveSession(ctx, l, session(1)); err != nil {
				t.Fatal(err)
			}
			if err := s.SavePart(ctx, l, part(3)); err != nil {
				t.Fatal(err)
			}
			if err := s.MarkVideoDone(ctx, l); err != nil {
				t.Fatal(err)
			}
			if got, err := c.Get(ctx, tc.prefix+"lease").Result(); err != nil || got != leaseValue(l) {
				t.Fatalf("lease = %q, %v; want %q", got, err, leaseValue(l))
			}
			if got, err := c.Get(ctx, tc.prefix+"fence").Int64(); err != nil || got != l.Token {
				t.Fatalf("fence = %d, %v; want %d", got, err, l.Token)
			}
			fields, err := c.HKeys(ctx, tc.prefix+"state").Result()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(sorted(fields), ",") != "part:3,session,videoDone" {
				t.Fatalf("state fields = %v", fields)
			}
			if err := s.Release(ctx, l); err != nil {
				t.Fatal(err)
			}
			if n, err := c.Exists(ctx, tc.prefix+"lease").Result(); err != nil || n != 0 {
				t.Fatalf("lease exists after release: %d, %v", n, err)
			}
		})
	}
}

// TestRedisKeysShareSlot asks a cluster node which slot each key of a job
// hashes to.
func TestRedisKeysShareSlot(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := startRedisCluster(t)
	s := NewRedis(c)
	for _, job := range []string{"job-1", "a}b", "}x{", "{x}", "", "a:b"} {
		k := s.keys(job)
		var slots []int64
		for _, key := range []string{k.fence, k.lease, k.state} {
			slot, err := c.ClusterKeySlot(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			slots = append(slots, slot)
		}
		if slots[0] != slots[1] || slots[1] != slots[2] {
			t.Errorf("job %q: keys %v hash to slots %v", job, []string{k.fence, k.lease, k.state}, slots)
		}
	}
	// Jobs spread over slots rather than sharing one.
	a, _ := c.ClusterKeySlot(ctx, s.keys("job-1").state).Result()
	b, _ := c.ClusterKeySlot(ctx, s.keys("job-2").state).Result()
	if a == b {
		t.Errorf("job-1 and job-2 share slot %d", a)
	}
}

// TestRedisTTL checks that the lease, the fence and the state expire, and that
// writes and renewals push the state's expiry forward.
func TestRedisTTL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := testharness.StartRedis(t).Client(t)
	for _, tc := range []struct {
		name     string
		opts     []Option
		stateTTL time.Duration
	}{
		{"default", nil, DefaultStateTTL},
		{"configured", []Option{WithStateTTL(time.Hour)}, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewRedis(c, tc.opts...)
			k := s.keys("job-" + tc.name)
			l, err := s.Acquire(ctx, "job-"+tc.name, "w1", 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			checkPTTL(t, c, k.lease, 30*time.Second)
			checkPTTL(t, c, k.fence, tc.stateTTL)
			for _, w := range allWrites(ctx, l)[:6] { // every write but Delete
				// Shorten the TTLs so that the write visibly restores them.
				for _, key := range []string{k.state, k.fence} {
					if err := c.PExpire(ctx, key, time.Minute).Err(); err != nil {
						t.Fatal(err)
					}
				}
				if err := w.write(s); err != nil {
					t.Fatalf("%s: %v", w.name, err)
				}
				checkPTTL(t, c, k.state, tc.stateTTL)
				checkPTTL(t, c, k.fence, tc.stateTTL)
			}
			if err := c.PExpire(ctx, k.state, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			if err := s.Renew(ctx, l); err != nil {
				t.Fatal(err)
			}
			checkPTTL(t, c, k.state, tc.stateTTL)
			checkPTTL(t, c, k.lease, 30*time.Second)
		})
	}
}

// TestRedisScriptCacheFlushed checks that the store survives a server that
// lost its script cache (a restart, a failover, SCRIPT FLUSH).
func TestRedisScriptCacheFlushed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := testharness.StartRedis(t).Client(t)
	s := NewRedis(c)
	l, err := s.Acquire(ctx, "job-1", "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.SavePart(ctx, l, part(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Renew(ctx, l); err != nil {
		t.Fatal(err)
	}
}

// checkPTTL asserts that key expires in at most want, and not much sooner.
func checkPTTL(t *testing.T, c redis.UniversalClient, key string, want time.Duration) {
	t.Helper()
	got, err := c.PTTL(t.Context(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got > want || got < want-10*time.Second {
		t.Fatalf("PTTL %s = %v, want about %v", key, got, want)
	}
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	slices.Sort(s)
	return s
}

// The scripts that save a job a round trip, on a single node and on a
// cluster (a job's keys share a slot), one server of each for both.
func TestRedisOneRoundTripScripts(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]redis.UniversalClient{
		"single":  testharness.StartRedis(t).Client(t),
		"cluster": startRedisCluster(t),
	} {
		t.Run(name, func(t *testing.T) {
			t.Run("AcquireLoad", func(t *testing.T) { testAcquireLoad(t, c) })
			t.Run("SaveCommitRelease", func(t *testing.T) { testSaveCommitRelease(t, c) })
			t.Run("SaveSessionBeforeCommit", func(t *testing.T) { testSaveSessionBeforeCommit(t, c) })
		})
	}
}

// AcquireLoad takes the lease and reads the state in one script: the same
// lease rules as Acquire (held → ErrLeaseHeld, tokens grow), the same state
// as Load, nothing when none is stored, and a state it cannot decode
// reported with the lease held.
func testAcquireLoad(t *testing.T, c redis.UniversalClient) {
	ctx := t.Context()
	s := NewRedis(c)
	l, loaded, err := s.AcquireLoad(ctx, "job-al", "w1", time.Minute)
	if err != nil || loaded.State != nil || loaded.Err != nil {
		t.Fatalf("first acquire = %+v, %+v, %v; want a lease and no state", l, loaded, err)
	}
	if _, _, err := s.AcquireLoad(ctx, "job-al", "w2", time.Minute); !errors.Is(err, upload.ErrLeaseHeld) {
		t.Fatalf("acquire while held = %v, want ErrLeaseHeld", err)
	}
	sess := session(1)
	for i, err := range []error{s.SaveSession(ctx, l, sess), s.SavePart(ctx, l, part(1)), s.MarkVideoDone(ctx, l),
		s.SaveCommit(ctx, l, "5285890781234", "https://vod/m.mp4", "")} {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if err := s.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	l2, loaded, err := s.AcquireLoad(ctx, "job-al", "w2", time.Minute)
	if err != nil || loaded.Err != nil {
		t.Fatalf("second acquire: %v, %v", err, loaded.Err)
	}
	if l2.Token <= l.Token || l2.Owner != "w2" {
		t.Fatalf("second lease %+v after %+v: want a larger token, owner w2", l2, l)
	}
	if want := mustLoad(t, s, "job-al"); !reflect.DeepEqual(loaded.State, want) {
		t.Fatalf("state with the lease:\n got %+v\nwant %+v (Load)", loaded.State, want)
	}
	if loaded.State.FileID != "5285890781234" || !loaded.State.VideoDone || len(loaded.State.Parts) != 1 {
		t.Fatalf("state = %+v", loaded.State)
	}
	// A write fenced by the new lease works: it is the current one.
	if err := s.SavePart(ctx, l2, part(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, l2); err != nil {
		t.Fatal(err)
	}
	// A field that does not decode: the lease is taken, the error reported as Load reports it.
	if err := c.HSet(ctx, s.keys("job-al").state, fieldSession, "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	l3, loaded, err := s.AcquireLoad(ctx, "job-al", "w3", time.Minute)
	if err != nil || loaded.Err == nil || loaded.State != nil {
		t.Fatalf("acquire over a corrupt state = %v, %+v; want the lease and a load error", err, loaded)
	}
	if _, lerr := s.Load(ctx, "job-al"); lerr == nil {
		t.Fatal("Load decodes what AcquireLoad refused")
	}
	if _, _, err := s.AcquireLoad(ctx, "job-al", "w4", time.Minute); !errors.Is(err, upload.ErrLeaseHeld) {
		t.Fatalf("lease of the corrupt-state acquire not held: %v (lease %+v)", err, l3)
	}
}

// SaveCommitRelease records the commit and frees the lease in one script:
// sent again (a retry after a lost answer) it succeeds again; the next
// worker gets the lease at once and finds the commit; a stale holder can
// neither record a commit nor free the current holder's lease.
func testSaveCommitRelease(t *testing.T, c redis.UniversalClient) {
	ctx := t.Context()
	s := NewRedis(c)
	l, err := s.Acquire(ctx, "job-cr", "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSession(ctx, l, session(1)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the second as go-redis's retry after a lost answer
		if err := s.SaveCommitRelease(ctx, l, "5285890781234", "https://vod/m.mp4", "https://vod/c.jpg"); err != nil {
			t.Fatalf("SaveCommitRelease #%d: %v", i+1, err)
		}
	}
	l2, loaded, err := s.AcquireLoad(ctx, "job-cr", "w2", time.Minute)
	if err != nil {
		t.Fatalf("lease after SaveCommitRelease: %v, want it free", err)
	}
	if st := loaded.State; st == nil || st.FileID != "5285890781234" || st.MediaURL != "https://vod/m.mp4" ||
		st.CoverURL != "https://vod/c.jpg" || st.Session == nil {
		t.Fatalf("state after SaveCommitRelease = %+v, want the session and the commit", st)
	}
	// w1's lease is gone: its writes are refused and w2's lease stays.
	if err := s.SaveCommitRelease(ctx, l, "stale", "", ""); !errors.Is(err, upload.ErrLeaseLost) {
		t.Fatalf("stale SaveCommitRelease = %v, want ErrLeaseLost", err)
	}
	if _, err := s.Acquire(ctx, "job-cr", "w3", time.Minute); !errors.Is(err, upload.ErrLeaseHeld) {
		t.Fatalf("acquire after a stale SaveCommitRelease = %v, want w2's lease held", err)
	}
	if err := s.Renew(ctx, l2); err != nil {
		t.Fatalf("w2's lease after a stale SaveCommitRelease: %v", err)
	}
	if got := mustLoad(t, s, "job-cr"); got.FileID != "5285890781234" {
		t.Fatalf("FileId after a stale write = %q", got.FileID)
	}
}

// SaveSessionBeforeCommit records a session as SaveSession does (what an
// earlier session recorded goes) and renews the lease as BeforeCommit does,
// in one script; a holder whose lease is gone changes nothing.
func testSaveSessionBeforeCommit(t *testing.T, c redis.UniversalClient) {
	ctx := t.Context()
	s := NewRedis(c)
	l, err := s.Acquire(ctx, "job-sc", "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range []error{s.SaveSession(ctx, l, session(1)), s.SavePart(ctx, l, part(1)), s.MarkVideoDone(ctx, l)} {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	k := s.keys("job-sc")
	// The lease about to run out: the barrier gives it its TTL again.
	if err := c.PExpire(ctx, k.lease, time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSessionBeforeCommit(ctx, l, session(2)); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, k.lease).Val(); ttl < 30*time.Second {
		t.Fatalf("lease TTL after the barrier = %v, want it renewed to about a minute", ttl)
	}
	// What SaveSession alone leaves, on a twin job.
	twin, err := s.Acquire(ctx, "job-sc-twin", "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSession(ctx, twin, session(2)); err != nil {
		t.Fatal(err)
	}
	want := mustLoad(t, s, "job-sc-twin")
	if got := mustLoad(t, s, "job-sc"); !reflect.DeepEqual(got, want) {
		t.Fatalf("state after the barrier:\n got %+v\nwant %+v (the new session alone)", got, want)
	}
	other := l
	other.Owner, other.Token = "w2", l.Token+1
	if err := s.SaveSessionBeforeCommit(ctx, other, session(3)); !errors.Is(err, upload.ErrLeaseLost) {
		t.Fatalf("barrier under someone else's lease = %v, want ErrLeaseLost", err)
	}
	if got := mustLoad(t, s, "job-sc"); !reflect.DeepEqual(got, want) {
		t.Fatalf("state after a refused barrier = %+v, want it unchanged", got)
	}
}
