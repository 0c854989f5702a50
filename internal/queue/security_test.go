package queue_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// Streams that outsiders fill (jobs through submit keys, events through VOD's
// callback, dead letters through bad jobs) have byte limits, also when a
// stream made by an older vodpipe is opened: a full jobs stream refuses new
// jobs and keeps the old; a full events stream drops its oldest events.
func TestSecurityStreamsHaveByteLimits(t *testing.T) {
	n := testharness.StartNATS(t)
	js, ctx := n.JetStream(t), t.Context()
	// The jobs stream as vodpipe made it before: no byte limit, old messages dropped.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: queue.JobsStream, Subjects: []string{"vodpipe.jobs.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Discard: jetstream.DiscardOld}); err != nil {
		t.Fatal(err)
	}
	const limit = 32 << 10
	q, err := queue.Open(ctx, js, queue.Config{JobsMaxBytes: limit, EventsMaxBytes: limit, DLQMaxBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		stream  string
		discard jetstream.DiscardPolicy
	}{{queue.JobsStream, jetstream.DiscardNew}, {queue.EventsStream, jetstream.DiscardOld}, {queue.DLQStream, jetstream.DiscardOld}} {
		s, err := js.Stream(ctx, tc.stream)
		if err != nil {
			t.Fatal(err)
		}
		if c := s.CachedInfo().Config; c.MaxBytes != limit || c.Discard != tc.discard {
			t.Errorf("%s: MaxBytes %d, discard %v; want %d, %v", tc.stream, c.MaxBytes, c.Discard, limit, tc.discard)
		}
	}

	accepted := 0
	for i := range 1000 {
		j := newJob(fmt.Sprintf("flood-%04d", i))
		j.Source = "https://cdn.example.com/" + strings.Repeat("x", 400) + ".mp4"
		if _, err := q.Jobs.Publish(ctx, j); err != nil {
			break
		}
		accepted++
	}
	if accepted == 0 || accepted == 1000 {
		t.Fatalf("%d of 1000 jobs accepted into %d bytes: want some, then refusals", accepted, limit)
	}
	jobs, _ := js.Stream(ctx, queue.JobsStream)
	if info, err := jobs.Info(ctx); err != nil || info.State.FirstSeq != 1 || info.State.Msgs != uint64(accepted) {
		t.Fatalf("jobs stream %+v, %v: want the %d accepted jobs kept from the first", info.State, err, accepted)
	}

	for i := range 300 {
		ev, err := job.NewEvent(job.EventVODFileUpload, fmt.Sprintf("job-%d", i), map[string]string{"pad": strings.Repeat("y", 400)})
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Events.Publish(ctx, ev); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	events, _ := js.Stream(ctx, queue.EventsStream)
	if info, err := events.Info(ctx); err != nil || info.State.Bytes > limit || info.State.FirstSeq == 1 {
		t.Fatalf("events stream %+v, %v: want at most %d bytes, the oldest dropped", info.State, err, limit)
	}
}
