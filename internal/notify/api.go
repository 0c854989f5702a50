package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vodpipe/vodpipe/internal/apikey"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/redact"
)

// apiError is every 4xx/5xx answer: a stable code, a message for people,
// and the request field at fault when there is one.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func fieldError(field, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "invalid_field", Field: field, Message: field + " " + msg}
}

// errUnavailable answers a failure of NATS or JetStream; its detail, which
// names streams, subjects and servers, goes to the log only.
var errUnavailable = &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable",
	Message: "notify cannot reach its message store right now; retry later"}

// writeInternal logs err and answers errUnavailable.
func (s *Service) writeInternal(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, errUnavailable)
}

var errSubNotFound = &apiError{Status: http.StatusNotFound, Code: "subscription_not_found", Message: "no such subscription"}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, struct {
		Error *apiError `json:"error"`
	}{e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// decodeBody reads a JSON object strictly: bounded size, no unknown
// fields, no trailing data; errors name the field.
func (s *Service) decodeBody(w http.ResponseWriter, r *http.Request, v any) *apiError {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return &apiError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "the body must be application/json"}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &apiError{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: fmt.Sprintf("the body exceeds %d bytes", s.cfg.MaxBody)}
	}
	if err != nil {
		return &apiError{Status: http.StatusBadRequest, Code: "bad_body", Message: "reading the body failed"}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return &apiError{Status: http.StatusBadRequest, Code: "bad_json", Message: "data after the JSON object"}
	}
	return nil
}

// jsonError turns a decoding error into an answer naming the field.
func jsonError(err error) *apiError {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return fieldError(typeErr.Field, "must be "+jsonType(typeErr.Type.String()))
	case errors.As(err, &syntaxErr):
		return &apiError{Status: http.StatusBadRequest, Code: "bad_json", Message: fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, err)}
	case errors.Is(err, io.EOF):
		return &apiError{Status: http.StatusBadRequest, Code: "bad_json", Message: "the body is empty; a JSON object is required"}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return &apiError{Status: http.StatusBadRequest, Code: "unknown_field", Field: name, Message: "unknown field " + name}
	}
	return &apiError{Status: http.StatusBadRequest, Code: "bad_json", Message: err.Error()}
}

func jsonType(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "an array of " + strings.TrimSuffix(jsonType(goType[2:]), "s") + "s"
	case goType == "time.Time":
		return "an RFC 3339 time string"
	case strings.HasPrefix(goType, "*"):
		return jsonType(goType[1:])
	}
	return "of type " + goType
}

// authorize requires a bearer API key with the scope.
func (s *Service) authorize(scope string, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vodpipe"`)
			writeError(w, &apiError{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "an API key is required: Authorization: Bearer <key>"})
			return
		}
		key, ok := s.keys.Lookup(token)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vodpipe", error="invalid_token"`)
			writeError(w, &apiError{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "the API key is not valid"})
			return
		}
		if !slices.Contains(key.Scopes, scope) {
			writeError(w, &apiError{Status: http.StatusForbidden, Code: "forbidden", Message: fmt.Sprintf("API key %q lacks the %q scope", key.Name, scope)})
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), keyCtx{}, key)))
	})
}

type keyCtx struct{}

// view is a subscription as the caller may see it: a key without the
// control scope sees its URL with the credentials and query (where
// receivers keep their tokens) redacted.
func view(r *http.Request, rec *record) Subscription {
	out := rec.public()
	if key, _ := r.Context().Value(keyCtx{}).(*apikey.Key); key == nil || !key.Allows(ScopeControl) {
		out.URL = redact.URL(out.URL)
	}
	return out
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	rec, e := s.validate(r.Context(), req)
	if e != nil {
		writeError(w, e)
		return
	}
	n, err := s.countSubscriptions(r.Context())
	if err != nil {
		s.writeInternal(w, r, err)
		return
	}
	if n >= s.cfg.WebhookMaxSubscriptions {
		writeError(w, &apiError{Status: http.StatusConflict, Code: "too_many_subscriptions",
			Message: fmt.Sprintf("there are already %d subscriptions, the most allowed", n)})
		return
	}
	if err := s.createSubscription(r.Context(), rec); err != nil {
		s.writeInternal(w, r, err)
		return
	}
	s.log.Info("subscription created", "subscription", rec.ID, "event_types", rec.EventTypes, "job_id", rec.JobID)
	out := rec.public()
	out.Secret = rec.secret
	w.Header().Set("Location", "/v1/subscriptions/"+rec.ID)
	writeJSON(w, http.StatusCreated, out)
}

func (s *Service) countSubscriptions(ctx context.Context) (int, error) {
	keys, err := s.subs.ListKeys(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	return n, nil
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	recs, err := s.listRecords(r.Context())
	if err != nil {
		s.writeInternal(w, r, err)
		return
	}
	out := make([]Subscription, len(recs))
	for i, rec := range recs {
		out[i] = view(r, rec)
	}
	writeJSON(w, http.StatusOK, struct {
		Subscriptions []Subscription `json:"subscriptions"`
	}{out})
}

// lookup answers 404 or 503 itself when the subscription cannot be read.
func (s *Service) lookup(w http.ResponseWriter, r *http.Request) *record {
	rec, _, err := s.getRecord(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, errNotFound):
		writeError(w, errSubNotFound)
		return nil
	case err != nil:
		s.writeInternal(w, r, err)
		return nil
	}
	return rec
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	if rec := s.lookup(w, r); rec != nil {
		writeJSON(w, http.StatusOK, view(r, rec))
	}
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request) {
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
func (s *Service) handleEnable(w http.ResponseWriter, r *http.Request) {
	rec, err := s.updateRecord(r.Context(), r.PathValue("id"), func(rec *record) error {
		if rec.Status == StatusActive {
			return errUnchanged
		}
		rec.Status, rec.DisabledReason, rec.DisabledAt, rec.ConsecutiveFailures = StatusActive, "", nil, 0
		return nil
	})
	switch {
	case errors.Is(err, errNotFound):
		writeError(w, errSubNotFound)
		return
	case err != nil && !errors.Is(err, errUnchanged):
		s.writeInternal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rec.public())
}

// replayRequest is the body of POST /v1/subscriptions/{id}/replay.
type replayRequest struct {
	Since *time.Time `json:"since"`
	Until *time.Time `json:"until"`
}

// handleReplay starts a replay: a consumer of its own from Since, which
// re-sends (same webhook-id, new signature) the subscription's events stored
// up to Until (default: now) and is removed when done.
func (s *Service) handleReplay(w http.ResponseWriter, r *http.Request) {
	rec := s.lookup(w, r)
	if rec == nil {
		return
	}
	var req replayRequest
	if e := s.decodeBody(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	now := time.Now().UTC()
	switch {
	case req.Since == nil:
		writeError(w, fieldError("since", "is required (RFC 3339 time)"))
		return
	case req.Since.After(now):
		writeError(w, fieldError("since", "is in the future"))
		return
	case req.Until != nil && !req.Until.After(*req.Since):
		writeError(w, fieldError("until", "must be after since"))
		return
	case rec.Status != StatusActive:
		writeError(w, &apiError{Status: http.StatusConflict, Code: "subscription_disabled", Message: "the subscription is disabled; enable it first"})
		return
	case len(rec.Replays) >= maxReplays:
		writeError(w, &apiError{Status: http.StatusConflict, Code: "too_many_replays", Message: fmt.Sprintf("%d replays are running; wait for one to finish", len(rec.Replays))})
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
	cons, err := s.js.CreateConsumer(r.Context(), queue.EventsStream, s.consumerConfig(rec, &rp))
	if err != nil {
		s.writeInternal(w, r, err)
		return
	}
	if _, err := s.updateRecord(r.Context(), rec.ID, func(rec *record) error {
		if rec.Status != StatusActive {
			return errors.New("the subscription was disabled meanwhile")
		}
		rec.Replays = append(rec.Replays, rp)
		return nil
	}); err != nil {
		_ = s.js.DeleteConsumer(context.WithoutCancel(r.Context()), queue.EventsStream, consumerName(rec.ID, &rp))
		s.writeInternal(w, r, err)
		return
	}
	s.log.Info("replay started", "subscription", rec.ID, "replay", rp.ID, "since", rp.Since, "until", rp.Until)
	writeJSON(w, http.StatusAccepted, struct {
		Replay
		// Pending counts stored events from Since that match the subscription's
		// filters, an upper bound of what will be re-sent.
		Pending uint64 `json:"pending"`
	}{rp, cons.CachedInfo().NumPending})
}
