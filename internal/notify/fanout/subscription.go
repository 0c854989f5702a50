package fanout

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/secretbox"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/webhook"
)

// Names of notify's JetStream bucket and stream.
const (
	// SubscriptionsBucket holds one record per subscription, shared by all replicas.
	// (ingest's layout broker creates it: see queue.Layout).
	SubscriptionsBucket = queue.SubscriptionsBucket
	// AttemptsStream logs delivery attempts under vodpipe.notify.attempts.<subscription id>.
	AttemptsStream = queue.AttemptsStream
	attemptsPrefix = queue.AttemptsPrefix
	// consumerPrefix names a subscription's durable consumer on the EVENTS stream.
	consumerPrefix = "notify_"
)

// Subscription states.
const (
	StatusActive   = "active"
	StatusDisabled = "disabled"
)

// Subscription is a webhook endpoint and the events it wants, as the API shows it.
type Subscription = client.Subscription

// Replay is a re-send of a subscription's events stored between Since and
// Until, running on a consumer of its own (its Pending is set in the
// answer that started it only).
type Replay = client.Replay

// Backlog is a subscription's delivery backlog (pkg/client's type).
type Backlog = client.Backlog

// record is what the bucket stores: the subscription with its signing
// secret sealed (internal/secretbox) under a key NATS never sees, bound to the
// subscription's key. Versions before sealing stored the secret in clear in
// the same field; notify re-seals those at start (resealSecrets). One field
// for both keeps a sealed secret from being dropped by an older replica's
// rewrite (it drops fields it does not know); such a replica would still
// sign with the sealed text, so old replicas stop before new ones start.
type record struct {
	Subscription
	StoredSecret string `json:"storedSecret"`
	// Version counts the record's writes (1 at creation). Writes are
	// compare-and-set, so it grows with each; replicas follow the bucket
	// by subscription, whose messages carry no revision, and order a
	// subscription's records by it (see dispatcher.set).
	Version uint64 `json:"version,omitempty"`
	secret  string // opened, in memory only; "" when it does not open
	sealErr error  // why it does not open (names a key id at most)
	rev     uint64 // the bucket's revision it was read at or written as
}

// order places the record among its subscription's records: later writes
// have a greater order, and a deletion (final: ids are never reused) the
// greatest.
func (r *record) order() uint64 {
	if r == nil {
		return math.MaxUint64
	}
	return r.Version + 1 // records written before Version count as 1
}

// public is the subscription as the API shows it after creation: no secret.
func (r *record) public() Subscription {
	s := r.Subscription
	s.Secret = ""
	return s
}

// matches reports whether an event is one the subscription asked for.
func (r *record) matches(h eventHead) bool {
	return matchTypes(r.EventTypes, h.Type) && (r.JobID == "" || r.JobID == h.JobID)
}

// filterSubjects are the subjects of the subscription's consumer.
func (r *record) filterSubjects() []string {
	types := normalizeTypes(r.EventTypes)
	out := make([]string, len(types))
	for i, t := range types {
		out[i] = queue.EventFilterSubject(t, r.JobID)
	}
	return out
}

// consumerName is the durable consumer of a subscription, or of one of its replays.
func consumerName(subID string, rp *Replay) string {
	if rp == nil {
		return consumerPrefix + subID
	}
	return consumerPrefix + subID + "_" + rp.ID
}

// consumerConfig is the durable consumer that holds a subscription's
// delivery state: its position in the EVENTS stream, what is being
// delivered, and each event's delivery count. Every notify replica builds
// the same config and consumes from it, so they share the work.
func (s *Fanout) consumerConfig(r *record, rp *Replay) jetstream.ConsumerConfig {
	start := r.CreatedAt
	desc := "vodpipe notify: webhook subscription " + r.ID
	if rp != nil {
		start = rp.Since
		desc = "vodpipe notify: replay " + rp.ID + " of subscription " + r.ID
	}
	c := jetstream.ConsumerConfig{
		Durable: consumerName(r.ID, rp), Description: desc,
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
		// No delivery bound here: the deliverer ends an event after its last
		// attempt itself, and records as exhausted one delivered past it (its
		// last attempt's process died). A bound here would drop that event
		// without a record.
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: s.cfg.ackWait(), MaxDeliver: -1,
		MaxAckPending: s.cfg.WebhookMaxInFlight, Replicas: s.replicas,
		Metadata: map[string]string{"vodpipe_subscription": r.ID},
	}
	subj := r.filterSubjects()
	if rp != nil && rp.EventSeq > 0 {
		// One event: from its sequence, on its own subject.
		c.DeliverPolicy, c.OptStartTime, c.OptStartSeq = jetstream.DeliverByStartSequencePolicy, nil, rp.EventSeq
		subj = []string{queue.EventSubject(&job.Event{Type: rp.EventType, JobID: rp.JobID})}
	}
	if len(subj) == 1 {
		c.FilterSubject = subj[0]
	} else {
		c.FilterSubjects = subj
	}
	return c
}

// createRequest is the body of POST /v1/subscriptions.
type createRequest struct {
	URL         string    `json:"url"`
	EventTypes  *[]string `json:"eventTypes"`
	JobID       string    `json:"jobId"`
	Description string    `json:"description"`
}

// Limits of a subscription.
const (
	maxEventTypes     = 32
	maxDescriptionLen = 512
	maxReplays        = 4
)

// checkJobID says what is wrong with a job id to filter events on ("" for
// nothing, or none given): it becomes a token of a consumer's filter
// subject, which the NATS server bounds with the rest of the request's
// control line.
func checkJobID(id string) string {
	if id != "" && (len(id) > job.MaxIDLen || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f })) {
		return fmt.Sprintf("must be a job id: at most %d characters, no spaces or control characters", job.MaxIDLen)
	}
	return ""
}

// validate checks a create request and returns the record it describes;
// the error names the first bad field.
func (s *Fanout) validate(ctx context.Context, req createRequest) (*record, *httpapi.Error) {
	if msg := checkWebhookURL(ctx, req.URL, s.guard, s.resolver); msg != "" {
		return nil, httpapi.Field(httpapi.CodeInvalidField, "url", msg)
	}
	types := []string{"*"}
	if req.EventTypes != nil {
		types = *req.EventTypes
		if len(types) == 0 {
			return nil, httpapi.Field(httpapi.CodeInvalidField, "eventTypes", `is empty; leave it out or use ["*"] for every event`)
		}
		if len(types) > maxEventTypes {
			return nil, httpapi.Field(httpapi.CodeInvalidField, "eventTypes", fmt.Sprintf("has %d entries, at most %d", len(types), maxEventTypes))
		}
		for i, t := range types {
			if msg := checkTypePattern(t); msg != "" {
				return nil, httpapi.Field(httpapi.CodeInvalidField, fmt.Sprintf("eventTypes[%d]", i), msg)
			}
		}
	}
	if msg := checkJobID(req.JobID); msg != "" {
		return nil, httpapi.Field(httpapi.CodeInvalidField, "jobId", msg)
	}
	if len(req.Description) > maxDescriptionLen {
		return nil, httpapi.Field(httpapi.CodeInvalidField, "description", fmt.Sprintf("is longer than %d characters", maxDescriptionLen))
	}
	r := &record{Subscription: Subscription{
		ID: "sub_" + randomID(), URL: req.URL, EventTypes: types, JobID: req.JobID, Description: req.Description,
		Status: StatusActive, CreatedAt: time.Now().UTC(),
	}, secret: webhook.NewSecret()}
	s.seal(r)
	return r, nil
}

// randomID is 16 lower-case base32 characters (80 random bits).
func randomID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// validID keeps ids that reach consumer names and subjects to one safe token.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// errNotFound is returned for an unknown subscription id.
var errNotFound = errors.New("notify: subscription not found")

// errUnchanged aborts an update that has nothing to do.
var errUnchanged = errors.New("notify: unchanged")

// getRecord reads one subscription with its revision.
func (s *Fanout) getRecord(ctx context.Context, id string) (*record, uint64, error) {
	if !validID(id) {
		return nil, 0, errNotFound
	}
	e, err := s.subs.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, errNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("notify: read subscription %s: %w", id, err)
	}
	r, err := s.decodeRecord(id, e.Value())
	if err != nil {
		return nil, 0, err
	}
	r.rev = e.Revision()
	return r, e.Revision(), nil
}

// decodeRecord reads the record stored under key and opens its signing
// secret. A secret that does not open (sealed under a key missing from the
// config, or moved from another record) leaves the record without one and
// sealErr set: its deliveries wait for a replica that can open it.
func (s *Fanout) decodeRecord(key string, b []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("notify: subscription record: %w", err)
	}
	if strings.HasPrefix(r.StoredSecret, webhook.SecretPrefix) { // in clear, from a version before sealing
		if !s.cfg.MigrateClearSecrets {
			r.sealErr = fmt.Errorf("notify: signing secret of subscription %s is stored in clear: refused (VODPIPE_WEBHOOK_MIGRATE_CLEAR_SECRETS=true seals it at start, for an upgrade from a version before sealing)", key)
			return &r, nil
		}
		r.secret = r.StoredSecret
		return &r, nil
	}
	plain, err := s.box.Open(r.StoredSecret, []byte(key))
	if err != nil {
		r.sealErr = fmt.Errorf("notify: signing secret of subscription %s: %w", key, err)
		return &r, nil
	}
	r.secret = string(plain)
	return &r, nil
}

// seal stores the record's secret sealed under the first key.
func (s *Fanout) seal(r *record) {
	r.StoredSecret = s.box.Seal([]byte(r.secret), []byte(r.ID))
}

// needsReseal reports whether a record's secret is stored in clear or under
// another key than the first, and can be opened to seal it again.
func needsReseal(r *record, sealKeyID string) bool {
	if r.secret == "" {
		return false
	}
	id, sealed := secretbox.SealedKeyID(r.StoredSecret)
	return !sealed || id != sealKeyID
}

// resealSecrets seals again, under the first key, every secret stored in
// clear (by a version before sealing) or under another key (rotation).
// Replicas starting together go through updateRecord's revision check, so
// each record is rewritten once. Failures are logged: a record left over is
// re-sealed at the next start or its next write.
func (s *Fanout) resealSecrets(ctx context.Context) error {
	recs, err := s.listRecords(ctx)
	if err != nil {
		return fmt.Errorf("notify: re-seal webhook secrets: %w", err)
	}
	resealed, unopened := 0, 0
	for _, r := range recs {
		if r.sealErr != nil {
			unopened++
			s.log.Error("webhook signing secret does not open: its deliveries wait for a notify with its key", "subscription", r.ID, "err", r.sealErr)
			continue
		}
		if !needsReseal(r, s.box.KeyID()) {
			continue
		}
		_, err := s.updateRecord(ctx, r.ID, func(cur *record) error {
			if !needsReseal(cur, s.box.KeyID()) {
				return errUnchanged
			}
			return nil // updateRecord seals it
		})
		switch {
		case err == nil:
			resealed++
		case errors.Is(err, errUnchanged) || errors.Is(err, errNotFound):
		default:
			s.log.Warn("re-seal webhook signing secret", "subscription", r.ID, "err", err)
		}
	}
	if resealed > 0 || unopened > 0 {
		s.log.Info("webhook signing secrets re-sealed", "resealed", resealed, "unopened", unopened, "key_id", s.box.KeyID())
	}
	return nil
}

// updateRecord applies f to a subscription with optimistic concurrency,
// retrying when another replica wrote in between. f returns errUnchanged
// to write nothing.
func (s *Fanout) updateRecord(ctx context.Context, id string, f func(*record) error) (*record, error) {
	for attempt := 0; ; attempt++ {
		r, rev, err := s.getRecord(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := f(r); err != nil {
			return r, err
		}
		if needsReseal(r, s.box.KeyID()) {
			s.seal(r)
		}
		r.Version++
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		newRev, err := s.subs.Update(ctx, id, b, rev)
		if err == nil {
			r.rev = newRev
			return r, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) || attempt >= 20 {
			return nil, fmt.Errorf("notify: update subscription %s: %w", id, err)
		}
	}
}

// listRecords reads every subscription, oldest first.
func (s *Fanout) listRecords(ctx context.Context) ([]*record, error) {
	entries, err := queue.ReadBucket(ctx, s.nc, SubscriptionsBucket)
	if err != nil {
		return nil, fmt.Errorf("notify: read subscriptions: %w", err)
	}
	var out []*record
	for _, e := range entries {
		if e.Deleted {
			continue
		}
		r, err := s.decodeRecord(e.Key, e.Value)
		if err != nil {
			s.log.Warn("skipping unreadable subscription", "key", e.Key, "err", err)
			continue
		}
		out = append(out, r)
	}
	sortRecords(out)
	return out, nil
}

func sortRecords(rs []*record) {
	slices.SortFunc(rs, func(a, b *record) int { return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID)) })
}

// createSubscription creates the consumer, then the record: a replica that
// sees the record finds its consumer, which starts at the creation time.
func (s *Fanout) createSubscription(ctx context.Context, r *record) error {
	if _, err := s.layout.Consumer(ctx, s.consumerConfig(r, nil)); err != nil {
		return fmt.Errorf("notify: create consumer: %w", err)
	}
	r.Version = 1
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := s.subs.Create(ctx, r.ID, b); err != nil {
		_ = s.js.DeleteConsumer(context.WithoutCancel(ctx), queue.EventsStream, consumerName(r.ID, nil))
		return fmt.Errorf("notify: store subscription: %w", err)
	}
	return nil
}

// deleteSubscription removes the record (replicas stop delivering), then
// the consumers and the attempt log.
func (s *Fanout) deleteSubscription(ctx context.Context, r *record) error {
	if err := s.subs.Delete(ctx, r.ID); err != nil {
		return fmt.Errorf("notify: delete subscription: %w", err)
	}
	names := []string{consumerName(r.ID, nil)}
	for i := range r.Replays {
		names = append(names, consumerName(r.ID, &r.Replays[i]))
	}
	for _, n := range names {
		if err := s.js.DeleteConsumer(ctx, queue.EventsStream, n); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			s.log.Warn("delete consumer", "consumer", n, "err", err)
		}
	}
	if err := s.attempts.Purge(ctx, jetstream.WithPurgeSubject(attemptsSubject(r.ID))); err != nil {
		s.log.Warn("purge attempts", "subscription", r.ID, "err", err)
	}
	return nil
}

// disable marks a subscription disabled and, when this call is the one
// that did it, publishes subscription.disabled. The error is the record's
// update's (none when it was disabled already).
func (s *Fanout) disable(ctx context.Context, id, reason string, lastStatus int) error {
	now := time.Now().UTC()
	rec, err := s.updateRecord(ctx, id, func(r *record) error {
		if r.Status != StatusActive {
			return errUnchanged
		}
		r.Status, r.DisabledReason, r.DisabledAt = StatusDisabled, reason, &now
		return nil
	})
	if err != nil {
		if errors.Is(err, errUnchanged) || errors.Is(err, errNotFound) {
			return nil
		}
		s.log.Error("disable subscription", "subscription", id, "err", err)
		return err
	}
	s.disp.set(id, rec, rec.order()) // stop this replica's deliveries now, before its own event below
	s.log.Warn("subscription disabled", "subscription", id, "reason", reason, "last_status", lastStatus)
	event := reason
	if reason != DisabledGone && reason != DisabledFailing {
		event = DisabledOperator // the record's reason names a key: not for receivers
	}
	data, _ := json.Marshal(SubscriptionDisabledData{SubscriptionID: id, Reason: event, LastStatus: lastStatus, DisabledAt: now})
	e := &job.Event{ID: fmt.Sprintf("ev-disabled-%s-%d", id, now.UnixNano()), Type: EventSubscriptionDisabled, Time: now, Data: data}
	if _, err := s.events.PublishOnce(ctx, e); err != nil {
		s.log.Error("publish subscription.disabled", "subscription", id, "err", err)
	}
	return nil
}
