package queue

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A bucket followed without a consumer. A key-value watch is a push
// consumer, and nats-server does not check a push consumer's deliver
// subject against its creator's rights (nats-io/nats-server#8274): a user
// that may create one can have the server deliver a stream's messages on
// any subject of the account, the jobs subject among them. So the services
// that only need a bucket's values follow it without one: a key-value write
// is a message on $KV.<bucket>.<key>, to which they subscribe, and the
// current values come from batched direct gets.

// kvChange is one key's value, or its deletion.
type kvChange struct {
	key     string
	value   []byte
	deleted bool
}

// followInterval is how often a follower checks whether its connection
// was re-established, which may have lost messages: it then reads the
// current values again.
const followInterval = 2 * time.Second

// follow calls apply with every key's current value in bucket, then calls
// loaded, then calls apply with every change until ctx ends. Changes made
// while it reads the current values are applied after them, in the order
// published, so the view ends at the latest value of each key. After a
// reconnect it reads the current values again. apply is never called
// concurrently. It returns an error only if the first read fails.
func follow(ctx context.Context, nc *nats.Conn, bucket string, apply func(kvChange), loaded func()) error {
	prefix := "$KV." + bucket + "."
	var (
		mu        sync.Mutex
		buffering = true
		buffer    []kvChange
	)
	sub, err := nc.Subscribe(prefix+">", func(m *nats.Msg) {
		c := kvChange{key: strings.TrimPrefix(m.Subject, prefix), value: m.Data, deleted: deletion(m.Header)}
		mu.Lock()
		defer mu.Unlock()
		if buffering {
			buffer = append(buffer, c)
			return
		}
		apply(c)
	})
	if err != nil {
		return fmt.Errorf("queue: follow %s: %w", bucket, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// A follower's view must be whole: never drop a change for a slow apply.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return fmt.Errorf("queue: follow %s: %w", bucket, err)
	}
	load := func() error {
		mu.Lock()
		buffering, buffer = true, nil
		mu.Unlock()
		current, err := scanBucket(ctx, nc, bucket)
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			for _, c := range current {
				apply(c)
			}
		}
		// On an error the changes seen meanwhile still apply; the next
		// check reads the current values again.
		for _, c := range buffer {
			apply(c)
		}
		buffering, buffer = false, nil
		return err
	}
	reconnects := nc.Stats().Reconnects
	if err := load(); err != nil {
		return err
	}
	loaded()
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	failed := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if r := nc.Stats().Reconnects; r != reconnects || failed {
			reconnects = r
			failed = load() != nil
		}
	}
}

// deletion tells whether a key-value message deletes or purges its key.
func deletion(h nats.Header) bool {
	op := h.Get("KV-Operation")
	return op == "DEL" || op == "PURGE"
}

// scanBucket reads every key's current value (and deletion marker) in
// bucket, a batch at a time, in the order written.
func scanBucket(ctx context.Context, nc *nats.Conn, bucket string) ([]kvChange, error) {
	const batch = 256
	prefix := "$KV." + bucket + "."
	var out []kvChange
	for seq := uint64(1); ; {
		msgs, pending, err := directBatch(ctx, nc, "KV_"+bucket, map[string]any{"seq": seq, "batch": batch, "next_by_subj": prefix + ">"}, batch)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			out = append(out, kvChange{key: strings.TrimPrefix(m.Header.Get(jetstream.SubjectHeader), prefix), value: m.Data, deleted: deletion(m.Header)})
			if s, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64); err == nil {
				seq = s + 1
			}
		}
		if len(msgs) == 0 || pending == 0 {
			return out, nil
		}
	}
}
