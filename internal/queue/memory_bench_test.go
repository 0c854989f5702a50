package queue_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/gctune"
	"github.com/vodpipe/vodpipe/internal/testharness"
)

// BenchmarkServerHeapPerKey puts the NATS server's memory per subject kept
// in numbers (docs/operations.md, "A library of millions"): the growth of
// this process's live heap (the server runs in it) per subject of a job
// id's length (a key-value key), written b.N times, without and with a TTL
// of its own (a finished job's status carries one), and per message of one
// subject with a TTL of its own (a finished job's index entries).
func BenchmarkServerHeapPerKey(b *testing.B) {
	for _, c := range []struct {
		name    string
		ttl     time.Duration
		subject func(i int) string
	}{
		{"key", 0, func(i int) string { return fmt.Sprintf("heap.f-%020x", uint64(i)*7919) }},
		{"key-ttl", 720 * time.Hour, func(i int) string { return fmt.Sprintf("heap.f-%020x", uint64(i)*7919) }},
		{"entry-ttl", 720 * time.Hour, func(int) string { return "heap.index" }},
	} {
		ttl := c.ttl
		b.Run(c.name, func(b *testing.B) {
			n := testharness.StartNATS(b)
			js := n.JetStream(b)
			ctx := b.Context()
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "HEAP", Subjects: []string{"heap.>"},
				Storage: jetstream.FileStorage, AllowMsgTTL: true}); err != nil {
				b.Fatal(err)
			}
			val := make([]byte, 300) // a status's size
			before := gctune.LiveHeap()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m := nats.NewMsg(c.subject(i))
				m.Data = val
				var opts []jetstream.PublishOpt
				if ttl > 0 {
					opts = append(opts, jetstream.WithMsgTTL(ttl))
				}
				if _, err := js.PublishMsgAsync(m, opts...); err != nil {
					b.Fatal(err)
				}
				if i%1000 == 999 {
					<-js.PublishAsyncComplete()
				}
			}
			<-js.PublishAsyncComplete()
			b.StopTimer()
			b.ReportMetric(float64(gctune.LiveHeap()-before)/float64(b.N), "heap-B/key")
		})
	}
}
