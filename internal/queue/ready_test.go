package queue_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/natsembed"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
)

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestWhenReadyWaitsForTheServer starts a service's setup before its NATS
// server is up, as happens when pods start together: the setup fails as not
// ready, is tried again, and succeeds once the server is there.
func TestWhenReadyWaitsForTheServer(t *testing.T) {
	port, err := child.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var tries atomic.Int32
	failed := make(chan error, 1)
	done := make(chan error, 1)
	var q *queue.Queue
	go func() {
		done <- queue.WhenReady(t.Context(), queue.ReadyPolicy{Wait: time.Minute, Backoff: 20 * time.Millisecond}, quietLog(),
			func(ctx context.Context) (err error) {
				tries.Add(1)
				ctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				if q, err = queue.Open(ctx, js, queue.Config{}); err != nil {
					select {
					case failed <- err:
					default:
					}
				}
				return err
			})
	}()
	first := <-failed
	if !queue.NotReady(first) {
		t.Fatalf("setup without a server failed with %v, which NotReady does not call not ready", first)
	}
	ns, err := natsembed.Start(t.TempDir(), "127.0.0.1", port)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	if err := <-done; err != nil {
		t.Fatalf("WhenReady after the server came up: %v", err)
	}
	if tries.Load() < 2 {
		t.Fatalf("setup ran %d times; it failed once, so it must have run again", tries.Load())
	}
	if _, err := q.JetStream().Stream(t.Context(), queue.JobsStream); err != nil {
		t.Fatalf("stream after WhenReady: %v", err)
	}
}

// TestWhenReadyStopsAtAPermanentError does not retry an error that waiting
// cannot fix: here another stream already holds the jobs subjects.
func TestWhenReadyStopsAtAPermanentError(t *testing.T) {
	n := testharness.StartNATS(t)
	js := n.JetStream(t)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "SQUATTER", Subjects: []string{"vodpipe.jobs.>"}}); err != nil {
		t.Fatal(err)
	}
	tries := 0
	err := queue.WhenReady(t.Context(), queue.ReadyPolicy{Wait: time.Minute, Backoff: time.Millisecond}, quietLog(),
		func(ctx context.Context) error {
			tries++
			_, err := queue.Open(ctx, js, queue.Config{})
			return err
		})
	if err == nil {
		t.Fatal("Open succeeded although another stream holds vodpipe.jobs.>")
	}
	if tries != 1 {
		t.Fatalf("setup ran %d times for a permanent error (%v), want 1", tries, err)
	}
	if queue.NotReady(err) {
		t.Fatalf("NotReady(%v) = true", err)
	}
}

// TestWhenReadyGivesUpAfterItsWait ends with the last error, saying how long
// it waited, when JetStream never becomes ready.
func TestWhenReadyGivesUpAfterItsWait(t *testing.T) {
	tries := 0
	err := queue.WhenReady(t.Context(), queue.ReadyPolicy{Wait: time.Second, Backoff: 10 * time.Millisecond}, quietLog(),
		func(context.Context) error {
			tries++
			return fmt.Errorf("open: %w", nats.ErrNoResponders)
		})
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("err = %v, want the last setup error wrapped", err)
	}
	if !strings.Contains(err.Error(), "not ready after 1s") || !strings.Contains(err.Error(), "is JetStream enabled") {
		t.Fatalf("err = %q, want it to say how long it waited and what to check", err)
	}
	if tries < 2 {
		t.Fatalf("setup ran %d times in its wait, want it retried", tries)
	}
}

// TestAttachWaitsForIngest attaches, as a worker does, before ingest has
// created the layout: the attach is not ready, waits with a log line that
// says what for, and succeeds once the layout is opened, taking the ack wait
// of the consumer ingest made.
func TestAttachWaitsForIngest(t *testing.T) {
	n := testharness.StartNATS(t)
	js := n.JetStream(t)
	var logs syncLog
	log := slog.New(slog.NewTextHandler(&logs, nil))
	failed := make(chan error, 1)
	done := make(chan error, 1)
	var q *queue.Queue
	go func() {
		done <- queue.WhenReady(t.Context(), queue.ReadyPolicy{Wait: time.Minute, Backoff: 20 * time.Millisecond}, log,
			func(ctx context.Context) (err error) {
				if q, err = queue.Attach(ctx, js, queue.Config{}); err != nil {
					select {
					case failed <- err:
					default:
					}
				}
				return err
			})
	}()
	if first := <-failed; !errors.Is(first, queue.ErrNotCreated) {
		t.Fatalf("attach before the layout: %v, want ErrNotCreated", first)
	}
	if _, err := queue.Open(t.Context(), js, queue.Config{AckWait: 7 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WhenReady after ingest opened the layout: %v", err)
	}
	if !strings.Contains(logs.String(), "waiting for ingest to create the JetStream layout") {
		t.Fatalf("no log line says what the attach waits for:\n%s", logs.String())
	}
	if got := q.Config().AckWait; got != 7*time.Second {
		t.Fatalf("attached ack wait %s, want the consumer's 7s", got)
	}
}

// TestWhenReadyNamesIngestWhenTheLayoutNeverCame ends, when no layout appears
// in its wait, with an error that points at ingest.
func TestWhenReadyNamesIngestWhenTheLayoutNeverCame(t *testing.T) {
	js := testharness.StartNATS(t).JetStream(t)
	err := queue.WhenReady(t.Context(), queue.ReadyPolicy{Wait: 200 * time.Millisecond, Backoff: 20 * time.Millisecond}, quietLog(),
		func(ctx context.Context) error {
			_, err := queue.Attach(ctx, js, queue.Config{})
			return err
		})
	if !errors.Is(err, queue.ErrNotCreated) || !strings.Contains(err.Error(), "is ingest running?") {
		t.Fatalf("err = %v, want ErrNotCreated and a hint at ingest", err)
	}
	if _, err := js.Stream(t.Context(), queue.JobsStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("attach created the jobs stream: %v", err)
	}
}

// syncLog is a log buffer safe for the writer goroutine and the test.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWhenReadyWaitsOutTheLayoutBrokersNotYet: ingest's layout broker
// answers "not ready" when JetStream could not carry the request out yet (a
// timeout in a partition, no leader); notify's setup waits and asks again
// instead of ending, while a refusal still ends it. The broker here is a
// subscription answering as the broker does, on a real server.
func TestWhenReadyWaitsOutTheLayoutBrokersNotYet(t *testing.T) {
	n := testharness.StartNATS(t)
	js := n.JetStream(t)
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: queue.SubscriptionsBucket}); err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int32
	answers := []string{`{"error":"context deadline exceeded","notReady":true}`, `{}`}
	sub, err := js.Conn().Subscribe(queue.LayoutSubject, func(m *nats.Msg) {
		i := min(int(asked.Add(1))-1, len(answers)-1)
		_ = m.Respond([]byte(answers[i]))
	})
	if err != nil {
		t.Fatal(err)
	}
	layout := queue.NewLayout(js)
	err = queue.WhenReady(t.Context(), queue.ReadyPolicy{Wait: 10 * time.Second, Backoff: 50 * time.Millisecond}, quietLog(),
		func(ctx context.Context) error {
			_, err := layout.Bucket(ctx, jetstream.KeyValueConfig{Bucket: queue.SubscriptionsBucket})
			return err
		})
	if err != nil || asked.Load() != 2 {
		t.Fatalf("setup: %v after %d requests, want success at the second", err, asked.Load())
	}
	_ = sub.Unsubscribe()
	if _, err := js.Conn().Subscribe(queue.LayoutSubject, func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"error":"queue: layout request refused: a push consumer"}`))
	}); err != nil {
		t.Fatal(err)
	}
	_, err = layout.Bucket(t.Context(), jetstream.KeyValueConfig{Bucket: queue.SubscriptionsBucket})
	if err == nil || queue.NotReady(err) || errors.Is(err, queue.ErrLayoutNotReady) {
		t.Fatalf("a refusal: %v, want an error that is not 'not ready'", err)
	}
}

// TestFollowWaitsForTheBucket: a follower whose first read finds JetStream
// not ready (here the bucket is not there yet: nothing answers its direct
// gets) tries again instead of failing, and loads once the bucket is there;
// a service starting in a partition waits the same way.
func TestFollowWaitsForTheBucket(t *testing.T) {
	n := testharness.StartNATS(t)
	js := n.JetStream(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	seen := map[string]string{}
	loaded, failed := make(chan struct{}), make(chan error, 1)
	go func() {
		err := queue.Follow(ctx, js.Conn(), "late_bucket", func(c queue.KVChange) {
			mu.Lock()
			seen[c.Key] = string(c.Value)
			mu.Unlock()
		}, func() { close(loaded) })
		failed <- err
	}()
	select {
	case err := <-failed:
		t.Fatalf("Follow ended before the bucket existed: %v", err)
	case <-time.After(500 * time.Millisecond): // it is trying again, not ended
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "late_bucket"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-loaded:
	case err := <-failed:
		t.Fatalf("Follow ended: %v", err)
	case <-ctx.Done():
		t.Fatal("Follow never loaded the bucket")
	}
	testharness.WaitFor(t, 5*time.Second, "the key", func() bool { mu.Lock(); defer mu.Unlock(); return seen["a"] == "1" })
}

// TestFollowAfterAReconnectDropsAKeyGoneAltogether: a key whose deletion a
// follower missed and whose marker was purged meanwhile (SweepBucket
// purges old markers) is not in the bucket at all when the follower reads
// it again after a reconnect. The stream's leader confirms it is gone, and
// it is applied as deleted, not kept for ever. Here the key is purged
// outright, which publishes nothing to followers.
func TestFollowAfterAReconnectDropsAKeyGoneAltogether(t *testing.T) {
	n := testharness.StartNATS(t)
	js := n.JetStream(t)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "gone_bucket"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		if _, err := kv.Put(t.Context(), k, []byte("1")); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect(n.URL, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	seen := map[string]string{}
	loaded := make(chan struct{})
	go func() {
		_ = queue.Follow(t.Context(), nc, "gone_bucket", func(c queue.KVChange) {
			mu.Lock()
			defer mu.Unlock()
			if c.Deleted {
				delete(seen, c.Key)
			} else {
				seen[c.Key] = string(c.Value)
			}
		}, func() { close(loaded) })
	}()
	<-loaded
	view := func() map[string]string { mu.Lock(); defer mu.Unlock(); return maps.Clone(seen) }
	if v := view(); len(v) != 2 {
		t.Fatalf("loaded %v, want a and b", v)
	}
	stream, err := js.Stream(t.Context(), "KV_gone_bucket")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(t.Context(), jetstream.WithPurgeSubject("$KV.gone_bucket.a")); err != nil {
		t.Fatal(err)
	}
	if v := view(); v["a"] != "1" {
		t.Fatalf("view %v: a purge publishes nothing, the follower still has a", v)
	}
	if err := nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 10*time.Second, "a dropped after the reconnect's read", func() bool { _, ok := view()["a"]; return !ok })
	if v := view(); v["b"] != "1" {
		t.Fatalf("view %v, want b kept", v)
	}
}
