package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/redact"
	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/internal/tracing"
	"github.com/vodpipe/vodpipe/pkg/webhook"
)

// dispatcher runs the deliveries of one notify process. It watches the
// subscriptions bucket and keeps one runner per active subscription (and
// per running replay); a runner consumes the subscription's durable
// consumer, which every replica shares, so JetStream spreads the events
// over the replicas and redelivers whatever one of them did not finish.
type dispatcher struct {
	s *Fanout

	mu      sync.Mutex
	ctx     context.Context    // of run; runners derive from it
	records map[string]*record // subscription id → latest record
	orders  map[string]uint64  // subscription id → order of the latest record or deletion seen
	runners map[string]*runner // consumer name → its runner
	wg      sync.WaitGroup
	// deletions are the subscriptions whose deletion was applied, oldest
	// first. A deletion's order (the greatest) is kept deletionMemory, long
	// enough to refuse a record written before it that a replica hands in
	// late (set), then forgotten: orders does not grow with every
	// subscription ever deleted (one per job, for subscriptions of a job).
	deletions []deletion
	now       func() time.Time
}

// deletion is a subscription's deletion as the dispatcher applied it.
type deletion struct {
	id string
	at time.Time
}

// deletionMemory is how long the dispatcher remembers a deletion.
const deletionMemory = 10 * time.Minute

// runner consumes one consumer: a subscription's, or one of its replays'.
type runner struct {
	subID  string
	replay *Replay
	cancel context.CancelFunc
	done   chan struct{} // closed when the runner has stopped
}

// errStopRunner ends a runner for good: its subscription is gone or
// disabled, or its replay is over.
var errStopRunner = errors.New("notify: runner stops")

func newDispatcher(s *Fanout) *dispatcher {
	return &dispatcher{s: s, ctx: context.Background(), records: map[string]*record{}, orders: map[string]uint64{}, runners: map[string]*runner{},
		now: time.Now}
}

// run follows the subscriptions bucket until ctx ends, then stops every runner.
func (d *dispatcher) run(ctx context.Context) error {
	d.mu.Lock()
	d.ctx = ctx
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		for _, r := range d.runners {
			r.cancel()
		}
		d.mu.Unlock()
		d.wg.Wait()
	}()
	restart := retry.Restart.New()
	for ctx.Err() == nil {
		if err := d.watch(ctx); err != nil && ctx.Err() == nil {
			d.s.log.Warn("subscription watch failed, restarting", "err", err)
			retry.Sleep(ctx, restart.NextBackOff())
		}
	}
	return nil
}

// watch follows the subscriptions bucket (by subscription and batched
// reads: notify's user may create no consumer of it) until ctx ends,
// through its RePublish: a compare-and-set write JetStream refused (two
// replicas changing one subscription at once) never reaches the runners.
func (d *dispatcher) watch(ctx context.Context) error {
	return queue.Follow(ctx, d.s.nc, SubscriptionsBucket, d.apply, func() {}, queue.FollowRepublished(queue.SubscriptionChanges+"."))
}

// apply brings the runners of one subscription in line with a change of the bucket.
func (d *dispatcher) apply(e queue.KVChange) {
	var rec *record
	if !e.Deleted {
		r, err := d.s.decodeRecord(e.Key, e.Value)
		if err != nil {
			d.s.log.Warn("skipping unreadable subscription", "key", e.Key, "err", err)
			return
		}
		if r.sealErr != nil {
			d.s.log.Error("webhook signing secret does not open: not delivering", "subscription", e.Key, "err", r.sealErr)
		}
		rec = r
	}
	d.set(e.Key, rec, rec.order())
}

// set records what this process knows of a subscription (nil: deleted) at
// an order (record.order), unless it already knows a later one, and starts and stops
// runners to match. The watch calls it for every change; a replica that
// disabled a subscription calls it at once, so that its own deliveries stop
// before the watch catches up.
func (d *dispatcher) set(id string, rec *record, order uint64) {
	want := map[string]*Replay{}
	// A record whose secret does not open runs nothing: its events wait in
	// its consumer for a replica that has the key.
	if rec != nil && rec.Status == StatusActive && rec.secret != "" {
		want[consumerName(id, nil)] = nil
		for i := range rec.Replays {
			rp := rec.Replays[i]
			want[consumerName(id, &rp)] = &rp
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// An equal order is applied again: the same write seen twice changes
	// nothing, and a record rewritten by hand (its version kept) is taken.
	if order < d.orders[id] {
		return
	}
	now := d.now()
	if rec == nil && d.orders[id] != order {
		d.deletions = append(d.deletions, deletion{id: id, at: now})
	}
	d.orders[id] = order
	for len(d.deletions) > 0 && now.Sub(d.deletions[0].at) > deletionMemory {
		if gone := d.deletions[0].id; d.records[gone] == nil {
			delete(d.orders, gone)
		}
		d.deletions = d.deletions[1:]
	}
	ctx := d.ctx
	old := d.records[id]
	if rec == nil {
		delete(d.records, id)
	} else {
		d.records[id] = rec
	}
	var stopped []*runner
	for name, r := range d.runners {
		if _, ok := want[name]; !ok && r.subID == id {
			r.cancel()
			delete(d.runners, name)
			stopped = append(stopped, r)
		}
	}
	if rec == nil && old != nil {
		// Deleted: once this process's runners are gone, remove the
		// consumers too, in case a runner re-created one while the API
		// deleted them (every replica does this; it is idempotent).
		d.wg.Go(func() { d.cleanup(context.WithoutCancel(ctx), old, stopped) })
	}
	for name, rp := range want {
		if _, ok := d.runners[name]; ok {
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		r := &runner{subID: id, replay: rp, cancel: cancel, done: make(chan struct{})}
		d.runners[name] = r
		d.wg.Go(func() {
			defer close(r.done)
			defer cancel()
			d.runConsumer(rctx, r)
			d.mu.Lock()
			if d.runners[name] == r {
				delete(d.runners, name)
			}
			d.mu.Unlock()
		})
	}
}

// cleanup deletes the consumers of a deleted subscription after its runners stopped.
func (d *dispatcher) cleanup(ctx context.Context, rec *record, stopped []*runner) {
	for _, r := range stopped {
		<-r.done
	}
	names := []string{consumerName(rec.ID, nil)}
	for i := range rec.Replays {
		names = append(names, consumerName(rec.ID, &rec.Replays[i]))
	}
	for _, n := range names {
		if err := d.s.js.DeleteConsumer(ctx, queue.EventsStream, n); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			d.s.log.Warn("delete consumer of a deleted subscription", "consumer", n, "err", err)
		}
	}
}

// record returns the latest record of a subscription, nil when it is gone.
func (d *dispatcher) record(id string) *record {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.records[id]
}

// active lists the active subscriptions this process knows.
func (d *dispatcher) active() []*record {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*record, 0, len(d.records))
	for _, r := range d.records {
		if r.Status == StatusActive {
			out = append(out, r)
		}
	}
	return out
}

// runConsumer consumes until ctx ends (the subscription was disabled or
// deleted, the replay finished, or notify stops), recovering from errors.
func (d *dispatcher) runConsumer(ctx context.Context, r *runner) {
	log := d.s.log.With("subscription", r.subID)
	if r.replay != nil {
		log = log.With("replay", r.replay.ID)
	}
	restart := retry.Restart.New()
	for ctx.Err() == nil {
		rec := d.record(r.subID)
		if rec == nil {
			return
		}
		cons, err := d.consumer(ctx, rec, r.replay)
		if err == nil {
			err = d.consume(ctx, r, cons)
		}
		if ctx.Err() != nil || errors.Is(err, errStopRunner) {
			return
		}
		log.Warn("delivery loop failed, restarting", "err", err)
		retry.Sleep(ctx, restart.NextBackOff())
	}
}

// consumer finds the consumer and updates the settings a new configuration
// changed. A missing replay consumer means the replay is over. A missing
// subscription consumer is re-created from the subscription's start
// (re-sending rather than losing events) unless the subscription is gone;
// the API creates it before storing the subscription, so only an operator
// deleting it by hand gets here.
func (d *dispatcher) consumer(ctx context.Context, rec *record, rp *Replay) (jetstream.Consumer, error) {
	want := d.s.consumerConfig(rec, rp)
	cons, err := d.s.js.Consumer(ctx, queue.EventsStream, want.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		if rp != nil {
			d.s.finishReplay(ctx, rec.ID, rp)
			return nil, errStopRunner
		}
		cur, _, err := d.s.getRecord(ctx, rec.ID)
		if errors.Is(err, errNotFound) || err == nil && cur.Status != StatusActive {
			return nil, errStopRunner
		}
		if err != nil {
			return nil, err
		}
		d.s.log.Warn("consumer of a subscription missing: re-creating it from the subscription's start", "subscription", rec.ID)
		return d.s.layout.Consumer(ctx, want)
	}
	if err != nil {
		return nil, err
	}
	have := cons.CachedInfo().Config
	if have.AckWait != want.AckWait || have.MaxDeliver != want.MaxDeliver || have.MaxAckPending != want.MaxAckPending {
		have.AckWait, have.MaxDeliver, have.MaxAckPending = want.AckWait, want.MaxDeliver, want.MaxAckPending
		return d.s.layout.Consumer(ctx, have)
	}
	return cons, nil
}

// consume pulls events and delivers up to WebhookConcurrency at once (a
// replay's runner as many again, beside its subscription's). It
// asks JetStream for an event only when a slot is free, one at a time: an
// event handed over counts as a delivery, so one held in a buffer while
// every slot is busy would spend an attempt when the runner stops (handed
// back, it returns with its count raised; handed over for its last attempt,
// it would return past it and be recorded exhausted without a request).
// When ctx ends, deliveries in flight are cancelled and handed back (Nak),
// but for last attempts (see process), and so is an event that arrives as
// the pull is given up (one handed over for its last attempt is sent).
func (d *dispatcher) consume(ctx context.Context, r *runner, cons jetstream.Consumer) error {
	// Pulls expire after pullExpiry, with heartbeats at half that: when the
	// consumer's leader is lost (a NATS node died) the next pull goes to the
	// new leader within seconds, not after the default 30 s.
	it, err := cons.Messages(jetstream.PullMaxMessages(1), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	wctx, stopWatch := context.WithCancel(ctx)
	defer func() {
		stopWatch()
		// Drained at once, alongside the deliveries still in flight: an
		// event that arrives now must not wait out their last attempts.
		it.Drain()
		for {
			m, err := it.Next(jetstream.NextMaxWait(100 * time.Millisecond))
			if err != nil {
				break
			}
			if meta, err := m.Metadata(); err == nil && ctx.Err() != nil && int(meta.NumDelivered) < d.s.cfg.maxDeliver() {
				_ = m.Nak() // stopping: not an attempt
				continue
			}
			wg.Go(func() { d.process(ctx, r, m) })
		}
		wg.Wait()
	}()
	var done <-chan struct{}
	if r.replay != nil {
		ch := make(chan struct{})
		done = ch
		wg.Go(func() { d.watchReplay(wctx, r, cons, ch) })
	}
	sem := make(chan struct{}, max(d.s.cfg.WebhookConcurrency, 1))
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		case <-done:
			return errStopRunner
		}
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			<-sem
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() {
			defer func() { <-sem }()
			d.process(ctx, r, msg)
		})
	}
}

// pullExpiry bounds one pull request of a delivery loop (see consume).
const pullExpiry = 5 * time.Second

// process makes one delivery attempt of one event and settles the message:
// ack on 2xx, a delayed nak per the schedule on failure, term when the
// attempts are exhausted or the endpoint answered 410 Gone.
func (d *dispatcher) process(ctx context.Context, r *runner, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	rec := d.record(r.subID)
	if rec == nil || rec.Status != StatusActive {
		_ = msg.NakWithDelay(time.Second) // this runner is about to stop
		return
	}
	h, err := decodeHead(msg.Data())
	if err != nil {
		d.s.log.Warn("dropping malformed event", "subscription", r.subID, "seq", meta.Sequence.Stream, "err", err)
		_ = msg.Term()
		return
	}
	// The subject filter is coarse (job ids share subject tokens after
	// escaping); the envelope decides. A replay ends at its range.
	if !rec.matches(h) || r.replay != nil && (meta.Sequence.Stream > r.replay.UpToSeq || meta.Timestamp.After(r.replay.Until)) {
		_ = msg.Ack()
		return
	}
	n := int(meta.NumDelivered)
	if d.s.tracer != nil {
		var span trace.Span
		ctx, span = d.s.tracer.Start(tracing.Extract(ctx, msg.Headers()), "webhook delivery", trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attribute.String("vodpipe.subscription", rec.ID), attribute.String("vodpipe.event_type", h.Type),
				attribute.String("vodpipe.event_id", h.ID), attribute.Int("vodpipe.attempt", n)))
		defer span.End()
	}
	last := n >= d.s.cfg.maxDeliver()
	if last {
		// The last attempt is made, recorded and settled even when this
		// instance is stopping (at most WebhookTimeout for the request, then
		// the NATS calls that record and settle it, each bounded by the
		// JetStream client's timeout): handed back, the event would come
		// back with no attempt left.
		ctx = context.WithoutCancel(ctx)
	}
	var a Attempt
	if n > d.s.cfg.maxDeliver() {
		// Delivered again after its last attempt: that attempt's process
		// stopped before it recorded an outcome. No attempt is left, and
		// the switch below ends it as exhausted.
		a = Attempt{SubscriptionID: rec.ID, EventID: h.ID, EventType: h.Type, JobID: h.JobID, Attempt: n,
			Error: "the last attempt ended without an outcome (its notify instance stopped or lost NATS)", Time: time.Now().UTC()}
	} else {
		// The ack deadline restarts with the attempt: it leaves the
		// attempt's timeout plus the whole slack for recording it and
		// acking, however long the event waited in the client's buffer.
		// (Deciding from the event's age instead would compare this clock
		// with the NATS server's.)
		_ = msg.InProgress()
		a = d.s.send(ctx, rec, h, msg.Data(), n)
		if a.Outcome != OutcomeDelivered && ctx.Err() != nil {
			// Stopping (this instance, or the runner for a disable): the
			// server counts a delivery handed back, so it is an attempt,
			// recorded as interrupted, and the next one keeps to the
			// schedule rather than going out at once on another replica.
			ctx = context.WithoutCancel(ctx)
			if a.Status == 0 {
				a.Error = "interrupted: its notify instance stopped or the subscription was disabled"
			}
		}
	}
	a.EventSeq = meta.Sequence.Stream
	if r.replay != nil {
		a.ReplayID = r.replay.ID
	}
	switch {
	case a.Outcome == OutcomeDelivered:
		if last {
			// Confirmed by the server: a lost ack would bring the event
			// back past its last attempt, to be counted exhausted.
			d.settleConfirmed(ctx, msg, "+ACK", "acking a webhook delivery")
		} else {
			_ = msg.Ack()
		}
		d.s.metrics.lag.Observe(time.Since(meta.Timestamp).Seconds())
	case a.Status == http.StatusGone:
		a.Outcome = OutcomeGone
		d.settleConfirmed(ctx, msg, "+TERM webhook endpoint gone", "terminating a webhook delivery")
	case last:
		a.Outcome = OutcomeExhausted
		d.settleConfirmed(ctx, msg, "+TERM webhook attempts exhausted", "terminating a webhook delivery")
	default:
		a.Outcome = OutcomeRetry
		// ± 10 %: the events that failed together (their endpoint was down)
		// come back spread, not all at the same instant.
		delay := retry.Around(d.s.cfg.WebhookSchedule.delay(n), 0.1)
		next := time.Now().Add(delay).UTC()
		a.NextAttemptAt = &next
		_ = msg.NakWithDelay(delay)
	}
	d.s.metrics.deliveries.WithLabelValues(a.Outcome).Inc()
	d.s.recordAttempt(ctx, a)

	switch a.Outcome {
	case OutcomeDelivered:
		if rec.ConsecutiveFailures > 0 {
			d.s.resetFailures(ctx, rec.ID)
		}
	case OutcomeGone:
		d.s.disable(context.WithoutCancel(ctx), rec.ID, DisabledGone, a.Status)
	case OutcomeExhausted:
		d.s.countExhausted(context.WithoutCancel(ctx), rec.ID, a.Status)
	}
}

// settleConfirmed settles an event's last delivery (body: "+ACK", or
// "+TERM reason") and waits for the server to confirm it: up to 3 tries of
// 2 s, 0.5 s and then 1 s apart (at most 7.5 s), as a consumer leader
// election answers "no responders" at once. A settlement lost on the way
// would bring the event back past its attempts, to be recorded exhausted
// (though delivered) or counted a second time; a repeat of one the server
// already took is answered and harmless.
func (d *dispatcher) settleConfirmed(ctx context.Context, msg jetstream.Msg, body, what string) {
	ctx = context.WithoutCancel(ctx)
	var err error
	for i, pause := range []time.Duration{0, 500 * time.Millisecond, time.Second} {
		if i > 0 {
			time.Sleep(pause)
		}
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = d.s.nc.RequestWithContext(tctx, msg.Reply(), []byte(body))
		cancel()
		if err == nil {
			return
		}
	}
	d.s.log.Warn(what+" was not confirmed; it may come back and be counted again", "err", err)
}

// send makes one signed attempt. The webhook-id is the event id on every
// attempt and replay; the timestamp and signature are fresh each time.
func (s *Fanout) send(ctx context.Context, rec *record, h eventHead, body []byte, n int) (a Attempt) {
	start := time.Now()
	a = Attempt{SubscriptionID: rec.ID, EventID: h.ID, EventType: h.Type, JobID: h.JobID, Attempt: n, Time: start.UTC()}
	defer func() { // a named result: the record gets its duration
		a.DurationMS = float64(time.Since(start).Microseconds()) / 1000
		s.metrics.attempt.Observe(time.Since(start).Seconds())
	}()
	sig, err := webhook.Sign(rec.secret, h.ID, start, body)
	if err != nil {
		a.Error = err.Error()
		return a
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, rec.URL, bytes.NewReader(body))
	if err != nil {
		a.Error = err.Error()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vodpipe-notify")
	req.Header.Set(webhook.HeaderID, h.ID)
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(start.Unix(), 10))
	req.Header.Set(webhook.HeaderSignature, sig)
	tracing.InjectHTTP(ctx, req.Header) // traceparent: the receiver may continue the trace
	resp, err := s.client.Do(req)
	if err != nil {
		// Attempts are read with the read scope: the URL's query may hold a token.
		a.Error = redact.Err(err).Error()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			a.Error = fmt.Sprintf("no answer within %s", s.cfg.WebhookTimeout)
		}
		return a
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseSnippet))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	a.Status = resp.StatusCode
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		a.Outcome = OutcomeDelivered
	} else {
		a.Response = string(bytes.ToValidUTF8(snippet, []byte("?")))
	}
	return a
}

// resetFailures clears the consecutive-failure count after a success.
func (s *Fanout) resetFailures(ctx context.Context, id string) {
	_, err := s.updateRecord(ctx, id, func(r *record) error {
		if r.ConsecutiveFailures == 0 {
			return errUnchanged
		}
		r.ConsecutiveFailures = 0
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) && !errors.Is(err, errNotFound) {
		s.log.Warn("reset failure count", "subscription", id, "err", err)
	}
}

// countExhausted counts an event whose attempts all failed, and disables
// the subscription after WebhookDisableAfter in a row.
func (s *Fanout) countExhausted(ctx context.Context, id string, lastStatus int) {
	r, err := s.updateRecord(ctx, id, func(r *record) error {
		r.ConsecutiveFailures++
		return nil
	})
	if err != nil {
		if !errors.Is(err, errNotFound) {
			s.log.Warn("count failure", "subscription", id, "err", err)
		}
		return
	}
	if r.ConsecutiveFailures >= s.cfg.WebhookDisableAfter {
		s.disable(ctx, id, DisabledFailing, lastStatus)
	}
}

// watchReplay closes done once the replay has sent everything in its range:
// nothing pending and nothing awaiting an ack or a retry. The replay is then
// removed from the record (which stops its runners everywhere) and its
// consumer deleted.
func (d *dispatcher) watchReplay(ctx context.Context, r *runner, cons jetstream.Consumer, done chan<- struct{}) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		info, err := cons.Info(ctx)
		if err != nil {
			continue
		}
		if info.NumPending > 0 || info.NumAckPending > 0 || info.NumRedelivered > 0 {
			continue
		}
		close(done)
		d.s.finishReplay(context.WithoutCancel(ctx), r.subID, r.replay)
		return
	}
}

func (s *Fanout) finishReplay(ctx context.Context, subID string, rp *Replay) {
	_, err := s.updateRecord(ctx, subID, func(rec *record) error {
		for i := range rec.Replays {
			if rec.Replays[i].ID == rp.ID {
				rec.Replays = append(rec.Replays[:i], rec.Replays[i+1:]...)
				return nil
			}
		}
		return errUnchanged
	})
	if err != nil && !errors.Is(err, errUnchanged) && !errors.Is(err, errNotFound) {
		s.log.Warn("finish replay", "subscription", subID, "replay", rp.ID, "err", err)
		return
	}
	if err := s.js.DeleteConsumer(ctx, queue.EventsStream, consumerName(subID, rp)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		s.log.Warn("delete replay consumer", "replay", rp.ID, "err", err)
	}
	s.log.Info("replay finished", "subscription", subID, "replay", rp.ID)
}

// refreshBacklog updates the per-subscription backlog gauges from the
// consumers, listed in one paged request rather than one per subscription.
func (s *Fanout) refreshBacklog(ctx context.Context) {
	t := time.NewTicker(s.cfg.BacklogInterval)
	defer t.Stop()
	seen := map[string]bool{}
	for {
		now := map[string]bool{}
		active := map[string]bool{}
		for _, rec := range s.disp.active() {
			active[consumerName(rec.ID, nil)] = true
		}
		if stream, err := s.js.Stream(ctx, queue.EventsStream); err == nil && len(active) > 0 {
			l := stream.ListConsumers(ctx)
			for ci := range l.Info() {
				id := ci.Config.Metadata["vodpipe_subscription"]
				if !active[ci.Name] || id == "" {
					continue
				}
				s.metrics.backlog.WithLabelValues(id).Set(float64(ci.NumPending))
				s.metrics.inFlight.WithLabelValues(id).Set(float64(ci.NumAckPending))
				s.backlogs.Store(id, &Backlog{Pending: ci.NumPending, InFlight: uint64(ci.NumAckPending), At: time.Now().UTC()})
				now[id] = true
			}
		}
		for id := range seen {
			if !now[id] {
				s.metrics.backlog.DeleteLabelValues(id)
				s.metrics.inFlight.DeleteLabelValues(id)
				s.backlogs.Delete(id)
			}
		}
		seen = now
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
