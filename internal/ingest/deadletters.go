package ingest

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

func (s *Service) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var fields []job.FieldError
	limit, fields := queryLimit(q, fields)
	var after uint64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			fields = append(fields, job.FieldError{Field: "after", Reason: "must be a dead letter's seq (a non-negative integer)"})
		}
		after = n
	}
	for k := range q {
		if k != "limit" && k != "after" {
			fields = append(fields, job.FieldError{Field: k, Reason: "unknown query parameter"})
		}
	}
	if len(fields) > 0 {
		httpapi.Refuse(w, http.StatusBadRequest, httpapi.CodeInvalidQuery, "invalid query parameters", fields)
		return
	}
	page, next, err := s.q.DeadLetters.Page(r.Context(), after, limit)
	if err != nil {
		s.log.Warn("list dead letters", "err", err)
		httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "dead-letter stream unavailable", nil)
		return
	}
	if page == nil {
		page = []job.DeadLetterEntry{} // an empty page is [], not null
	}
	httpapi.WriteJSON(w, http.StatusOK, client.DeadLetterList{DeadLetters: page, Next: next})
}

func (s *Service) getDeadLetter(w http.ResponseWriter, r *http.Request) {
	seq, ok := pathSeq(w, r)
	if !ok {
		return
	}
	e, err := s.q.DeadLetters.At(r.Context(), seq)
	if errors.Is(err, queue.ErrNotFound) {
		httpapi.Refuse(w, http.StatusNotFound, httpapi.CodeNotFound, "no dead letter "+r.PathValue("seq"), nil)
		return
	}
	if err != nil {
		s.log.Warn("read dead letter", "seq", seq, "err", err)
		httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "dead-letter stream unavailable", nil)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, e)
}

// requeueDeadLetter runs a dead-lettered job again (queue.DeadLetters.Requeue)
// and answers its job: 200, or 404 for no such dead letter, 409 when the
// job is not failed, 422 when the message is no job.
func (s *Service) requeueDeadLetter(w http.ResponseWriter, r *http.Request) {
	seq, ok := pathSeq(w, r)
	if !ok {
		return
	}
	st, err := s.q.DeadLetters.Requeue(r.Context(), seq)
	var ve *job.ValidationError
	switch {
	case errors.Is(err, queue.ErrNotFound):
		httpapi.Refuse(w, http.StatusNotFound, httpapi.CodeNotFound, "no dead letter "+r.PathValue("seq"), nil)
	case errors.As(err, &ve):
		httpapi.Refuse(w, http.StatusUnprocessableEntity, httpapi.CodeInvalidJob, "the dead letter's message is not a valid job: it cannot run again", ve.Fields)
	case errors.Is(err, queue.ErrNotAJob):
		httpapi.Refuse(w, http.StatusUnprocessableEntity, httpapi.CodeInvalidJob, err.Error(), nil)
	case errors.Is(err, queue.ErrConflict):
		httpapi.Refuse(w, http.StatusConflict, httpapi.CodeConflict, err.Error(), nil)
	case err != nil:
		s.log.Warn("requeue dead letter", "seq", seq, "err", err)
		httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the job could not be requeued; try again", nil)
	default:
		s.log.Info("dead letter requeued", "seq", seq, "job_id", st.Job.ID)
		httpapi.WriteJSON(w, http.StatusOK, viewFor(r, st))
	}
}

func formatSeq(seq uint64) string { return strconv.FormatUint(seq, 10) }

// pathSeq is the dead letter's seq in the path; false once it has answered
// 400 for one that is not a positive integer.
func pathSeq(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		httpapi.Refuse(w, http.StatusBadRequest, httpapi.CodeInvalidPath, "invalid dead letter",
			[]job.FieldError{{Field: "seq", Reason: "must be a dead letter's seq (a positive integer)"}})
		return 0, false
	}
	return seq, true
}
