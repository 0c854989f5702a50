package client

import (
	"time"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// The bodies of ingest's API, as the client sends and receives them and as
// ingest writes them (docs/openapi.json describes them).

// BatchItem is the result of one job of a batch.
type BatchItem struct {
	Index  int              `json:"index"`
	ID     string           `json:"id,omitempty"`
	Result string           `json:"result"` // queued, duplicate, invalid, error
	State  job.State        `json:"state,omitempty"`
	Error  string           `json:"error,omitempty"`
	Fields []job.FieldError `json:"fields,omitempty"`
	// Job is the existing job of a duplicate, as GET /v1/jobs/{id} shows
	// it: a repeated run over a library needs no read per file.
	Job *JobView `json:"job,omitempty"`
}

// BatchResponse is the answer of POST /v1/jobs:batch.
type BatchResponse struct {
	Queued    int         `json:"queued"`
	Duplicate int         `json:"duplicate"`
	Invalid   int         `json:"invalid"`
	Failed    int         `json:"failed"`
	Items     []BatchItem `json:"items"`
}

// JobView is a job's status as the API shows it.
type JobView struct {
	ID         string     `json:"id"`
	State      job.State  `json:"state"`
	Attempt    int        `json:"attempt"`
	Runs       int        `json:"runs,omitempty"`
	BytesDone  int64      `json:"bytesDone"`
	BytesTotal int64      `json:"bytesTotal"`
	FileID     string     `json:"fileId,omitempty"`
	MediaURL   string     `json:"mediaUrl,omitempty"`
	CoverURL   string     `json:"coverUrl,omitempty"`
	Error      *job.Error `json:"error,omitempty"`
	// Worker is the worker that runs or ran the job last.
	Worker    string    `json:"worker,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	Job       job.Job   `json:"job"`
}

// ListResponse is a page of jobs.
type ListResponse struct {
	Jobs       []JobView `json:"jobs"`
	NextCursor string    `json:"nextCursor,omitempty"`
}

// CountsResponse is the answer of GET /v1/jobs:counts: the jobs stored, in
// all and by state.
type CountsResponse struct {
	All    uint64               `json:"all"`
	States map[job.State]uint64 `json:"states"`
}

// JobEventsResponse is the answer of GET /v1/jobs/{id}/events: the job's
// events still stored, oldest first.
type JobEventsResponse struct {
	Events []job.Event `json:"events"`
	// Truncated is set when the job has more events than one answer holds
	// (the first ones are answered).
	Truncated bool `json:"truncated,omitempty"`
}

// StatsResponse is the answer of GET /v1/stats: the pipeline at a glance.
type StatsResponse struct {
	Queue QueueDepth `json:"queue"`
	// Throughput is the last hour, a minute each, oldest first; the last
	// is the current minute, still counting.
	Throughput []ThroughputMinute `json:"throughput"`
	// CountedSince is from when Throughput's counts are whole: this ingest
	// replica's start, or earlier once it has read the hour's events back.
	CountedSince time.Time `json:"countedSince"`
}

// QueueDepth is the work queue's depth.
type QueueDepth struct {
	// Pending jobs wait for their first delivery to a worker.
	Pending uint64 `json:"pending"`
	// InFlight jobs are with a worker (or wait for their redelivery).
	InFlight uint64 `json:"inFlight"`
	// Stranded jobs are held but will not be delivered (see docs/operations.md).
	Stranded uint64 `json:"stranded"`
	// DeadLetters is the number of dead letters stored.
	DeadLetters uint64 `json:"deadLetters"`
}

// ThroughputMinute is one minute of the pipeline's outcomes.
type ThroughputMinute struct {
	Start     time.Time `json:"start"`
	Completed uint64    `json:"completed"`
	Failed    uint64    `json:"failed"`
	// Bytes are the completed jobs' bytes.
	Bytes int64 `json:"bytes"`
}

// SignatureRequest is the body of POST /v1/signatures: the upload policy an
// end-user client asks for.
type SignatureRequest struct {
	Procedure      string `json:"procedure,omitempty"`
	StorageRegion  string `json:"storageRegion,omitempty"`
	ClassID        int64  `json:"classId,omitempty"`
	SubAppID       uint64 `json:"subAppId,omitempty"`
	SourceContext  string `json:"sourceContext,omitempty"`
	SessionContext string `json:"sessionContext,omitempty"`
	OneTime        bool   `json:"oneTime,omitempty"`
	// ValiditySeconds asks for a lifetime; the policy caps it.
	ValiditySeconds int64 `json:"validitySeconds,omitempty"`
}

// SignatureResponse carries the signature.
type SignatureResponse struct {
	Signature  string `json:"signature"`
	ExpireTime int64  `json:"expireTime"`
}

// DeadLetterList is a page of dead letters, oldest first. Their messages are
// left out: a dead letter can hold up to 900 KiB, and the message as a
// publisher sent it may hold what was refused in it (a URL with
// credentials), so only GET /v1/dead-letters/{seq}, with the control scope,
// returns one whole.
type DeadLetterList struct {
	DeadLetters []job.DeadLetterEntry `json:"deadLetters"`
	// Next is the after of the following page; absent on the last one.
	Next uint64 `json:"next,omitempty"`
}

// UploadTokenRequest is the body of POST /v1/upload-tokens: the end user the
// application has authenticated and the policy of every signature the token
// may get. The holder of the token chooses nothing of it.
type UploadTokenRequest struct {
	// User names the end user (1..64 letters, digits or _ . @ -).
	User           string `json:"user"`
	Procedure      string `json:"procedure,omitempty"`
	StorageRegion  string `json:"storageRegion,omitempty"`
	ClassID        int64  `json:"classId,omitempty"`
	SubAppID       uint64 `json:"subAppId,omitempty"`
	SourceContext  string `json:"sourceContext,omitempty"` // default "user=<user>"
	SessionContext string `json:"sessionContext,omitempty"`
	// OneTime makes every signature single-use (default true).
	OneTime *bool `json:"oneTime,omitempty"`
	// SignatureValiditySeconds is each signature's lifetime (default and cap: the signing policy's).
	SignatureValiditySeconds int64 `json:"signatureValiditySeconds,omitempty"`
	// TTLSeconds is the token's lifetime (default 1800, cap VODPIPE_UPLOAD_TOKEN_MAX_TTL).
	TTLSeconds int64 `json:"ttlSeconds,omitempty"`
}

// UploadTokenResponse carries a minted token.
type UploadTokenResponse struct {
	Token     string    `json:"token"`
	User      string    `json:"user"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// ErrorBody is the JSON body of every 4xx and 5xx answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong: a stable code, a message for people,
// and for a request refused because of its content, the fields at fault.
type ErrorDetail struct {
	Code    string           `json:"code"`
	Message string           `json:"message"`
	Fields  []job.FieldError `json:"fields,omitempty"`
}
