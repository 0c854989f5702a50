package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/testharness"
)

// TestFileWatchServesManyWaitersWithOneConsumer: VOD callbacks that arrive
// before their workers record the FileId all wait on the one shared watcher
// (the files stream keeps one consumer), and each gets its own job.
func TestFileWatchServesManyWaitersWithOneConsumer(t *testing.T) {
	n := testharness.StartNATS(t)
	js := n.JetStream(t)
	q, err := Open(t.Context(), js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	fw := q.WatchFiles(t.Context(), t.Logf)
	waitUntil(t, "shared watcher live", fw.Live)
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

	// Recorded before the wait: found by the lookup (or the watcher's memory).
	if err := q.RecordFile(t.Context(), "file-early", "job-early"); err != nil {
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
	waitUntil(t, "every waiter registered", func() bool {
		fw.mu.Lock()
		defer fw.mu.Unlock()
		return len(fw.waiters) == waiters
	})
	if c := consumers(); c != 1 {
		t.Fatalf("files stream has %d consumers while %d callbacks wait, want the shared one", c, waiters)
	}
	for i := range waiters {
		if err := q.RecordFile(t.Context(), fmt.Sprintf("file-%d", i), fmt.Sprintf("job-%d", i)); err != nil {
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

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
