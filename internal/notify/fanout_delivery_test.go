package notify_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// TestSubscriptionCapHoldsUnderConcurrentCreates: creates made at once all
// count the bucket below the cap (VODPIPE_WEBHOOK_MAX_SUBSCRIPTIONS); until
// 0.10 they all passed (10 of 10 with a cap of 2). Each counts again once
// its own is stored and takes it back past the cap.
func TestSubscriptionCapHoldsUnderConcurrentCreates(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) { c.WebhookMaxSubscriptions = 2 })
	in := e.start()
	h := newHub(t)
	r := h.receiver("cap")
	body, _ := json.Marshal(map[string]any{"url": h.url(r)})
	const asks = 10
	var created atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range asks {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest(http.MethodPost, in.url+"/v1/subscriptions", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated {
				created.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	var list struct{ Subscriptions []fanout.Subscription }
	in.call(t, http.MethodGet, "/v1/subscriptions", nil, &list)
	if n := len(list.Subscriptions); n > 2 || created.Load() > 2 {
		t.Fatalf("%d creates answered 201, %d subscriptions stored; the cap is 2", created.Load(), n)
	}
}

// TestAStopMidAttemptKeepsToTheSchedule: a replica that stops with a
// delivery in flight hands it back, and JetStream counts the redelivery.
// Until 0.10 the hand-back was a plain nak: the next replica sent the event
// at once as its next attempt, with no record of the one interrupted, and
// with two attempts 10 minutes apart a stop during the first had the last
// go out at once and end the event exhausted. The interrupted attempt is
// now recorded, and the next one waits out the schedule's delay.
func TestAStopMidAttemptKeepsToTheSchedule(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) {
		c.WebhookTimeout = 20 * time.Second
		c.WebhookSchedule = fanout.Schedule{10 * time.Minute}
	})
	first := e.start()
	h := newHub(t)
	r := h.receiver("restarting")
	inFlight := make(chan struct{}, 1)
	var hung atomic.Bool
	r.answer = func(req *http.Request, _ delivery, _ int) int {
		if hung.CompareAndSwap(false, true) {
			inFlight <- struct{}{}
			<-req.Context().Done()
		}
		return http.StatusServiceUnavailable
	}
	sub := first.subscribe(t, h.url(r), []string{"job.*"}, "")
	r.setSecret(sub.Secret)
	e.publish(job.EventCompleted, "j", job.CompletedData{FileID: "f"})
	select {
	case <-inFlight:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery started")
	}
	stopped := time.Now()
	first.stop()
	second := e.start()
	var atts []fanout.Attempt
	testharness.WaitFor(t, 10*time.Second, "the interrupted attempt's record", func() bool {
		atts = second.attempts(t, sub.ID)
		return len(atts) > 0
	})
	a := atts[0]
	if len(atts) != 1 || a.Attempt != 1 || a.Outcome != fanout.OutcomeRetry || !strings.Contains(a.Error, "interrupted") {
		t.Fatalf("attempts after a stop mid-attempt: %+v, want attempt 1 recorded as an interrupted retry", atts)
	}
	if a.NextAttemptAt == nil || a.NextAttemptAt.Before(stopped.Add(9*time.Minute)) {
		t.Fatalf("the next attempt at %v, want the schedule's 10 minutes (±10 %%) after the stop at %v", a.NextAttemptAt, stopped)
	}
}

// TestAttemptRecordsItsDuration: every attempt record has its durationMs
// (docs/events.md); until 0.10 it was set in a deferred function after
// `return a` had copied the result, and read 0.
func TestAttemptRecordsItsDuration(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	h := newHub(t)
	r := h.receiver("slowish")
	r.answer = func(*http.Request, delivery, int) int {
		time.Sleep(300 * time.Millisecond)
		return http.StatusNoContent
	}
	sub := in.subscribe(t, h.url(r), []string{"job.completed"}, "")
	r.setSecret(sub.Secret)
	e.publish(job.EventCompleted, "j", job.CompletedData{FileID: "f"})
	var atts []fanout.Attempt
	testharness.WaitFor(t, 10*time.Second, "the attempt record", func() bool { atts = in.attempts(t, sub.ID); return len(atts) == 1 })
	if d := atts[0].DurationMS; d < 250 {
		t.Fatalf("durationMs = %v for an answer that took 300 ms", d)
	}
}
