package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// Client calls the ingest HTTP API (the CLI and tests use it).
type Client struct {
	base string
	key  string
	http *http.Client
	// eventIdle bounds the silence of an event stream (WithEventStreamIdle).
	eventIdle time.Duration
}

// NewClient returns a client for the API at base with a bearer API key.
func NewClient(base, apiKey string) *Client {
	return &Client{base: strings.TrimRight(base, "/"), key: apiKey, http: &http.Client{Timeout: 60 * time.Second}}
}

// WithHTTPClient returns a copy of c that sends its requests with hc (a
// custom transport, timeouts).
func (c *Client) WithHTTPClient(hc *http.Client) *Client {
	cp := *c
	cp.http = hc
	return &cp
}

// APIError is an error answer of the API.
type APIError struct {
	Status  int
	Code    string
	Message string
	Fields  []job.FieldError
}

// Error implements error.
func (e *APIError) Error() string {
	msg := fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	for _, f := range e.Fields {
		msg += "; " + f.Error()
	}
	return msg
}

func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte, out any, headers ...string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 400 {
		var e ErrorBody
		_ = json.Unmarshal(raw, &e)
		return resp.StatusCode, &APIError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, Fields: e.Error.Fields}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("ingest client: answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// Submit submits one job; created is false when the job existed already.
func (c *Client) Submit(ctx context.Context, j *job.Job, idempotencyKey string) (v JobView, created bool, err error) {
	b, err := json.Marshal(j)
	if err != nil {
		return v, false, err
	}
	var h []string
	if idempotencyKey != "" {
		h = []string{"Idempotency-Key", idempotencyKey}
	}
	status, err := c.do(ctx, http.MethodPost, "/v1/jobs", "application/json", b, &v, h...)
	return v, status == http.StatusCreated, err
}

// SubmitBatch submits jobs as NDJSON.
func (c *Client) SubmitBatch(ctx context.Context, jobs []*job.Job) (BatchResponse, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, j := range jobs {
		if err := enc.Encode(j); err != nil {
			return BatchResponse{}, err
		}
	}
	var out BatchResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/jobs:batch", "application/x-ndjson", buf.Bytes(), &out)
	return out, err
}

// Get returns a job.
func (c *Client) Get(ctx context.Context, id string) (JobView, error) {
	var v JobView
	_, err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), "", nil, &v)
	return v, err
}

// List returns one page of jobs.
func (c *Client) List(ctx context.Context, state job.State, limit int, cursor string) (ListResponse, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", string(state))
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var out ListResponse
	path := "/v1/jobs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	_, err := c.do(ctx, http.MethodGet, path, "", nil, &out)
	return out, err
}

// Counts returns how many jobs are stored, in all and by state.
func (c *Client) Counts(ctx context.Context) (CountsResponse, error) {
	var out CountsResponse
	_, err := c.do(ctx, http.MethodGet, "/v1/jobs:counts", "", nil, &out)
	return out, err
}

// JobEvents returns a job's stored events, oldest first.
func (c *Client) JobEvents(ctx context.Context, id string) (JobEventsResponse, error) {
	var out JobEventsResponse
	_, err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/events", "", nil, &out)
	return out, err
}

// Stats returns the queue's depth and the last hour's throughput.
func (c *Client) Stats(ctx context.Context) (StatsResponse, error) {
	var out StatsResponse
	_, err := c.do(ctx, http.MethodGet, "/v1/stats", "", nil, &out)
	return out, err
}

// DeadLetters lists a page of dead letters after sequence after (0: from
// the oldest), without their messages.
func (c *Client) DeadLetters(ctx context.Context, after uint64, limit int) (DeadLetterList, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", fmt.Sprint(after))
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	path := "/v1/dead-letters"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out DeadLetterList
	_, err := c.do(ctx, http.MethodGet, path, "", nil, &out)
	return out, err
}

// DeadLetter returns one dead letter whole, with its message.
func (c *Client) DeadLetter(ctx context.Context, seq uint64) (job.DeadLetterEntry, error) {
	var out job.DeadLetterEntry
	_, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/dead-letters/%d", seq), "", nil, &out)
	return out, err
}

// RequeueDeadLetter runs a dead-lettered job again (its message as
// received, under its id) and returns the job, queued.
func (c *Client) RequeueDeadLetter(ctx context.Context, seq uint64) (JobView, error) {
	var v JobView
	_, err := c.do(ctx, http.MethodPost, fmt.Sprintf("/v1/dead-letters/%d/requeue", seq), "", nil, &v)
	return v, err
}

// Control pauses, resumes, cancels or retries a job (action "pause",
// "resume", "cancel", "retry": a failed job runs again from its dead letter).
func (c *Client) Control(ctx context.Context, id, action string) (JobView, error) {
	var v JobView
	_, err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/"+action, "", nil, &v)
	return v, err
}

// Sign asks for an upload signature.
func (c *Client) Sign(ctx context.Context, r SignatureRequest) (SignatureResponse, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return SignatureResponse{}, err
	}
	var out SignatureResponse
	_, err = c.do(ctx, http.MethodPost, "/v1/signatures", "application/json", b, &out)
	return out, err
}

// UploadToken mints an upload token for one end user (a key with the sign scope).
func (c *Client) UploadToken(ctx context.Context, r UploadTokenRequest) (UploadTokenResponse, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return UploadTokenResponse{}, err
	}
	var out UploadTokenResponse
	_, err = c.do(ctx, http.MethodPost, "/v1/upload-tokens", "application/json", b, &out)
	return out, err
}
