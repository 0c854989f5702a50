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

// SweepBucket purges bucket's deletion markers last written more than age
// ago. A bucket that keeps no history still keeps a marker of every key ever
// deleted, and a read of the whole bucket (a follower's start, a listing)
// reads them all. Followers saw each deletion as it was published, or read
// the marker when they read the bucket again after a reconnect; one that
// missed both for longer than age asks the stream's leader about a key it
// holds and the read lacks (Follow). Each purge reaches only up to the
// marker read, so a write since stays. It reads the bucket with batched
// direct gets, removes at most most markers (the next sweep goes on) and
// returns how many it removed.
func SweepBucket(ctx context.Context, nc *nats.Conn, bucket string, age time.Duration, most int) (int, error) {
	return sweepBucket(ctx, nc, bucket, age, most, nil)
}

// sweepBucket is SweepBucket, calling old (when set) with the key and
// revision of each value, not a deletion, last written more than age ago.
func sweepBucket(ctx context.Context, nc *nats.Conn, bucket string, age time.Duration, most int, old func(key string, rev uint64)) (int, error) {
	cutoff := time.Now().Add(-age)
	prefix := "$KV." + bucket + "."
	removed := 0
	var failed error
	err := scan(ctx, nc, "KV_"+bucket, prefix+">", map[string]any{"seq": 1}, func(m *nats.Msg) bool {
		ts, err := time.Parse(time.RFC3339Nano, ServerHeader(m.Header, jetstream.TimeStampHeaer))
		seq, err2 := strconv.ParseUint(ServerHeader(m.Header, jetstream.SequenceHeader), 10, 64)
		if err != nil || err2 != nil || ts.After(cutoff) {
			return true
		}
		if !deletion(m.Header) {
			if old != nil {
				old(strings.TrimPrefix(ServerHeader(m.Header, jetstream.SubjectHeader), prefix), seq)
			}
			return true
		}
		var n int
		n, failed = purgeUpTo(ctx, nc, bucket, ServerHeader(m.Header, jetstream.SubjectHeader), seq)
		removed += n
		return failed == nil && removed < most
	})
	if err = cmp.Or(err, failed); err != nil {
		return removed, fmt.Errorf("queue: sweep %s: %w", bucket, err)
	}
	return removed, nil
}

// requestTimeout bounds one of our own requests to the JetStream API (a
// purge, a read from a stream's leader), as the JetStream client's default
// bounds its own.
const requestTimeout = 5 * time.Second

// purgeUpTo removes subject's messages in bucket up to and including
// sequence seq (a later write stays), and returns how many it removed.
func purgeUpTo(ctx context.Context, nc *nats.Conn, bucket, subject string, seq uint64) (int, error) {
	req, err := json.Marshal(map[string]any{"filter": subject, "seq": seq + 1})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE.KV_"+bucket, req)
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	var resp struct {
		Purged int                 `json:"purged"`
		Error  *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	if resp.Error != nil {
		return 0, fmt.Errorf("purge: %w", resp.Error)
	}
	return resp.Purged, nil
}
