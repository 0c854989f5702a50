package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/testharness"
)

// TestFileWatchServesManyWaitersWithOneSubscription: VOD callbacks that arrive
// before their workers record the FileId all wait on the one shared watcher
// (one subscription, no consumer of the files stream), and each gets its
// own job.
func TestFileWatchServesManyWaitersWithOneSubscription(t *testing.T) {
	_, js, q := openInternal(t)
	fw := q.Files.Watch(t.Context(), t.Logf)
	testharness.WaitFor(t, 10*time.Second, "shared watcher live", fw.Live)
	stream, err := js.Stream(t.Context(), "KV_"+FilesBucket)
	if err != nil {
		t.Fatal(err)
	}
	consumers := func() int {
		info, err := stream.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}

	subs := js.Conn().NumSubscriptions()

	// Recorded before the wait: found by the lookup (or the watcher's memory).
	if err := q.Files.Record(t.Context(), "file-early", "job-early"); err != nil {
		t.Fatal(err)
	}
	if id, err := fw.Wait(t.Context(), "file-early"); err != nil || id != "job-early" {
		t.Fatalf("early mapping = %q, %v", id, err)
	}

	const waiters = 50
	got := make([]string, waiters)
	errs := make([]error, waiters)
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			got[i], errs[i] = fw.Wait(ctx, fmt.Sprintf("file-%d", i))
		})
	}
	testharness.WaitFor(t, 10*time.Second, "every waiter registered", func() bool {
		fw.mu.Lock()
		defer fw.mu.Unlock()
		return len(fw.waiters) == waiters
	})
	if c := consumers(); c != 0 {
		t.Fatalf("files stream has %d consumers while %d callbacks wait, want none (one subscription serves them)", c, waiters)
	}
	if n := js.Conn().NumSubscriptions(); n != subs {
		t.Fatalf("%d subscriptions while %d callbacks wait, %d before: want the shared one alone", n, waiters, subs)
	}
	for i := range waiters {
		if err := q.Files.Record(t.Context(), fmt.Sprintf("file-%d", i), fmt.Sprintf("job-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i := range waiters {
		if errs[i] != nil || got[i] != fmt.Sprintf("job-%d", i) {
			t.Fatalf("waiter %d = %q, %v", i, got[i], errs[i])
		}
	}

	// A FileId nobody records: ErrNotFound when the wait ends, no waiter left behind.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := fw.Wait(ctx, "file-never"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown file: %v, want ErrNotFound", err)
	}
	fw.mu.Lock()
	left := len(fw.waiters)
	fw.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d waiters left registered", left)
	}
}

// TestFileWatchLooksUpOnlyWhatItCannotHaveSeen: a mapping recorded while the
// shared watcher runs reaches its waiter through the watcher, with no
// lookup of the key; one recorded before the watcher started is looked up,
// in time even for a wait much shorter than the watcher's grace.
func TestFileWatchLooksUpOnlyWhatItCannotHaveSeen(t *testing.T) {
	n, _, q := openInternal(t)
	if err := q.Files.Record(t.Context(), "file-before", "job-before"); err != nil {
		t.Fatal(err)
	}
	// Every direct get of the files bucket is a request on this subject: count them.
	lookups := n.CountMessages(t, "$JS.API.DIRECT.GET.KV_"+FilesBucket+".>")
	fw := q.Files.Watch(t.Context(), t.Logf)
	testharness.WaitFor(t, 10*time.Second, "shared watcher live", fw.Live)

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Millisecond)
	id, err := fw.Wait(ctx, "file-before")
	cancel()
	if err != nil || id != "job-before" {
		t.Fatalf("mapping recorded before the watcher = %q, %v; want job-before", id, err)
	}
	if got := lookups(); got != 1 {
		t.Fatalf("%d lookups for a mapping the watcher cannot have seen, want 1", got)
	}
	before := lookups()

	// However slowly this machine records the mappings below, each arrives
	// within the grace: what is measured is whether the watcher is trusted.
	fw.grace = time.Minute
	const waiters = 20
	var wg sync.WaitGroup
	errs := make([]error, waiters)
	for i := range waiters {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			got, err := fw.Wait(ctx, fmt.Sprintf("file-live-%d", i))
			if err == nil && got != fmt.Sprintf("job-live-%d", i) {
				err = fmt.Errorf("got job %q", got)
			}
			errs[i] = err
		})
	}
	testharness.WaitFor(t, 10*time.Second, "every waiter registered", func() bool {
		fw.mu.Lock()
		defer fw.mu.Unlock()
		return len(fw.waiters) == waiters
	})
	for i := range waiters {
		if err := q.Files.Record(t.Context(), fmt.Sprintf("file-live-%d", i), fmt.Sprintf("job-live-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("waiter %d: %v", i, err)
		}
	}
	if got := lookups() - before; got != 0 {
		t.Fatalf("%d lookups for %d mappings recorded while the watcher ran, want 0", got, waiters)
	}
}

// openInternal is a queue on its own NATS server, for tests inside the package.
func openInternal(t *testing.T) (*testharness.NATS, jetstream.JetStream, *Queue) {
	t.Helper()
	n := testharness.StartNATS(t)
	js := n.JetStream(t)
	q, err := Open(t.Context(), js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return n, js, q
}

// A shutdown waits for the watcher: once its context ends, its goroutine
// returns and its consumer is gone from the files stream.
func TestFileWatchStopsWithItsContext(t *testing.T) {
	_, js, q := openInternal(t)
	ctx, cancel := context.WithCancel(t.Context())
	fw := q.Files.Watch(ctx, t.Logf)
	testharness.WaitFor(t, 10*time.Second, "shared watcher live", fw.Live)
	select {
	case <-fw.Done():
		t.Fatal("Done closed while the watcher runs")
	default:
	}
	cancel()
	select {
	case <-fw.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("watcher still running 10s after its context ended")
	}
	stream, err := js.Stream(t.Context(), "KV_"+FilesBucket)
	if err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 10*time.Second, "watcher's consumer gone", func() bool {
		info, err := stream.Info(t.Context())
		return err == nil && info.State.Consumers == 0
	})
}
