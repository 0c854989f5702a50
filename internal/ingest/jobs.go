package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/redact"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// decodeJob parses a submitted job strictly. The API lets clients omit v and
// id: they are defaulted and the job validated again.
func decodeJob(b []byte) (*job.Job, error) {
	j, err := job.Decode(b)
	var ve *job.ValidationError
	if j == nil || !errors.As(err, &ve) {
		return j, err
	}
	if j.V == 0 {
		j.V = job.Version
	}
	if j.ID == "" {
		j.ID = job.NewID()
	}
	if err := j.Validate(); err != nil {
		return j, err
	}
	return j, nil
}

func (s *Service) createJob(w http.ResponseWriter, r *http.Request) {
	b, ok := s.body(w, r)
	if !ok {
		return
	}
	idemKey := r.Header.Get("Idempotency-Key")
	if idemKey != "" {
		if len(idemKey) > 255 {
			httpapi.Refuse(w, http.StatusBadRequest, httpapi.CodeInvalidHeader, "Idempotency-Key is longer than 255 characters", nil)
			return
		}
		if id, ok := s.idempotentJob(r, idemKey); ok {
			st, _, err := s.q.Statuses.Get(r.Context(), id)
			// A job that may have no message (its first submit could not
			// publish it: storage full, or an ingest that died in between)
			// goes through Submit, which publishes it again.
			if err == nil && !s.q.Jobs.MayBeUnpublished(st) {
				s.metrics.jobs.WithLabelValues("duplicate").Inc()
				httpapi.WriteJSON(w, http.StatusOK, viewFor(r, st))
				return
			}
		}
	}
	j, err := decodeJob(b)
	if err != nil {
		s.invalidJob(w, err)
		return
	}
	j.Normalize()
	if idemKey != "" {
		// The first request with this key claims it for its job id.
		if id, claimed := s.claimIdempotency(r, idemKey, j.ID); !claimed {
			j.ID = id
		}
	}
	res := s.q.Jobs.Submit(r.Context(), []*job.Job{j})[0]
	if res.Err != nil {
		s.log.Error("submit failed", "job_id", j.ID, "err", res.Err)
		if errors.Is(res.Err, queue.ErrStorageFull) {
			w.Header().Set("Retry-After", storageRetryAfter)
			httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeStorageFull, storageFullMessage, nil)
			return
		}
		httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeQueueUnavailable, "the job could not be queued; retry", nil)
		return
	}
	if res.Duplicate {
		// The job stored may be someone else's (the same id): its URLs are
		// shown whole to the control scope only, as in every listing.
		s.metrics.jobs.WithLabelValues("duplicate").Inc()
		httpapi.WriteJSON(w, http.StatusOK, viewFor(r, res.Status))
		return
	}
	s.metrics.jobs.WithLabelValues("queued").Inc()
	w.Header().Set("Location", "/v1/jobs/"+j.ID)
	httpapi.WriteJSON(w, http.StatusCreated, statusView(res.Status))
}

func idemKeyHash(r *http.Request, key string) string {
	owner := ""
	if k := keyFrom(r); k != nil {
		owner = k.Name
	}
	h := sha256.Sum256([]byte(owner + "\x00" + key))
	return hex.EncodeToString(h[:])
}

func (s *Service) idempotentJob(r *http.Request, key string) (string, bool) {
	e, err := s.idem.Get(r.Context(), idemKeyHash(r, key))
	if err != nil {
		return "", false
	}
	return string(e.Value()), true
}

// claimIdempotency records key → jobID unless the key is taken; it returns the owning job id.
func (s *Service) claimIdempotency(r *http.Request, key, jobID string) (string, bool) {
	k := idemKeyHash(r, key)
	if _, err := s.idem.Create(r.Context(), k, []byte(jobID)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			if id, ok := s.idempotentJob(r, key); ok {
				return id, false
			}
		}
	}
	return jobID, true
}

func (s *Service) invalidJob(w http.ResponseWriter, err error) {
	s.metrics.jobs.WithLabelValues("invalid").Inc()
	var ve *job.ValidationError
	if errors.As(err, &ve) {
		httpapi.Refuse(w, http.StatusBadRequest, httpapi.CodeInvalidJob, ve.Error(), ve.Fields)
		return
	}
	httpapi.Refuse(w, http.StatusBadRequest, httpapi.CodeInvalidJob, err.Error(), nil)
}

func (s *Service) createBatch(w http.ResponseWriter, r *http.Request) {
	b, ok := s.body(w, r, "application/x-ndjson")
	if !ok {
		return
	}
	raws, err := splitBatch(b, r.Header.Get("Content-Type"), s.cfg.BatchMax)
	if errors.Is(err, errBatchTooLarge) {
		httpapi.Refuse(w, http.StatusRequestEntityTooLarge, httpapi.CodeBatchTooLarge, fmt.Sprintf("more than %d jobs, at most %d per batch", s.cfg.BatchMax, s.cfg.BatchMax), nil)
		return
	}
	if err != nil {
		httpapi.Refuse(w, http.StatusBadRequest, httpapi.CodeInvalidBatch, err.Error(), nil)
		return
	}
	if len(raws) == 0 {
		httpapi.Refuse(w, http.StatusBadRequest, httpapi.CodeInvalidBatch, "the batch is empty", nil)
		return
	}
	resp := client.BatchResponse{Items: make([]client.BatchItem, len(raws))}
	var valid []*job.Job
	var validIdx []int
	for i, raw := range raws {
		resp.Items[i].Index = i
		j, err := decodeJob(raw)
		if err != nil {
			item := &resp.Items[i]
			item.Result, item.Error = "invalid", err.Error()
			var ve *job.ValidationError
			if errors.As(err, &ve) {
				item.Fields = ve.Fields
			}
			if j != nil {
				item.ID = j.ID
			}
			resp.Invalid++
			continue
		}
		j.Normalize()
		valid = append(valid, j)
		validIdx = append(validIdx, i)
	}
	full := 0 // items refused for want of storage
	for k, res := range s.q.Jobs.Submit(r.Context(), valid) {
		item := &resp.Items[validIdx[k]]
		item.ID = res.Job.ID
		switch {
		case res.Err != nil:
			item.Result, item.Error = "error", "not queued; retry this item"
			if errors.Is(res.Err, queue.ErrStorageFull) {
				item.Error = "not queued: " + storageFullMessage
				full++
			}
			resp.Failed++
			s.log.Error("batch item failed", "job_id", res.Job.ID, "err", res.Err)
		case res.Duplicate:
			v := viewFor(r, res.Status)
			item.Result, item.State, item.Job = "duplicate", res.Status.State, &v
			resp.Duplicate++
		default:
			item.Result, item.State = "queued", job.StateQueued
			resp.Queued++
		}
	}
	s.metrics.jobs.WithLabelValues("queued").Add(float64(resp.Queued))
	s.metrics.jobs.WithLabelValues("duplicate").Add(float64(resp.Duplicate))
	s.metrics.jobs.WithLabelValues("invalid").Add(float64(resp.Invalid))
	status := http.StatusOK
	if resp.Invalid+resp.Failed > 0 {
		status = http.StatusMultiStatus
	}
	if full > 0 {
		w.Header().Set("Retry-After", storageRetryAfter)
		if full == len(raws) {
			status = http.StatusServiceUnavailable // nothing taken, all for want of storage
		}
	}
	httpapi.WriteJSON(w, status, resp)
}

// storageFullMessage is the reason of a job refused because JetStream's
// storage is full, and storageRetryAfter when to try again (seconds).
const (
	storageFullMessage = "NATS JetStream storage is full (the jobs stream's byte limit, VODPIPE_JOBS_MAX_BYTES, or the server's storage limit): " +
		"the job is not queued yet; space returns as workers finish jobs: submit it again later (meanwhile ingest retries it while it runs)"
	storageRetryAfter = "30"
)

// errBatchTooLarge is a batch of more jobs than its bound.
var errBatchTooLarge = errors.New("ingest: batch too large")

// splitBatch returns the raw job objects of a JSON array or NDJSON body,
// errBatchTooLarge as soon as it finds more than most: a body of millions of
// tiny elements ([0,0,0,...] in the body's 16 MiB) held hundreds of MiB
// before the bound was checked.
func splitBatch(b []byte, contentType string, most int) ([]json.RawMessage, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	trimmed := bytes.TrimSpace(b)
	var raws []json.RawMessage
	if mt != "application/x-ndjson" && len(trimmed) > 0 && trimmed[0] == '[' {
		notArray := func(err error) error { return fmt.Errorf("the body is not a JSON array of jobs: %v", err) }
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		if _, err := dec.Token(); err != nil { // [
			return nil, notArray(err)
		}
		for dec.More() {
			if len(raws) == most {
				return nil, errBatchTooLarge
			}
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, notArray(err)
			}
			raws = append(raws, raw)
		}
		if _, err := dec.Token(); err != nil { // ]
			return nil, notArray(err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, notArray(errors.New("data after the array"))
		}
		return raws, nil
	}
	// NDJSON: the lines of the body (bounded as a whole), each however
	// long: a line longer than a job may be is that item's refusal (each
	// is decoded as a job), not the batch's.
	for rest := b; len(rest) > 0; {
		line, after, _ := bytes.Cut(rest, []byte{'\n'})
		rest = after
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		if len(raws) == most {
			return nil, errBatchTooLarge
		}
		raws = append(raws, line)
	}
	return raws, nil
}

func statusView(s *job.Status) client.JobView {
	return client.JobView{ID: s.Job.ID, State: s.State, Attempt: s.Attempt, Runs: s.Runs, BytesDone: s.BytesDone, BytesTotal: s.BytesTotal,
		FileID: s.FileID, MediaURL: s.MediaURL, CoverURL: s.CoverURL, Error: s.Error, Worker: s.Worker, CreatedAt: s.CreatedAt,
		UpdatedAt: s.UpdatedAt, Job: s.Job}
}

// viewFor is the job view answered to r's caller: a key with the control
// scope sees the job's source and cover whole; any other sees them with
// userinfo and query redacted, since they may carry signed-URL tokens.
func viewFor(r *http.Request, st *job.Status) client.JobView {
	v := statusView(st)
	if k := keyFrom(r); k == nil || !k.Allows(ScopeControl) {
		v.Job.Source, v.Job.Cover = redact.URL(v.Job.Source), redact.URL(v.Job.Cover)
	}
	return v
}

// pathJobID is the {id} of a job's path, or false once it answered 404 for
// an id no job can have (the status store would refuse it as a key, a 503).
func pathJobID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !job.ValidID(id) {
		httpapi.Refuse(w, http.StatusNotFound, httpapi.CodeNotFound, "no job "+id+": not a job id", nil)
		return "", false
	}
	return id, true
}

func (s *Service) getJob(w http.ResponseWriter, r *http.Request) {
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
	httpapi.WriteJSON(w, http.StatusOK, viewFor(r, st))
}

// queryLimit is a list's page size: the query's limit (1..1000), 100 by
// default; a bad one is added to fields.
func queryLimit(q url.Values, fields []job.FieldError) (int, []job.FieldError) {
	v := q.Get("limit")
	if v == "" {
		return 100, fields
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		fields = append(fields, job.FieldError{Field: "limit", Reason: "must be 1..1000"})
	}
	return n, fields
}

func (s *Service) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var fields []job.FieldError
	state := job.State(q.Get("state"))
	if state != "" && !state.Valid() {
		fields = append(fields, job.FieldError{Field: "state", Reason: "unknown state"})
	}
	limit, fields := queryLimit(q, fields)
	var after uint64
	if c := q.Get("cursor"); c != "" {
		var ok bool
		if after, ok = decodeCursor(c, state); !ok {
			fields = append(fields, job.FieldError{Field: "cursor", Reason: "not a cursor of this listing (cursors belong to one state filter)"})
		}
	}
	for k := range q {
		if k != "state" && k != "limit" && k != "cursor" {
			fields = append(fields, job.FieldError{Field: k, Reason: "unknown query parameter"})
		}
	}
	if len(fields) > 0 {
		httpapi.Refuse(w, http.StatusBadRequest, httpapi.CodeInvalidQuery, "invalid query parameters", fields)
		return
	}
	page, err := s.q.Statuses.Page(r.Context(), state, after, limit)
	if err != nil {
		s.log.Error("list jobs", "err", err)
		httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "status store unavailable", nil)
		return
	}
	resp := client.ListResponse{Jobs: make([]client.JobView, 0, len(page.Statuses))}
	for _, st := range page.Statuses {
		resp.Jobs = append(resp.Jobs, viewFor(r, st))
	}
	if page.Next != 0 {
		resp.NextCursor = encodeCursor(page.Next, state)
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
}

// countJobs answers GET /v1/jobs:counts: the jobs stored by state, and all,
// from the job index in one read whatever their number.
func (s *Service) countJobs(w http.ResponseWriter, r *http.Request) {
	if refuseQuery(w, r) {
		return
	}
	counts, err := s.q.Index.Counts(r.Context())
	if err != nil {
		s.log.Error("count jobs", "err", err)
		httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "status store unavailable", nil)
		return
	}
	resp := client.CountsResponse{All: counts[""], States: map[job.State]uint64{}}
	for _, st := range job.States() {
		resp.States[st] = counts[st]
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
}

// A cursor is the job index's sequence of the last entry a page read, with
// the state filter it belongs to ("" for none): "<state>:<seq>", base64url.
func encodeCursor(seq uint64, state job.State) string {
	return base64.RawURLEncoding.EncodeToString([]byte(string(state) + ":" + strconv.FormatUint(seq, 10)))
}

func decodeCursor(c string, state job.State) (uint64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, false
	}
	st, seq, ok := strings.Cut(string(b), ":")
	if !ok || job.State(st) != state {
		return 0, false
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	return n, err == nil && n > 0 && n < math.MaxUint64
}

func (s *Service) control(w http.ResponseWriter, r *http.Request, f func(id string) (*job.Status, error)) {
	id, ok := pathJobID(w, r)
	if !ok {
		return
	}
	_, err := f(id)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		httpapi.Refuse(w, http.StatusNotFound, httpapi.CodeNotFound, "no job "+id, nil)
		return
	case errors.Is(err, queue.ErrConflict):
		httpapi.Refuse(w, http.StatusConflict, httpapi.CodeConflict, err.Error(), nil)
		return
	case err != nil:
		httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "could not change the job; retry", nil)
		return
	}
	st, _, err := s.q.Statuses.Get(r.Context(), id)
	if err != nil {
		httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "status store unavailable", nil)
		return
	}
	httpapi.WriteJSON(w, http.StatusAccepted, statusView(st))
}

func (s *Service) pauseJob(w http.ResponseWriter, r *http.Request) {
	s.control(w, r, func(id string) (*job.Status, error) { return s.q.Control.Pause(r.Context(), id) })
}

func (s *Service) resumeJob(w http.ResponseWriter, r *http.Request) {
	s.control(w, r, func(id string) (*job.Status, error) { return s.q.Control.Resume(r.Context(), id) })
}

func (s *Service) cancelJob(w http.ResponseWriter, r *http.Request) {
	s.control(w, r, func(id string) (*job.Status, error) { return s.q.Control.Cancel(r.Context(), id) })
}

func (s *Service) createSignature(w http.ResponseWriter, r *http.Request) {
	key := keyFrom(r)
	if !s.allowSignature(w, key) {
		return
	}
	var req client.SignatureRequest
	if !s.decode(w, r, &req) {
		return
	}
	if req.ValiditySeconds < 0 {
		httpapi.Write(w, httpapi.Field(httpapi.CodeInvalidParameter, "validitySeconds", "must not be negative (0: the signing policy's longest)"))
		return
	}
	// Capped before the multiplication: a huge value would overflow a
	// Duration to a negative one (the policy caps it anyway).
	validity := time.Duration(min(req.ValiditySeconds, int64(s.cfg.MaxValidity/time.Second))) * time.Second
	sreq := signer.Request{Procedure: req.Procedure, StorageRegion: req.StorageRegion,
		ClassID: req.ClassID, SubAppID: req.SubAppID, SourceContext: req.SourceContext, SessionContext: req.SessionContext,
		OneTime: req.OneTime, Validity: validity}
	if key.Upload != nil {
		// An end user: the token's policy, chosen by the application's backend.
		var bad []job.FieldError
		if sreq, bad = tokenSignRequest(key.Upload, req); len(bad) > 0 {
			s.metrics.sigs.WithLabelValues("policy_refused").Inc()
			httpapi.Refuse(w, http.StatusForbidden, httpapi.CodePolicyRefused, "the upload token fixes the signature's policy", bad)
			return
		}
	}
	resp, err := s.signer.Sign(sreq)
	if err != nil {
		s.writeSignError(w, err)
		return
	}
	s.metrics.sigs.WithLabelValues("signed").Inc()
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, client.SignatureResponse{Signature: resp.Signature, ExpireTime: resp.ExpireTime})
}

// allowSignature applies the signature rate limits: the caller's own (its
// upload token, or its API key), then all callers' together, so a caller
// over its own limit spends nothing of the others'.
func (s *Service) allowSignature(w http.ResponseWriter, key *caller) bool {
	now := time.Now()
	var ok bool
	who := "this API key"
	if key.Upload != nil {
		ok, who = s.tokenLimits.allow(key.Upload.ID, now), "this upload token"
	} else {
		ok = s.keyLimits.allow(key.Name, now)
	}
	if ok && !s.globalLimit.AllowN(now, 1) {
		ok, who = false, "this service"
	}
	if !ok {
		s.metrics.sigs.WithLabelValues("rate_limited").Inc()
		w.Header().Set("Retry-After", "1")
		httpapi.Refuse(w, http.StatusTooManyRequests, httpapi.CodeRateLimited, "too many signature requests for "+who, nil)
	}
	return ok
}

// writeSignError answers a refused signature: 403 for the policy, 400 for
// a malformed request, each naming the field.
func (s *Service) writeSignError(w http.ResponseWriter, err error) {
	var se *signer.Error
	if errors.As(err, &se) && se.Code == signer.CodePolicy {
		s.metrics.sigs.WithLabelValues("policy_refused").Inc()
		var fields []job.FieldError
		if se.Field != "" {
			fields = []job.FieldError{{Field: se.Field, Reason: se.Message}}
		}
		httpapi.Refuse(w, http.StatusForbidden, httpapi.CodePolicyRefused, se.Message, fields)
		return
	}
	s.metrics.sigs.WithLabelValues("invalid").Inc()
	var fields []job.FieldError
	for _, fe := range vodFieldErrors(err) {
		fields = append(fields, job.FieldError{Field: fe.Field, Reason: fe.Reason})
	}
	httpapi.Refuse(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, "the signature request is not valid", fields)
}

// vodFieldErrors collects vod's field errors from an error tree.
func vodFieldErrors(err error) []*vod.FieldError {
	var out []*vod.FieldError
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*vod.FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			if e := u.Unwrap(); e != nil {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}

// body reads a request's body: a JSON Content-Type (or one of also), at
// most MaxBody bytes.
func (s *Service) body(w http.ResponseWriter, r *http.Request, also ...string) ([]byte, bool) {
	if e := httpapi.JSONContent(r, also...); e != nil {
		httpapi.Write(w, e)
		return nil, false
	}
	b, e := httpapi.ReadBody(w, r, s.cfg.MaxBody)
	if e != nil {
		httpapi.Write(w, e)
		return nil, false
	}
	return b, true
}

// decode reads a JSON body into v strictly; an empty body leaves v as it is.
func (s *Service) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if e := (httpapi.Body{Max: s.cfg.MaxBody, Optional: true}).Decode(w, r, v); e != nil {
		httpapi.Write(w, e)
		return false
	}
	return true
}
