package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// throughputMinutes is how far back the throughput goes: one hour, a
// bucket per minute.
const throughputMinutes = 60

// backfillMax bounds the events ingest reads back at start to fill the
// last hour (per event type): beyond it the older minutes stay unknown
// (client.StatsResponse.CountedSince says from when the counts are whole).
const backfillMax = 200_000

// live is what ingest sees of the events as they are published: the
// pipeline's throughput over the last hour (always), and every event for
// the console's open streams (subscribed only while one is open).
type live struct {
	log *slog.Logger
	nc  *nats.Conn

	mu      sync.Mutex
	minutes [throughputMinutes]minuteStat // by unix minute modulo the length
	// counted is when the counts became whole: the live subscriptions'
	// start, or earlier once the backfill has read back.
	counted time.Time
	subs    []*nats.Subscription
	all     *nats.Subscription // every event, while watchers exist
	watch   map[chan []byte]struct{}
}

type minuteStat struct {
	minute            int64 // unix minute
	completed, failed uint64
	bytes             int64
}

// startLive subscribes to the jobs' outcomes and reads the last hour's back.
func startLive(ctx context.Context, nc *nats.Conn, log *slog.Logger) (*live, error) {
	l := &live{log: log, nc: nc, watch: map[chan []byte]struct{}{}}
	start := time.Now()
	for _, t := range []string{job.EventCompleted, job.EventFailed} {
		sub, err := nc.Subscribe(queue.EventFilterSubject(t, ""), func(m *nats.Msg) { l.count(m.Data, time.Now()) })
		if err != nil {
			l.close()
			return nil, fmt.Errorf("ingest: subscribe to %s events: %w", t, err)
		}
		l.subs = append(l.subs, sub)
	}
	l.counted = start
	go l.backfill(ctx, start)
	return l, nil
}

func (l *live) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.subs {
		_ = s.Unsubscribe()
	}
	if l.all != nil {
		_ = l.all.Unsubscribe()
		l.all = nil
	}
}

// backfill counts the outcomes stored in the hour before the subscriptions
// started (those after, the subscriptions count). When it reads the whole
// hour, the counts are whole from its start; cut short by backfillMax,
// the minutes after the last event it read lack some, and the counts are
// whole only from the subscriptions' start.
func (l *live) backfill(ctx context.Context, until time.Time) {
	since := until.Add(-throughputMinutes * time.Minute).Truncate(time.Minute)
	whole := true
	for _, t := range []string{job.EventCompleted, job.EventFailed} {
		n := 0
		err := queue.ScanSince(ctx, l.nc, queue.EventsStream, queue.EventFilterSubject(t, ""), since, func(m *nats.Msg) bool {
			at, err := time.Parse(time.RFC3339Nano, queue.ServerHeader(m.Header, jetstream.TimeStampHeaer))
			if err != nil {
				return true // not a stored message's header: skip it
			}
			if !at.Before(until) {
				return false
			}
			if n++; n > backfillMax {
				whole = false
				return false
			}
			l.count(m.Data, at)
			return true
		})
		if err != nil {
			if ctx.Err() == nil {
				l.log.Warn("console throughput: could not read the last hour's events back; counting from now", "err", err)
			}
			return
		}
	}
	if !whole {
		l.log.Info("console throughput: more events in the last hour than read back; counts are whole from now", "read", backfillMax)
		return
	}
	l.mu.Lock()
	l.counted = since
	l.mu.Unlock()
}

// count adds one job.completed or job.failed event at its minute.
func (l *live) count(data []byte, at time.Time) {
	var e struct {
		Type string `json:"type"`
		Data struct {
			Bytes int64 `json:"bytes"`
		} `json:"data"`
	}
	if json.Unmarshal(data, &e) != nil {
		return
	}
	m := at.Unix() / 60
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &l.minutes[m%throughputMinutes]
	if b.minute != m {
		*b = minuteStat{minute: m}
	}
	switch e.Type {
	case job.EventCompleted:
		b.completed++
		b.bytes += e.Data.Bytes
	case job.EventFailed:
		b.failed++
	}
}

// throughput is the last hour, oldest minute first (the current one last).
func (l *live) throughput(now time.Time) ([]client.ThroughputMinute, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]client.ThroughputMinute, throughputMinutes)
	cur := now.Unix() / 60
	for i := range out {
		m := cur - throughputMinutes + 1 + int64(i)
		out[i].Start = time.Unix(m*60, 0).UTC()
		if b := l.minutes[m%throughputMinutes]; b.minute == m {
			out[i].Completed, out[i].Failed, out[i].Bytes = b.completed, b.failed, b.bytes
		}
	}
	return out, l.counted.UTC()
}

// Subscribe returns a channel of every event published from now on (their
// JSON), until stop. A watcher that does not keep up misses events rather
// than holding the others back.
func (l *live) Subscribe() (<-chan []byte, func(), error) {
	ch := make(chan []byte, 512)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.all == nil {
		sub, err := l.nc.Subscribe(queue.EventsPrefix+".>", l.fanout)
		if err != nil {
			return nil, nil, fmt.Errorf("ingest: subscribe to the events: %w", err)
		}
		l.all = sub
	}
	l.watch[ch] = struct{}{}
	return ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.watch, ch)
		if len(l.watch) == 0 && l.all != nil {
			_ = l.all.Unsubscribe()
			l.all = nil
		}
	}, nil
}

func (l *live) fanout(m *nats.Msg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.watch {
		select {
		case ch <- m.Data:
		default:
		}
	}
}
