package notify_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// serveOldLayout answers layout requests as ingest 0.9's broker did: it
// refuses any RePublish and carries out the rest.
func serveOldLayout(t *testing.T, js jetstream.JetStream) *nats.Subscription {
	t.Helper()
	sub, err := js.Conn().QueueSubscribe(queue.LayoutSubject, "vodpipe-layout", func(m *nats.Msg) {
		var r struct {
			Consumer *jetstream.ConsumerConfig `json:"consumer"`
			Stream   *jetstream.StreamConfig   `json:"stream"`
			Bucket   *jetstream.KeyValueConfig `json:"bucket"`
		}
		var resp struct {
			Name  string `json:"name,omitempty"`
			Error string `json:"error,omitempty"`
		}
		err := json.Unmarshal(m.Data, &r)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		switch {
		case err != nil:
		case r.Bucket != nil && r.Bucket.RePublish != nil:
			resp.Error = "queue: layout request refused: no mirror, sources or republish"
		case r.Bucket != nil:
			_, err = js.CreateOrUpdateKeyValue(ctx, *r.Bucket)
		case r.Stream != nil:
			_, err = js.CreateOrUpdateStream(ctx, *r.Stream)
		case r.Consumer != nil:
			var c jetstream.Consumer
			if c, err = js.CreateOrUpdateConsumer(ctx, queue.EventsStream, *r.Consumer); err == nil {
				resp.Name = c.CachedInfo().Name
			}
		}
		if err != nil {
			resp.Error = err.Error()
		}
		b, _ := json.Marshal(resp)
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// TestNotifyAsksIngestAgainForTheRePublish: a notify of 0.10 started while
// an ingest of 0.9 serves the layout (an upgrade under way) has its
// subscriptions bucket made without the RePublish, and delivers all the
// same. Once an upgraded ingest serves, notify's next ask makes the
// RePublish, without a restart, and the dispatchers follow it: a write
// JetStream refused no longer reaches them.
func TestNotifyAsksIngestAgainForTheRePublish(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) { c.RePublishRetry = 100 * time.Millisecond })
	js := e.nats.JetStream(t)
	if err := e.broker.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	old := serveOldLayout(t, js)
	in := e.start()
	ctx := t.Context()
	rePublish := func() *jetstream.RePublish {
		st, err := js.Stream(ctx, "KV_"+fanout.SubscriptionsBucket)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config.RePublish
	}
	if rp := rePublish(); rp != nil {
		t.Fatalf("the old broker made a RePublish %+v", rp)
	}
	h := newHub(t)
	before := h.receiver("before")
	sub := in.subscribe(t, h.url(before), []string{"job.completed"}, "")
	before.setSecret(sub.Secret)
	ev := e.publish(job.EventCompleted, "j1", job.CompletedData{FileID: "f1"})
	testharness.WaitFor(t, 10*time.Second, "a delivery with the bucket's own writes followed",
		func() bool { return before.receivedIDs()[ev.ID] == 1 })

	// ingest upgraded.
	if err := old.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.broker, err = queue.ServeLayout(js.Conn(), js, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 10*time.Second, "the subscriptions bucket's RePublish", func() bool {
		rp := rePublish()
		return rp != nil && *rp == *queue.SubscriptionsRePublish()
	})
	testharness.WaitFor(t, 10*time.Second, "notify's log of the RePublish", func() bool {
		return strings.Contains(e.log.String(), "republishes its writes now")
	})
	// The subscription's creation is the first write republished: the
	// dispatchers follow the republishes from then on, so a write
	// JetStream refuses (a "disabled" record at an old revision) changes
	// nothing, where applied as published it would stop the deliveries.
	after := h.receiver("after")
	sub = in.subscribe(t, h.url(after), []string{"job.completed"}, "")
	after.setSecret(sub.Secret)
	e.refusedDisable(t, sub.ID)
	ev = e.publish(job.EventCompleted, "j2", job.CompletedData{FileID: "f2"})
	testharness.WaitFor(t, 10*time.Second, "a delivery despite the refused write, through the republishes",
		func() bool { return after.receivedIDs()[ev.ID] == 1 })
}
