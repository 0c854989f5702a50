package queue

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SweepBucket purges, of bucket's keys last written more than age ago, the
// deletion markers, and the values of the keys gone reports as no longer
// needed (asked a thousand keys at a time; nil keeps every value). A bucket
// that keeps no history still keeps a marker of every key ever deleted, and
// a read of the whole bucket (a follower's start, a listing) reads them all.
// Each purge reaches only up to the entry read, so a write since stays; a
// purge publishes nothing to the bucket's followers (see Follow). It reads
// the bucket with batched direct gets, removes at most most entries (the
// next sweep goes on) and returns how many it removed.
func SweepBucket(ctx context.Context, nc *nats.Conn, bucket string, age time.Duration, most int,
	gone func(ctx context.Context, keys []string) (map[string]bool, error)) (int, error) {
	cutoff := time.Now().Add(-age)
	prefix := "$KV." + bucket + "."
	type entry struct {
		key string
		seq uint64
	}
	removed := 0
	var values []entry
	flush := func() error {
		if len(values) == 0 {
			return nil
		}
		keys := make([]string, len(values))
		for i, e := range values {
			keys[i] = e.key
		}
		done, err := gone(ctx, keys)
		if err != nil {
			return err
		}
		for _, e := range values {
			if !done[e.key] || removed >= most {
				continue
			}
			if err := purgeUpTo(ctx, nc, bucket, prefix+e.key, e.seq); err != nil {
				return err
			}
			removed++
		}
		values = values[:0]
		return nil
	}
	var failed error
	err := scan(ctx, nc, "KV_"+bucket, prefix+">", map[string]any{"seq": 1}, func(m *nats.Msg) bool {
		ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		seq, err2 := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil || err2 != nil || ts.After(cutoff) {
			return true
		}
		e := entry{key: strings.TrimPrefix(m.Header.Get(jetstream.SubjectHeader), prefix), seq: seq}
		switch {
		case deletion(m.Header):
			if failed = purgeUpTo(ctx, nc, bucket, prefix+e.key, e.seq); failed == nil {
				removed++
			}
		case gone != nil:
			if values = append(values, e); len(values) == 1000 {
				failed = flush()
			}
		}
		return failed == nil && removed < most
	})
	if err == nil && failed == nil {
		failed = flush()
	}
	if err = cmp.Or(err, failed); err != nil {
		return removed, fmt.Errorf("queue: sweep %s: %w", bucket, err)
	}
	return removed, nil
}

// requestTimeout bounds one request of a sweep, as the JetStream client's
// default bounds its own.
const requestTimeout = 5 * time.Second

// purgeUpTo removes subject's messages in bucket up to and including
// sequence seq (a later write stays).
func purgeUpTo(ctx context.Context, nc *nats.Conn, bucket, subject string, seq uint64) error {
	req, err := json.Marshal(map[string]any{"filter": subject, "seq": seq + 1})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE.KV_"+bucket, req)
	if err != nil {
		return fmt.Errorf("queue: purge an old entry of %s: %w", bucket, err)
	}
	var resp struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return fmt.Errorf("queue: purge an old entry of %s: %w", bucket, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("queue: purge an old entry of %s: %w", bucket, resp.Error)
	}
	return nil
}
