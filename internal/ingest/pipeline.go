package ingest

import (
	"errors"
	"net/http"
	"time"

	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/redact"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// maxJobEvents bounds the events GET /v1/jobs/{id}/events answers.
const maxJobEvents = 1000

// refuseQuery answers 400 for a request that takes no query parameters
// but has some; false when it has none.
func refuseQuery(w http.ResponseWriter, r *http.Request) bool {
	if len(r.URL.Query()) == 0 {
		return false
	}
	var fields []job.FieldError
	for k := range r.URL.Query() {
		fields = append(fields, job.FieldError{Field: k, Reason: "unknown query parameter"})
	}
	httpapi.Refuse(w, http.StatusBadRequest, httpapi.CodeInvalidQuery, "invalid query parameters", fields)
	return true
}

// jobEvents answers a job's stored events, oldest first: its timeline,
// read from the job's creation on its own subjects.
func (s *Service) jobEvents(w http.ResponseWriter, r *http.Request) {
	if refuseQuery(w, r) {
		return
	}
	id, ok := pathJobID(w, r)
	if !ok {
		return
	}
	st, _, err := s.q.Statuses.Get(r.Context(), id)
	if errors.Is(err, queue.ErrNotFound) {
		httpapi.Refuse(w, http.StatusNotFound, httpapi.CodeNotFound, "no job "+id, nil)
		return
	}
	if err != nil {
		httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "status store unavailable", nil)
		return
	}
	evs, truncated, err := s.q.Events.ForJob(r.Context(), id, st.CreatedAt, maxJobEvents)
	if err != nil {
		s.log.Warn("job events", "job_id", id, "err", err)
		httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "event store unavailable", nil)
		return
	}
	if evs == nil {
		evs = []job.Event{}
	}
	if k := keyFrom(r); k == nil || !k.Allows(ScopeControl) {
		redactQueued(evs)
	}
	httpapi.WriteJSON(w, http.StatusOK, client.JobEventsResponse{Events: evs, Truncated: truncated})
}

// retryJob runs a failed job again from its newest dead letter (what
// POST /v1/dead-letters/{seq}/requeue does, found by the job's id).
func (s *Service) retryJob(w http.ResponseWriter, r *http.Request) {
	id, ok := pathJobID(w, r)
	if !ok {
		return
	}
	st, _, err := s.q.Statuses.Get(r.Context(), id)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		httpapi.Refuse(w, http.StatusNotFound, httpapi.CodeNotFound, "no job "+id, nil)
		return
	case err != nil:
		httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "status store unavailable", nil)
		return
	case st.State != job.StateFailed:
		httpapi.Refuse(w, http.StatusConflict, httpapi.CodeConflict, "job "+id+" is "+string(st.State)+", not failed", nil)
		return
	}
	dl, err := s.q.DeadLetters.LastOf(r.Context(), id)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		httpapi.Refuse(w, http.StatusConflict, httpapi.CodeConflict, "job "+id+" has no dead letter left to run it from (it expired)", nil)
		return
	case err != nil:
		httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "dead letters unavailable", nil)
		return
	}
	r.SetPathValue("seq", formatSeq(dl.Seq))
	s.requeueDeadLetter(w, r)
}

// stats answers the queue's depth and the last hour's throughput.
func (s *Service) stats(w http.ResponseWriter, r *http.Request) {
	if refuseQuery(w, r) {
		return
	}
	d, err := s.q.Depth(r.Context())
	if err != nil {
		s.log.Warn("stats: queue depth", "err", err)
		httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "queue unavailable", nil)
		return
	}
	tp, since := s.live.throughput(time.Now())
	httpapi.WriteJSON(w, http.StatusOK, client.StatsResponse{
		Queue:      client.QueueDepth{Pending: d.Pending, InFlight: d.InFlight, Stranded: d.Stranded, DeadLetters: d.DeadLetters},
		Throughput: tp, CountedSince: since,
	})
}

// redactQueued redacts the source and cover URLs in job.queued events (their
// data is the job), as GET /v1/jobs/{id} does for a key without the control
// scope: they may carry signed-URL tokens.
func redactQueued(evs []job.Event) {
	for i, e := range evs {
		if e.Type != job.EventQueued {
			continue
		}
		evs[i].Data = redact.QueuedJob(e.Data)
	}
}
