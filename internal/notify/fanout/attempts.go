package fanout

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// maxResponseSnippet bounds the part of a failed answer an attempt keeps.
const maxResponseSnippet = 512

// Attempt is one delivery attempt of one event to one subscription.
type Attempt = client.Attempt

func attemptsSubject(subID string) string { return attemptsPrefix + "." + subID }

// recordAttempt appends an attempt to the subscription's log. The log is
// for people; a lost record never holds up a delivery.
func (s *Fanout) recordAttempt(ctx context.Context, a Attempt) {
	b, err := json.Marshal(a)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := s.js.Publish(ctx, attemptsSubject(a.SubscriptionID), b); err != nil {
		s.log.Warn("record delivery attempt", "subscription", a.SubscriptionID, "event", a.EventID, "err", err)
	}
}

// maxAttemptsLimit bounds ?limit= of the attempts listing.
const maxAttemptsLimit = 1000

// handleAttempts lists a subscription's delivery attempts, newest first:
// ?limit= (default 100), ?eventId= and ?outcome= filter.
func (s *Fanout) handleAttempts(w http.ResponseWriter, r *http.Request) {
	rec := s.lookup(w, r)
	if rec == nil {
		return
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAttemptsLimit {
			httpapi.Write(w, &httpapi.Error{Status: http.StatusBadRequest, Code: httpapi.CodeInvalidParameter, Message: fmt.Sprintf("limit must be an integer from 1 to %d", maxAttemptsLimit),
				Fields: []job.FieldError{{Field: "limit", Reason: fmt.Sprintf("limit must be an integer from 1 to %d", maxAttemptsLimit)}}})
			return
		}
		limit = n
	}
	eventID, outcome := r.URL.Query().Get("eventId"), r.URL.Query().Get("outcome")
	all, err := s.readAttempts(r.Context(), rec.ID)
	if err != nil {
		s.writeInternal(w, r, err)
		return
	}
	out := make([]Attempt, 0, min(limit, len(all)))
	for _, a := range slices.Backward(all) {
		if len(out) == limit {
			break
		}
		if eventID != "" && a.EventID != eventID || outcome != "" && a.Outcome != outcome {
			continue
		}
		out = append(out, a)
	}
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Attempts []Attempt `json:"attempts"`
	}{out})
}

// readAttempts reads a subscription's whole log (bounded by
// AttemptsPerSubscription), oldest first, with batched direct gets: no
// consumer (notify's user may create none of this stream).
func (s *Fanout) readAttempts(ctx context.Context, subID string) ([]Attempt, error) {
	var out []Attempt
	err := queue.Scan(ctx, s.nc, AttemptsStream, attemptsSubject(subID), func(m *nats.Msg) {
		var a Attempt
		if json.Unmarshal(m.Data, &a) == nil {
			out = append(out, a)
		}
	})
	return out, err
}
