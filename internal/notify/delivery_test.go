package notify_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/internal/notify/intake"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

func TestWebhookFailingFirstAttemptsGetsEventAfterwards(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	h := newHub(t)
	r := h.receiver("flaky")
	r.answer = func(_ *http.Request, _ delivery, n int) int {
		if n <= 3 {
			return []int{500, 503, 429}[n-1]
		}
		return 200
	}
	sub := in.subscribe(t, h.url(r), []string{"job.completed"}, "")
	r.setSecret(sub.Secret)

	e.publish(job.EventStarted, "j1", nil) // not asked for
	ev := e.publish(job.EventCompleted, "j1", job.CompletedData{FileID: "f1", MediaURL: "http://m/1.mp4"})
	testharness.WaitFor(t, 10*time.Second, "the delivery after 3 failures", func() bool { return len(r.received()) == 1 })

	if got := r.received()[0]; got.ID != ev.ID || got.Ev.Type != job.EventCompleted || got.Ev.JobID != "j1" {
		t.Fatalf("received %+v", got.Ev)
	}
	if n := r.requests(ev.ID); n != 4 {
		t.Fatalf("%d requests for the event, want 4 (3 failed + 1)", n)
	}
	var atts []fanout.Attempt
	testharness.WaitFor(t, 5*time.Second, "4 attempt records", func() bool { atts = in.attempts(t, sub.ID); return len(atts) == 4 })
	wantOutcomes := []string{fanout.OutcomeDelivered, fanout.OutcomeRetry, fanout.OutcomeRetry, fanout.OutcomeRetry} // newest first
	wantStatus := []int{200, 429, 503, 500}
	for i, a := range atts {
		if a.EventID != ev.ID || a.Outcome != wantOutcomes[i] || a.Status != wantStatus[i] || a.Attempt != 4-i {
			t.Errorf("attempt %d = %+v, want outcome %s status %d attempt %d", i, a, wantOutcomes[i], wantStatus[i], 4-i)
		}
		if a.Outcome == fanout.OutcomeRetry && a.NextAttemptAt == nil {
			t.Errorf("attempt %d has no nextAttemptAt", i)
		}
	}
	// The filters of ?eventId= and ?outcome= apply.
	var only struct{ Attempts []fanout.Attempt }
	in.call(t, http.MethodGet, "/v1/subscriptions/"+sub.ID+"/attempts?outcome=delivered&limit=5", nil, &only)
	if len(only.Attempts) != 1 || only.Attempts[0].Status != 200 {
		t.Fatalf("delivered attempts = %+v", only.Attempts)
	}
	// A success resets nothing it need not, and the metrics say what happened.
	metrics := scrape(t, in)
	for _, want := range []string{
		`vodpipe_notify_deliveries_total{outcome="delivered"} 1`,
		`vodpipe_notify_deliveries_total{outcome="retry"} 3`,
		`vodpipe_notify_delivery_attempt_seconds_count 4`,
		`vodpipe_notify_subscription_backlog{subscription="` + sub.ID + `"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// delivered reads an instance's count of successful deliveries.
func delivered(t testing.TB, in *instance) int {
	t.Helper()
	for line := range strings.SplitSeq(scrape(t, in), "\n") {
		if v, ok := strings.CutPrefix(line, `vodpipe_notify_deliveries_total{outcome="delivered"} `); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	return 0
}

// waitMetrics waits until the instance's metrics hold every wanted text:
// a count that follows the work it counts (an event published, then
// counted) is waited for rather than read once.
func waitMetrics(t testing.TB, in *instance, wants ...string) {
	t.Helper()
	for _, want := range wants {
		testharness.WaitFor(t, 5*time.Second, "metric "+strings.TrimSpace(want), func() bool { return strings.Contains(scrape(t, in), want) })
	}
}

func scrape(t testing.TB, in *instance) string {
	t.Helper()
	resp, err := http.Get(in.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestWebhookGoneDisablesSubscriptionUntilEnabled(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	h := newHub(t)
	gone := h.receiver("gone")
	var isGone atomic.Bool
	isGone.Store(true)
	gone.answer = func(*http.Request, delivery, int) int {
		if isGone.Load() {
			return http.StatusGone
		}
		return 200
	}
	watcher := h.receiver("watcher")
	sub := in.subscribe(t, h.url(gone), []string{"job.*"}, "")
	gone.setSecret(sub.Secret)
	w := in.subscribe(t, h.url(watcher), []string{"subscription.*"}, "")
	watcher.setSecret(w.Secret)

	first := e.publish(job.EventQueued, "j1", nil)
	testharness.WaitFor(t, 10*time.Second, "the subscription to be disabled", func() bool { return in.subscription(t, sub.ID).Status == fanout.StatusDisabled })
	if s := in.subscription(t, sub.ID); s.DisabledReason != fanout.DisabledGone || s.DisabledAt == nil {
		t.Fatalf("subscription = %+v", s)
	}
	if n := gone.requests(first.ID); n != 1 {
		t.Fatalf("410 was retried: %d requests", n)
	}
	testharness.WaitFor(t, 10*time.Second, "subscription.disabled at the watcher", func() bool { return len(watcher.received()) == 1 })
	d := watcher.received()[0].Ev
	if d.Type != fanout.EventSubscriptionDisabled || !strings.Contains(string(d.Data), sub.ID) || strings.Contains(string(d.Data), h.srv.URL) {
		t.Fatalf("disabled event = %s %s", d.Type, d.Data)
	}

	// Disabled: events wait in its consumer. Enabled again, they arrive.
	second := e.publish(job.EventStarted, "j1", nil)
	time.Sleep(200 * time.Millisecond) // a disabled subscription must not be called; give it the chance to be wrong
	if n := gone.requests(second.ID); n != 0 {
		t.Fatalf("disabled subscription was called %d times", n)
	}
	isGone.Store(false)
	var s fanout.Subscription
	if code := in.call(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/enable", nil, &s); code != http.StatusOK || s.Status != fanout.StatusActive {
		t.Fatalf("enable: %d %+v", code, s)
	}
	testharness.WaitFor(t, 10*time.Second, "the event published while disabled", func() bool { return gone.receivedIDs()[second.ID] == 1 })
}

// TestExhaustedEventIsTerminated: an event whose last attempt failed is
// terminated at the server (not left in flight to come back past its
// attempts and be counted again), and is attempted no more.
func TestExhaustedEventIsTerminated(t *testing.T) {
	e, in, down, sub := failingSubscription(t, 100)

	ev := e.publish(job.EventQueued, "j1", nil)
	testharness.WaitFor(t, 10*time.Second, "the event to exhaust", func() bool { return in.subscription(t, sub.ID).ConsecutiveFailures == 1 })
	js, err := jetstream.New(e.nats.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(t.Context(), queue.EventsStream, "notify_"+sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 5*time.Second, "the consumer to hold nothing in flight", func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
	// A term the server did not take would bring the event back after the
	// ack wait (30 s); a later event is delivered past it meanwhile.
	down.mu.Lock() // the handler reads it under the lock
	down.answer = func(*http.Request, delivery, int) int { return http.StatusOK }
	down.mu.Unlock()
	next := e.publish(job.EventQueued, "j2", nil)
	testharness.WaitFor(t, 10*time.Second, "the next event delivered", func() bool { return down.requests(next.ID) == 1 })
	if n := down.requests(ev.ID); n != 2 {
		t.Fatalf("exhausted event: %d requests, want 2", n)
	}
}

// failingSubscription is a notify instance with one retry per event and a
// subscription for every event at an endpoint answering 502, disabled after
// disableAfter exhausted events.
func failingSubscription(t *testing.T, disableAfter int) (*env, *instance, *receiver, fanout.Subscription) {
	t.Helper()
	e := newEnv(t, func(c *notify.Config) {
		c.WebhookSchedule = fanout.Schedule{10 * time.Millisecond}
		c.WebhookDisableAfter = disableAfter
	})
	in := e.start()
	h := newHub(t)
	down := h.receiver("down")
	down.answer = func(*http.Request, delivery, int) int { return http.StatusBadGateway }
	sub := in.subscribe(t, h.url(down), []string{"*"}, "")
	down.setSecret(sub.Secret)
	return e, in, down, sub
}

func TestWebhookRepeatedFailureDisablesSubscription(t *testing.T) {
	e, in, down, sub := failingSubscription(t, 2)

	a := e.publish(job.EventQueued, "j1", nil)
	testharness.WaitFor(t, 10*time.Second, "the first event to exhaust", func() bool { return in.subscription(t, sub.ID).ConsecutiveFailures == 1 })
	if s := in.subscription(t, sub.ID); s.Status != fanout.StatusActive {
		t.Fatalf("disabled after one exhausted event: %+v", s)
	}
	b := e.publish(job.EventQueued, "j2", nil)
	testharness.WaitFor(t, 10*time.Second, "the subscription to be disabled", func() bool { return in.subscription(t, sub.ID).Status == fanout.StatusDisabled })
	if s := in.subscription(t, sub.ID); s.DisabledReason != fanout.DisabledFailing {
		t.Fatalf("subscription = %+v", s)
	}
	for _, ev := range []*job.Event{a, b} {
		if n := down.requests(ev.ID); n != 2 {
			t.Errorf("event %s: %d requests, want 2 (the schedule has one retry)", ev.ID, n)
		}
	}
	var disabled []job.Event
	testharness.WaitFor(t, 5*time.Second, "subscription.disabled on the stream", func() bool {
		disabled = e.eventsOf(fanout.EventSubscriptionDisabled)
		return len(disabled) == 1
	})
	if !strings.Contains(string(disabled[0].Data), `"reason":"failing"`) || !strings.Contains(string(disabled[0].Data), `"lastStatus":502`) {
		t.Fatalf("disabled data = %s", disabled[0].Data)
	}
	atts := in.attempts(t, sub.ID)
	exhausted := 0
	for _, at := range atts {
		if at.Outcome == fanout.OutcomeExhausted {
			exhausted++
		}
	}
	if len(atts) != 4 || exhausted != 2 {
		t.Fatalf("attempts = %+v", atts)
	}
}

// TestWebhookInstanceStoppedMidDeliveryLosesNothing stops a notify instance
// while its delivery is in flight; a new instance delivers everything, the
// interrupted event with the same webhook-id.
func TestWebhookInstanceStoppedMidDeliveryLosesNothing(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) { c.WebhookTimeout = 20 * time.Second })
	first := e.start()
	h := newHub(t)
	r := h.receiver("slow")
	inFlight := make(chan string, 1)
	var blocked atomic.Bool
	r.answer = func(req *http.Request, d delivery, _ int) int {
		if blocked.CompareAndSwap(false, true) {
			inFlight <- d.ID
			<-req.Context().Done() // hangs until the instance gives up on it
			return http.StatusServiceUnavailable
		}
		return 200
	}
	sub := first.subscribe(t, h.url(r), []string{"job.*"}, "")
	r.setSecret(sub.Secret)

	var want []string
	for i := range 5 {
		want = append(want, e.publish(job.EventProgress, "j1", job.ProgressData{BytesDone: int64(i)}).ID)
	}
	var interrupted string
	select {
	case interrupted = <-inFlight:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery started")
	}
	stopped := time.Now()
	first.stop()
	more := e.publish(job.EventCompleted, "j1", job.CompletedData{FileID: "f"}) // while no notify runs
	want = append(want, more.ID)

	second := e.start()
	// Handed back at shutdown, not left to its 30 s ack deadline (20 s webhook
	// timeout + 10 s): 20 s leaves a slow machine room to start the second
	// notify and still tells the two apart.
	testharness.WaitFor(t, 20*time.Second, "every event at the receiver", func() bool { return len(r.receivedIDs()) == len(want) })
	if d := time.Since(stopped); d > 20*time.Second {
		t.Errorf("redelivery took %s", d)
	}
	got := r.receivedIDs()
	for _, id := range want {
		if got[id] == 0 {
			t.Errorf("event %s never delivered", id)
		}
	}
	if got[interrupted] != 1 {
		t.Errorf("interrupted event %s delivered %d times after the restart", interrupted, got[interrupted])
	}
	if s := second.subscription(t, sub.ID); s.Status != fanout.StatusActive {
		t.Fatalf("subscription = %+v", s)
	}
}

func TestWebhookReplayResendsTimeRange(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	h := newHub(t)
	r := h.receiver("replayed")
	sub := in.subscribe(t, h.url(r), []string{"job.completed", "job.failed"}, "")
	r.setSecret(sub.Secret)

	a := e.publish(job.EventCompleted, "a", job.CompletedData{FileID: "fa"})
	time.Sleep(20 * time.Millisecond) // stream timestamps must differ around the range's bounds
	since := time.Now()
	time.Sleep(20 * time.Millisecond)
	b := e.publish(job.EventFailed, "b", nil)
	e.publish(job.EventStarted, "b", nil) // not asked for
	time.Sleep(20 * time.Millisecond)
	until := time.Now()
	time.Sleep(20 * time.Millisecond)
	c := e.publish(job.EventCompleted, "c", job.CompletedData{FileID: "fc"})
	testharness.WaitFor(t, 10*time.Second, "the live deliveries", func() bool { return len(r.received()) == 3 })

	var rp fanout.Replay // with Pending, set in the answer that starts one
	if code := in.call(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/replay", map[string]any{"since": since, "until": until}, &rp); code != http.StatusAccepted {
		t.Fatalf("replay: %d", code)
	}
	testharness.WaitFor(t, 10*time.Second, "the replay to finish", func() bool { return len(in.subscription(t, sub.ID).Replays) == 0 })
	got := r.receivedIDs()
	if got[a.ID] != 1 || got[b.ID] != 2 || got[c.ID] != 1 {
		t.Fatalf("deliveries per event: a %d, b %d, c %d; want 1, 2, 1", got[a.ID], got[b.ID], got[c.ID])
	}

	// Without until, everything since then is sent again, same ids.
	if code := in.call(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/replay", map[string]any{"since": since}, &rp); code != http.StatusAccepted || rp.Pending < 2 {
		t.Fatalf("replay: %d, pending %d", code, rp.Pending)
	}
	testharness.WaitFor(t, 10*time.Second, "the second replay", func() bool { g := r.receivedIDs(); return g[b.ID] == 3 && g[c.ID] == 2 })
	testharness.WaitFor(t, 10*time.Second, "the second replay to finish", func() bool { return len(in.subscription(t, sub.ID).Replays) == 0 })
	atts := in.attempts(t, sub.ID)
	replayed := 0
	for _, at := range atts {
		if at.ReplayID != "" {
			replayed++
		}
	}
	if replayed != 3 {
		t.Fatalf("%d replayed attempts recorded, want 3", replayed)
	}
}

// TestWebhookFanoutFiftySubscribers gives 50 subscribers different filters;
// each must get exactly the events it asked for.
func TestWebhookFanoutFiftySubscribers(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) { c.WebhookConcurrency = 4 })
	in := e.start()
	replica := e.start() // shares the consumers: together they deliver each event once
	h := newHub(t)
	jobs := []string{"alpha", "beta", "gamma.1", "gamma_1"} // the last two share a subject token
	filters := [][]string{{"*"}, {"job.*"}, {"vod.*"}, {"job.completed"}, {"job.failed", "job.canceled"},
		{"job.progress", "job.*"}, {"vod.file_uploaded", "job.completed"}, {"job.queued", "job.started", "job.paused", "job.resumed"},
		{"subscription.disabled"}, {"vod.procedure_changed"}}
	type sub struct {
		r     *receiver
		types []string
		jobID string
	}
	var subs []sub
	for i := range 50 {
		s := sub{r: h.receiver(fmt.Sprintf("s%d", i)), types: filters[i%len(filters)]}
		if i%3 == 1 {
			s.jobID = jobs[i%len(jobs)]
		}
		created := in.subscribe(t, h.url(s.r), s.types, s.jobID)
		s.r.setSecret(created.Secret)
		subs = append(subs, s)
	}
	var published []*job.Event
	for _, j := range jobs {
		for _, typ := range []string{job.EventQueued, job.EventStarted, job.EventProgress, job.EventCompleted, job.EventFailed, job.EventVODFileUpload} {
			published = append(published, e.publish(typ, j, nil))
		}
	}
	published = append(published, e.publish(job.EventVODFileUpload, "", job.FileUploadedData{FileID: "orphan"}),
		e.publish(job.EventVODProcedure, "alpha", intake.ProcedureChangedData{TaskID: "t1", Event: json.RawMessage(`{}`)}))

	expected := func(s sub) map[string]bool {
		out := map[string]bool{}
		for _, ev := range published {
			if slices.ContainsFunc(s.types, func(p string) bool {
				return p == "*" || p == ev.Type || strings.HasSuffix(p, ".*") && strings.HasPrefix(ev.Type, strings.TrimSuffix(p, "*"))
			}) && (s.jobID == "" || s.jobID == ev.JobID) {
				out[ev.ID] = true
			}
		}
		return out
	}
	total := 0
	for _, s := range subs {
		total += len(expected(s))
	}
	testharness.WaitFor(t, 30*time.Second, fmt.Sprintf("%d deliveries", total), func() bool {
		n := 0
		for _, s := range subs {
			n += len(s.r.receivedIDs())
		}
		return n >= total
	})
	time.Sleep(100 * time.Millisecond) // room for a wrong extra delivery to show
	a, b := delivered(t, in), delivered(t, replica)
	if a == 0 || b == 0 || a+b < total {
		t.Errorf("replicas delivered %d and %d events, want a share each and %d together", a, b, total)
	}
	for i, s := range subs {
		want, got := expected(s), s.r.receivedIDs()
		for id := range want {
			if got[id] == 0 {
				t.Errorf("subscriber %d (%v, job %q): missing %s", i, s.types, s.jobID, id)
			}
		}
		for id := range got {
			if !want[id] {
				t.Errorf("subscriber %d (%v, job %q): unexpected %s", i, s.types, s.jobID, id)
			}
		}
	}
}

// A notify instance that dies mid-delivery (its NATS connection gone, so it
// can neither ack nor hand anything back, as in a SIGKILL) loses nothing: its
// deliveries come back after their ack deadline to the next instance.
func TestWebhookInstanceKilledMidDeliveryLosesNothing(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) { c.WebhookTimeout = time.Second })
	first := e.start()
	h := newHub(t)
	r := h.receiver("killed")
	inFlight := make(chan string, 1)
	var blocked atomic.Bool
	r.answer = func(req *http.Request, d delivery, _ int) int {
		if blocked.CompareAndSwap(false, true) {
			inFlight <- d.ID
			<-req.Context().Done()
			return http.StatusServiceUnavailable
		}
		return 200
	}
	sub := first.subscribe(t, h.url(r), []string{"job.*"}, "")
	r.setSecret(sub.Secret)
	var want []string
	for i := range 4 {
		want = append(want, e.publish(job.EventProgress, "k1", job.ProgressData{BytesDone: int64(i)}).ID)
	}
	var interrupted string
	select {
	case interrupted = <-inFlight:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery started")
	}
	first.svc.Close() // the crash: the connection drops first, nothing can be acked or handed back
	first.stop()
	second := e.start()
	testharness.WaitFor(t, 20*time.Second, "every event at the receiver", func() bool {
		got := r.receivedIDs()
		for _, id := range want {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	if got := r.receivedIDs(); got[interrupted] == 0 {
		t.Fatalf("interrupted event %s lost", interrupted)
	}
	if s := second.subscription(t, sub.ID); s.Status != fanout.StatusActive {
		t.Fatalf("subscription = %+v", s)
	}
}

// TestWebhookLastAttemptKilledIsCountedExhausted: the instance making an
// event's last attempt stops mid-request. The event is delivered once more
// (the subscription's consumer never gives up on it) and the next instance
// records it as exhausted and counts the failure, without another request:
// the event is not dropped without a record.
func TestWebhookLastAttemptKilledIsCountedExhausted(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) {
		c.WebhookTimeout = time.Second
		c.WebhookSchedule = fanout.Schedule{10 * time.Millisecond} // 2 attempts
	})
	first := e.start()
	h := newHub(t)
	r := h.receiver("dying")
	lastStarted := make(chan struct{}, 1)
	r.answer = func(req *http.Request, _ delivery, n int) int {
		if n == 1 {
			return http.StatusBadGateway
		}
		lastStarted <- struct{}{}
		<-req.Context().Done() // the instance dies during the last attempt
		return http.StatusServiceUnavailable
	}
	sub := first.subscribe(t, h.url(r), []string{"job.*"}, "")
	r.setSecret(sub.Secret)
	ev := e.publish(job.EventQueued, "k1", nil)
	select {
	case <-lastStarted:
	case <-time.After(10 * time.Second):
		t.Fatal("the last attempt did not start")
	}
	first.svc.Close() // the instance stops mid-attempt: handed back or not, the attempt has no outcome
	first.stop()
	second := e.start()
	testharness.WaitFor(t, 20*time.Second, "the event counted as exhausted", func() bool {
		return second.subscription(t, sub.ID).ConsecutiveFailures == 1
	})
	if n := r.requests(ev.ID); n != 2 {
		t.Fatalf("requests = %d, want 2 (no attempt past the schedule)", n)
	}
	atts := second.attempts(t, sub.ID) // newest first
	if len(atts) != 2 {
		t.Fatalf("attempts = %+v, want the first one's retry and the exhaustion", atts)
	}
	if last := atts[0]; last.Outcome != fanout.OutcomeExhausted || last.EventID != ev.ID || last.Error == "" {
		t.Fatalf("last attempt = %+v", last)
	}
}

// TestWebhookLastAttemptFinishesThroughAGracefulStop: an instance stopping
// gracefully during an event's last attempt lets it finish (within the
// webhook timeout) and records its outcome, instead of handing back an event
// that would come back with no attempt left. The receiver is slow: it
// answers a second after the stop began.
func TestWebhookLastAttemptFinishesThroughAGracefulStop(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) {
		c.WebhookTimeout = 5 * time.Second
		c.WebhookSchedule = fanout.Schedule{10 * time.Millisecond} // 2 attempts
	})
	first := e.start()
	h := newHub(t)
	r := h.receiver("slow")
	lastStarted := make(chan struct{}, 1)
	r.answer = func(req *http.Request, _ delivery, n int) int {
		if n == 1 {
			return http.StatusBadGateway
		}
		lastStarted <- struct{}{}
		select {
		case <-req.Context().Done(): // notify gave the attempt up
			return http.StatusServiceUnavailable
		case <-time.After(time.Second): // a slow endpoint
			return http.StatusNoContent
		}
	}
	sub := first.subscribe(t, h.url(r), []string{"job.*"}, "")
	r.setSecret(sub.Secret)
	ev := e.publish(job.EventQueued, "g1", nil)
	select {
	case <-lastStarted:
	case <-time.After(10 * time.Second):
		t.Fatal("the last attempt did not start")
	}
	first.stop() // graceful: returns once the instance has stopped
	second := e.start()
	atts := second.attempts(t, sub.ID) // newest first
	if len(atts) != 2 || atts[0].Outcome != fanout.OutcomeDelivered || atts[0].EventID != ev.ID || atts[0].Attempt != 2 {
		t.Fatalf("attempts = %+v, want the retry and then the last attempt delivered", atts)
	}
	if n := r.requests(ev.ID); n != 2 {
		t.Fatalf("requests = %d, want 2", n)
	}
	if f := second.subscription(t, sub.ID).ConsecutiveFailures; f != 0 {
		t.Fatalf("consecutive failures = %d after a delivered last attempt", f)
	}
}

// TestWebhookEventWaitingForASlotIsNotSpentByAStop: an instance takes no
// event from JetStream while every delivery slot is busy. An event handed
// over counts as a delivery: held in a buffer and handed back at a stop, it
// would come back with an attempt spent, and at its last attempt it would be
// recorded exhausted without a request. Here every attempt is the last (no
// retries), both slots are busy with a slow endpoint when the instance stops,
// and a fourth event waits: the next instance sends it.
func TestWebhookEventWaitingForASlotIsNotSpentByAStop(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) {
		c.WebhookTimeout = 5 * time.Second
		c.WebhookSchedule = fanout.Schedule{} // one attempt: each is the last
		c.WebhookConcurrency = 2
	})
	first := e.start()
	h := newHub(t)
	r := h.receiver("two-slow")
	slowStarted, release := make(chan struct{}, 2), make(chan struct{})
	r.answer = func(req *http.Request, d delivery, _ int) int {
		if d.Ev.JobID != "w1" && d.Ev.JobID != "w3" {
			return http.StatusNoContent
		}
		slowStarted <- struct{}{}
		select {
		case <-req.Context().Done():
			return http.StatusServiceUnavailable
		case <-release: // a slow endpoint, answering through the stop
			return http.StatusNoContent
		}
	}
	sub := first.subscribe(t, h.url(r), []string{"job.*"}, "")
	r.setSecret(sub.Secret)
	var evs []*job.Event
	for _, id := range []string{"w1", "w2", "w3", "w4"} {
		evs = append(evs, e.publish(job.EventQueued, id, nil))
	}
	for range 2 {
		select {
		case <-slowStarted:
		case <-time.After(10 * time.Second):
			t.Fatal("the slow deliveries did not start")
		}
	}
	cons, err := e.nats.JetStream(t).Consumer(t.Context(), queue.EventsStream, "notify_"+sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	// w1 and w3 hold both slots, w2 is done: w4 waits in the consumer, with
	// no pull open for it.
	testharness.WaitFor(t, 5*time.Second, "the fourth event left in the consumer, no pull waiting", func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.NumPending == 1 && info.NumWaiting == 0 && info.NumAckPending == 2
	})
	// The stop begins with both slots busy; the slow (last) attempts then
	// finish through it, and the stopping runner takes nothing more.
	first.cancel()
	close(release)
	first.stop()
	second := e.start()
	testharness.WaitFor(t, 10*time.Second, "the fourth event delivered", func() bool { return r.requests(evs[3].ID) == 1 })
	// Its attempt is recorded once the receiver has answered.
	var atts []fanout.Attempt
	testharness.WaitFor(t, 10*time.Second, "the fourth event's attempt recorded", func() bool {
		atts = second.attempts(t, sub.ID)
		return len(atts) >= len(evs)
	})
	if len(atts) != len(evs) {
		t.Fatalf("attempts = %+v, want one per event", atts)
	}
	for _, at := range atts {
		if at.Outcome != fanout.OutcomeDelivered || at.Attempt != 1 {
			t.Fatalf("attempts = %+v, want each event delivered at its first and only attempt", atts)
		}
	}
	for _, ev := range evs {
		if n := r.requests(ev.ID); n != 1 {
			t.Fatalf("requests of %s = %d, want 1", ev.JobID, n)
		}
	}
	if f := second.subscription(t, sub.ID).ConsecutiveFailures; f != 0 {
		t.Fatalf("consecutive failures = %d", f)
	}
}

// TestWebhookReplayOfOneEvent: an attempt names its event's sequence, and a
// replay of that sequence re-sends that event alone (same webhook-id), is
// recorded as a replayed attempt, and ends; a sequence of no event the
// subscription takes is refused.
func TestWebhookReplayOfOneEvent(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	h := newHub(t)
	r := h.receiver("one")
	sub := in.subscribe(t, h.url(r), []string{"job.completed"}, "")
	r.setSecret(sub.Secret)
	a := e.publish(job.EventCompleted, "a", job.CompletedData{FileID: "fa"})
	other := e.publish(job.EventStarted, "a", nil) // not the subscription's
	b := e.publish(job.EventCompleted, "b", job.CompletedData{FileID: "fb"})
	testharness.WaitFor(t, 10*time.Second, "the live deliveries", func() bool { return len(r.received()) == 2 })
	// The attempt is recorded once the answer is in: it may trail the delivery.
	var seqA uint64
	testharness.WaitFor(t, 10*time.Second, "the attempt of event a, naming its eventSeq", func() bool {
		for _, at := range in.attempts(t, sub.ID) {
			if at.EventID == a.ID {
				seqA = at.EventSeq
			}
		}
		return seqA != 0
	})
	var rp fanout.Replay
	if code := in.call(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/replay", map[string]any{"eventSeq": seqA}, &rp); code != http.StatusAccepted ||
		rp.EventSeq != seqA || rp.JobID != "a" {
		t.Fatalf("replay of one event: %d %+v", code, rp)
	}
	testharness.WaitFor(t, 10*time.Second, "the replay to finish", func() bool { return len(in.subscription(t, sub.ID).Replays) == 0 })
	got := r.receivedIDs()
	if got[a.ID] != 2 || got[b.ID] != 1 {
		t.Fatalf("deliveries: a %d, b %d; want 2 and 1", got[a.ID], got[b.ID])
	}
	replayed := 0
	for _, at := range in.attempts(t, sub.ID) {
		if at.ReplayID == rp.ID {
			replayed++
			if at.EventID != a.ID || at.EventSeq != seqA {
				t.Fatalf("replayed attempt of %s (%d)", at.EventID, at.EventSeq)
			}
		}
	}
	if replayed != 1 {
		t.Fatalf("%d attempts of the replay, want 1", replayed)
	}
	// The event after a in the stream is job.started of a (published right
	// after it), which the subscription does not take.
	if evs := e.events(); len(evs) < 2 || evs[0].ID != a.ID || evs[1].ID != other.ID {
		t.Fatalf("the stream does not hold job.started of a after a: %v", evs)
	}
	for _, body := range []map[string]any{{"eventSeq": seqA + 1}, {"eventSeq": 999999}, {"eventSeq": seqA, "since": time.Now()}} {
		if code := in.call(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/replay", body, nil); code != http.StatusBadRequest {
			t.Errorf("replay %v: %d, want 400", body, code)
		}
	}
}

// TestWebhookDisableHoldsDeliveriesUntilEnabled: a disabled subscription
// is sent nothing, with the reason naming the key; enabled again, it gets
// what was published meanwhile. A read key may not disable.
func TestWebhookDisableHoldsDeliveriesUntilEnabled(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	h := newHub(t)
	r := h.receiver("paused")
	sub := in.subscribe(t, h.url(r), []string{"job.completed"}, "")
	r.setSecret(sub.Secret)
	if code := in.callWith(t, "read-only-key-0000", http.MethodPost, "/v1/subscriptions/"+sub.ID+"/disable", nil, nil); code != http.StatusForbidden {
		t.Fatalf("disable with a read key: %d", code)
	}
	var s fanout.Subscription
	if code := in.call(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/disable", nil, &s); code != http.StatusOK ||
		s.Status != fanout.StatusDisabled || !strings.HasPrefix(s.DisabledReason, "disabled by ") {
		t.Fatalf("disable: %d %+v", code, s)
	}
	// Its event says "operator", one of the schema's reasons, and names
	// no key: it may go to outside receivers.
	var disabled []job.Event
	testharness.WaitFor(t, 10*time.Second, "subscription.disabled", func() bool {
		disabled = e.eventsOf(fanout.EventSubscriptionDisabled)
		return len(disabled) > 0
	})
	var dd fanout.SubscriptionDisabledData
	if err := json.Unmarshal(disabled[0].Data, &dd); err != nil || dd.Reason != fanout.DisabledOperator {
		t.Fatalf("subscription.disabled data %s (%v), want reason %q", disabled[0].Data, err, fanout.DisabledOperator)
	}
	ev := e.publish(job.EventCompleted, "held", job.CompletedData{FileID: "f"})
	// Delivered elsewhere: a second subscription proves the event went out
	// while the disabled one got nothing.
	r2 := h.receiver("witness")
	sub2 := in.subscribe(t, h.url(r2), []string{"job.completed"}, "")
	r2.setSecret(sub2.Secret)
	if code := in.call(t, http.MethodPost, "/v1/subscriptions/"+sub2.ID+"/replay", map[string]any{"since": time.Now().Add(-time.Minute)}, nil); code != http.StatusAccepted {
		t.Fatalf("witness replay: %d", code)
	}
	testharness.WaitFor(t, 10*time.Second, "the witness to get the event", func() bool { return r2.receivedIDs()[ev.ID] > 0 })
	if n := r.receivedIDs()[ev.ID]; n != 0 {
		t.Fatalf("the disabled subscription got the event %d times", n)
	}
	if code := in.call(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/enable", nil, &s); code != http.StatusOK || s.Status != fanout.StatusActive {
		t.Fatalf("enable: %d %+v", code, s)
	}
	testharness.WaitFor(t, 10*time.Second, "the held event after enabling", func() bool { return r.receivedIDs()[ev.ID] == 1 })
}

// TestARefusedSubscriptionWriteDoesNotStopDeliveries: two replicas
// changing one subscription at once both write at the revision they read,
// and JetStream stores one. The other is refused, yet it reaches the
// bucket's subscribers as published; the dispatchers follow the bucket's
// RePublish (stored writes only), so a refused "disabled" record with a
// newer version does not stop the subscription's deliveries.
func TestARefusedSubscriptionWriteDoesNotStopDeliveries(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	h := newHub(t)
	r := h.receiver("kept")
	sub := in.subscribe(t, h.url(r), []string{"job.completed"}, "")
	r.setSecret(sub.Secret)
	e.refusedDisable(t, sub.ID)
	ev := e.publish(job.EventCompleted, "kept", job.CompletedData{FileID: "f"})
	testharness.WaitFor(t, 10*time.Second, "the event at the subscription the refused write would have disabled",
		func() bool { return r.receivedIDs()[ev.ID] == 1 })
}

// Replays asked for at once are held to maxReplays (4) running: each
// request checked the count before any had recorded its replay.
func TestConcurrentReplaysKeepToTheBound(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	h := newHub(t)
	r := h.receiver("replays")
	sub := in.subscribe(t, h.url(r), []string{"job.completed"}, "")
	r.setSecret(sub.Secret)
	e.publish(job.EventCompleted, "old", job.CompletedData{FileID: "f"})
	const asks = 12
	codes := make(chan int, asks)
	var wg sync.WaitGroup
	for range asks {
		wg.Go(func() {
			codes <- in.call(t, http.MethodPost, "/v1/subscriptions/"+sub.ID+"/replay", map[string]any{"since": time.Now().Add(-time.Hour)}, nil)
		})
	}
	wg.Wait()
	close(codes)
	accepted, other := 0, map[int]int{}
	for c := range codes {
		switch c {
		case http.StatusAccepted:
			accepted++
		case http.StatusConflict:
		default:
			other[c]++ // a busy machine's timeout is not what this counts
		}
	}
	if accepted > 4 || accepted == 0 {
		t.Fatalf("%d replays accepted at once (others answered %v), want 1 to 4", accepted, other)
	}
}
