package fanout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/redact"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// errUnavailable answers a failure of NATS or JetStream; its detail, which
// names streams, subjects and servers, goes to the log only.
var errUnavailable = &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeUnavailable,
	Message: "notify cannot reach its message store right now; retry later"}

// writeInternal logs err and answers errUnavailable.
func (s *Fanout) writeInternal(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	httpapi.Write(w, errUnavailable)
}

var errSubNotFound = &httpapi.Error{Status: http.StatusNotFound, Code: httpapi.CodeSubNotFound, Message: "no such subscription"}

// view is a subscription as the caller may see it: a key without the
// control scope sees its URL with the credentials and query (where
// receivers keep their tokens) redacted.
func (s *Fanout) view(r *http.Request, rec *record) Subscription {
	out := rec.public()
	if b, ok := s.backlogs.Load(rec.ID); ok {
		out.Backlog = b.(*Backlog)
	}
	if key := httpapi.KeyFrom(r.Context()); key == nil || !key.Allows(ScopeControl) {
		out.URL = redact.URL(out.URL)
	}
	return out
}

func (s *Fanout) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if e := s.decode(w, r, &req); e != nil {
		httpapi.Write(w, e)
		return
	}
	rec, e := s.validate(r.Context(), req)
	if e != nil {
		httpapi.Write(w, e)
		return
	}
	n, err := s.countSubscriptions(r.Context())
	if err != nil {
		s.writeInternal(w, r, err)
		return
	}
	if n >= s.cfg.WebhookMaxSubscriptions {
		httpapi.Write(w, &httpapi.Error{Status: http.StatusConflict, Code: httpapi.CodeTooManySubscriptions,
			Message: fmt.Sprintf("there are already %d subscriptions, the most allowed", n)})
		return
	}
	if err := s.createSubscription(r.Context(), rec); err != nil {
		s.writeInternal(w, r, err)
		return
	}
	// Creates made at once all count below the cap: each counts again once
	// its own is stored, and one that finds the cap passed takes its own
	// back. The last stored sees every other, so the cap holds (creates
	// racing may all be refused; none passes it).
	if n, err := s.countSubscriptions(r.Context()); err != nil || n > s.cfg.WebhookMaxSubscriptions {
		if derr := s.deleteSubscription(context.WithoutCancel(r.Context()), rec); derr != nil {
			s.log.Warn("take back a subscription past the cap", "subscription", rec.ID, "err", derr)
		}
		if err != nil {
			s.writeInternal(w, r, err)
			return
		}
		httpapi.Write(w, &httpapi.Error{Status: http.StatusConflict, Code: httpapi.CodeTooManySubscriptions,
			Message: fmt.Sprintf("there are already %d subscriptions, the most allowed", s.cfg.WebhookMaxSubscriptions)})
		return
	}
	s.log.Info("subscription created", "subscription", rec.ID, "event_types", rec.EventTypes, "job_id", rec.JobID)
	out := rec.public()
	out.Secret = rec.secret
	w.Header().Set("Location", "/v1/subscriptions/"+rec.ID)
	httpapi.WriteJSON(w, http.StatusCreated, out)
}

// countSubscriptions counts the stored subscriptions with batched reads
// (listing keys would take a consumer, which notify may not create).
func (s *Fanout) countSubscriptions(ctx context.Context) (int, error) {
	entries, err := queue.ReadBucket(ctx, s.nc, SubscriptionsBucket)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !e.Deleted {
			n++
		}
	}
	return n, nil
}

func (s *Fanout) handleList(w http.ResponseWriter, r *http.Request) {
	recs, err := s.listRecords(r.Context())
	if err != nil {
		s.writeInternal(w, r, err)
		return
	}
	out := make([]Subscription, len(recs))
	for i, rec := range recs {
		out[i] = s.view(r, rec)
	}
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Subscriptions []Subscription `json:"subscriptions"`
	}{out})
}

// lookup answers 404 or 503 itself when the subscription cannot be read.
func (s *Fanout) lookup(w http.ResponseWriter, r *http.Request) *record {
	rec, _, err := s.getRecord(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, errNotFound):
		httpapi.Write(w, errSubNotFound)
		return nil
	case err != nil:
		s.writeInternal(w, r, err)
		return nil
	}
	return rec
}

func (s *Fanout) handleGet(w http.ResponseWriter, r *http.Request) {
	if rec := s.lookup(w, r); rec != nil {
		httpapi.WriteJSON(w, http.StatusOK, s.view(r, rec))
	}
}

func (s *Fanout) handleDelete(w http.ResponseWriter, r *http.Request) {
	rec := s.lookup(w, r)
	if rec == nil {
		return
	}
	if err := s.deleteSubscription(r.Context(), rec); err != nil {
		s.writeInternal(w, r, err)
		return
	}
	s.log.Info("subscription deleted", "subscription", rec.ID)
	w.WriteHeader(http.StatusNoContent)
}

// handleEnable re-enables a disabled subscription; delivery resumes where
// its consumer stopped.
func (s *Fanout) handleEnable(w http.ResponseWriter, r *http.Request) {
	rec, err := s.updateRecord(r.Context(), r.PathValue("id"), func(rec *record) error {
		if rec.Status == StatusActive {
			return errUnchanged
		}
		rec.Status, rec.DisabledReason, rec.DisabledAt, rec.ConsecutiveFailures = StatusActive, "", nil, 0
		return nil
	})
	switch {
	case errors.Is(err, errNotFound):
		httpapi.Write(w, errSubNotFound)
		return
	case err != nil && !errors.Is(err, errUnchanged):
		s.writeInternal(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, s.view(r, rec))
}

// handleDisable stops a subscription's deliveries (an operator's pause):
// its events wait in the stream until it is enabled again.
func (s *Fanout) handleDisable(w http.ResponseWriter, r *http.Request) {
	rec := s.lookup(w, r)
	if rec == nil {
		return
	}
	who := "an operator"
	if k := httpapi.KeyFrom(r.Context()); k != nil && k.Name != "" {
		who = k.Name
	}
	if err := s.disable(r.Context(), rec.ID, "disabled by "+who, 0); err != nil {
		s.writeInternal(w, r, err)
		return
	}
	if rec = s.lookup(w, r); rec != nil {
		httpapi.WriteJSON(w, http.StatusOK, s.view(r, rec))
	}
}

// replayRequest is the body of POST /v1/subscriptions/{id}/replay: a time
// range, or one event by its sequence (an attempt's eventSeq).
type replayRequest struct {
	Since    *time.Time `json:"since"`
	Until    *time.Time `json:"until"`
	EventSeq *uint64    `json:"eventSeq"`
}

// handleReplay starts a replay: a consumer of its own from Since, which
// re-sends (same webhook-id, new signature) the subscription's events stored
// up to Until (default: now) and is removed when done.
func (s *Fanout) handleReplay(w http.ResponseWriter, r *http.Request) {
	rec := s.lookup(w, r)
	if rec == nil {
		return
	}
	var req replayRequest
	if e := s.decode(w, r, &req); e != nil {
		httpapi.Write(w, e)
		return
	}
	now := time.Now().UTC()
	var one *job.Event
	if req.EventSeq != nil {
		if req.Since != nil || req.Until != nil {
			httpapi.Write(w, httpapi.Field(httpapi.CodeInvalidField, "eventSeq", "replays one event: since and until do not go with it"))
			return
		}
		var e *httpapi.Error
		if one, e = s.storedEvent(r, rec, *req.EventSeq); e != nil {
			httpapi.Write(w, e)
			return
		}
		req.Since, req.Until = &one.Time, &now
	}
	switch {
	case req.Since == nil:
		httpapi.Write(w, httpapi.Field(httpapi.CodeInvalidField, "since", "is required (RFC 3339 time)"))
		return
	case req.Since.After(now):
		httpapi.Write(w, httpapi.Field(httpapi.CodeInvalidField, "since", "is in the future"))
		return
	case req.Until != nil && !req.Until.After(*req.Since):
		httpapi.Write(w, httpapi.Field(httpapi.CodeInvalidField, "until", "must be after since"))
		return
	case rec.Status != StatusActive:
		httpapi.Write(w, &httpapi.Error{Status: http.StatusConflict, Code: httpapi.CodeSubDisabled, Message: "the subscription is disabled; enable it first"})
		return
	case len(rec.Replays) >= maxReplays:
		httpapi.Write(w, &httpapi.Error{Status: http.StatusConflict, Code: httpapi.CodeTooManyReplays, Message: fmt.Sprintf("%d replays are running; wait for one to finish", len(rec.Replays))})
		return
	}
	until := now
	if req.Until != nil && req.Until.Before(now) {
		until = req.Until.UTC()
	}
	stream, err := s.js.Stream(r.Context(), queue.EventsStream)
	if err != nil {
		s.writeInternal(w, r, err)
		return
	}
	info, err := stream.Info(r.Context())
	if err != nil {
		s.writeInternal(w, r, err)
		return
	}
	rp := Replay{ID: "rp_" + randomID(), Since: req.Since.UTC(), Until: until, UpToSeq: info.State.LastSeq, CreatedAt: now}
	if one != nil {
		rp.UpToSeq, rp.EventSeq, rp.EventType, rp.JobID = *req.EventSeq, *req.EventSeq, one.Type, one.JobID
	}
	cons, err := s.layout.Consumer(r.Context(), s.consumerConfig(rec, &rp))
	if err != nil {
		s.writeInternal(w, r, err)
		return
	}
	if _, err := s.updateRecord(r.Context(), rec.ID, func(rec *record) error {
		if rec.Status != StatusActive {
			return errors.New("the subscription was disabled meanwhile")
		}
		// Checked again within the compare-and-set: two requests at once
		// both passed the check above.
		if len(rec.Replays) >= maxReplays {
			return errTooManyReplays
		}
		rec.Replays = append(rec.Replays, rp)
		return nil
	}); err != nil {
		_ = s.js.DeleteConsumer(context.WithoutCancel(r.Context()), queue.EventsStream, consumerName(rec.ID, &rp))
		if errors.Is(err, errTooManyReplays) {
			httpapi.Write(w, &httpapi.Error{Status: http.StatusConflict, Code: httpapi.CodeTooManyReplays, Message: fmt.Sprintf("%d replays are running; wait for one to finish", maxReplays)})
			return
		}
		s.writeInternal(w, r, err)
		return
	}
	s.log.Info("replay started", "subscription", rec.ID, "replay", rp.ID, "since", rp.Since, "until", rp.Until)
	// Pending counts stored events from Since that match the subscription's
	// filters, an upper bound of what will be re-sent.
	rp.Pending = cons.CachedInfo().NumPending
	httpapi.WriteJSON(w, http.StatusAccepted, rp)
}

// errTooManyReplays refuses a replay past maxReplays running.
var errTooManyReplays = errors.New("fanout: too many replays")

// decode reads a request's JSON body strictly (httpapi.Body).
func (s *Fanout) decode(w http.ResponseWriter, r *http.Request, v any) *httpapi.Error {
	return httpapi.Body{Max: s.cfg.MaxBody}.Decode(w, r, v)
}

// storedEvent reads the event a one-event replay names: stored, and one the
// subscription takes.
func (s *Fanout) storedEvent(r *http.Request, rec *record, seq uint64) (*job.Event, *httpapi.Error) {
	notOne := httpapi.Field(httpapi.CodeInvalidField, "eventSeq", fmt.Sprintf("no stored event of this subscription at %d", seq))
	if seq == 0 {
		return nil, notOne
	}
	var m *jetstream.RawStreamMsg
	stream, err := s.js.Stream(r.Context(), queue.EventsStream)
	if err == nil {
		m, err = stream.GetMsg(r.Context(), seq)
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, notOne
	}
	if err != nil {
		s.log.Warn("replay: read the event", "seq", seq, "err", err)
		return nil, &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeUnavailable, Message: "the event stream is unavailable"}
	}
	h, err := decodeHead(m.Data)
	if err != nil || !rec.matches(h) {
		return nil, notOne
	}
	return &job.Event{ID: h.ID, Type: h.Type, JobID: h.JobID, Time: m.Time.UTC()}, nil
}
