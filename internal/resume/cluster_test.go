package resume

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/upload"
)

// Workers keep running jobs while the slots of those very jobs move from
// one node of a Redis Cluster to another (MIGRATING/IMPORTING, MIGRATE,
// then SETSLOT NODE, as redis-cli's reshard does): every lease, session,
// part, barrier and commit still succeeds (the client follows MOVED, ASK
// and TRYAGAIN), and every job's state reads back whole from its new node.
func TestRedisClusterReshardUnderLoad(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cl, err := child.StartCluster(ctx, t.TempDir(), child.ClusterOptions{Primaries: 2, Extra: []string{"--save", "", "--appendonly", "no"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Stop)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), MaxRedirects: 16})
	t.Cleanup(func() { _ = c.Close() })
	r := NewRedis(c)

	const jobs, parts = 24, 8
	runJob := func(ctx context.Context, id string, round int) error {
		l, _, err := r.AcquireLoad(ctx, id, "w", time.Minute)
		if err != nil {
			return fmt.Errorf("acquire: %w", err)
		}
		if err := r.SaveSession(ctx, l, upload.Session{VodSessionKey: fmt.Sprintf("s-%d", round), VideoKey: id, PartSize: 1, Size: parts}); err != nil {
			return fmt.Errorf("session: %w", err)
		}
		for n := 1; n <= parts; n++ {
			if err := r.SavePart(ctx, l, upload.PartRecord{Number: n, Size: 1, ETag: fmt.Sprintf(`"%d"`, n)}); err != nil {
				return fmt.Errorf("part %d: %w", n, err)
			}
		}
		if err := r.MarkVideoDone(ctx, l); err != nil {
			return fmt.Errorf("video done: %w", err)
		}
		if err := r.BeforeCommit(ctx, l); err != nil {
			return fmt.Errorf("barrier: %w", err)
		}
		return r.SaveCommitRelease(ctx, l, fmt.Sprintf("file-%s-%d", id, round), "u", "")
	}

	stop := make(chan struct{})
	var rounds atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, jobs)
	last := make([]int, jobs)
	for i := range jobs {
		wg.Go(func() {
			id := fmt.Sprintf("job-%d", i)
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := runJob(ctx, id, round); err != nil {
					errs <- fmt.Errorf("%s round %d: %w", id, round, err)
					return
				}
				last[i] = round
				rounds.Add(1)
			}
		})
	}
	// Move the slot of every job to the other node, while they run.
	moved, keys := 0, 0
	for i := range jobs {
		for rounds.Load() < int64(2*(i+1)) {
			time.Sleep(time.Millisecond) // let the load build between moves
		}
		slot, err := cl.SlotOf(ctx, r.keys(fmt.Sprintf("job-%d", i)).state)
		if err != nil {
			t.Fatal(err)
		}
		from, err := cl.Owner(ctx, slot)
		if err != nil {
			t.Fatal(err)
		}
		n, err := cl.MoveSlot(ctx, slot, from, 1-from)
		if err != nil {
			t.Fatalf("move slot %d: %v", slot, err)
		}
		moved++
		keys += n
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if keys == 0 {
		t.Fatal("no key moved: the reshard met no job")
	}
	t.Logf("%d slots moved with %d keys while %d rounds of jobs ran", moved, keys, rounds.Load())
	for i := range jobs {
		id := fmt.Sprintf("job-%d", i)
		st, err := r.Load(ctx, id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if want := fmt.Sprintf("file-%s-%d", id, last[i]); st.FileID != want || len(st.Parts) != parts || !st.VideoDone {
			t.Errorf("%s after the reshard: file %q, %d parts, video done %v; want %s, %d parts, done", id, st.FileID, len(st.Parts), st.VideoDone, want, parts)
		}
	}
}
