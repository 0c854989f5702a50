package job

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Event types. Every event has the same envelope; Data depends on the type.
const (
	EventQueued        = "job.queued"
	EventStarted       = "job.started"
	EventProgress      = "job.progress"
	EventPaused        = "job.paused"
	EventResumed       = "job.resumed"
	EventCanceled      = "job.canceled"
	EventFailed        = "job.failed"
	EventCompleted     = "job.completed"
	EventVODFileUpload = "vod.file_uploaded"
	EventVODProcedure  = "vod.procedure_changed"
)

// Event is the envelope of every event vodpipe publishes.
type Event struct {
	ID    string          `json:"id"`
	Type  string          `json:"type"`
	Time  time.Time       `json:"time"`
	JobID string          `json:"jobId,omitempty"`
	Data  json.RawMessage `json:"data"`
}

// ProgressData is the data of job.progress.
type ProgressData struct {
	BytesDone  int64 `json:"bytesDone"`
	BytesTotal int64 `json:"bytesTotal"`
}

// StartedData is the data of job.started.
type StartedData struct {
	Attempt int    `json:"attempt"`
	Worker  string `json:"worker"`
	// BytesResumed counts bytes that an earlier attempt already uploaded
	// (the parts its resume state records; should VOD's session have
	// expired meanwhile, the run starts over and sends them again).
	BytesResumed int64 `json:"bytesResumed"`
	// Metadata is the job's, passed through (as in job.completed and
	// job.failed): a follower learns what a job is as it starts.
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// StoppedData is the data of job.paused and job.canceled.
type StoppedData struct {
	// Metadata is the job's, passed through.
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// CompletedData is the data of job.completed.
type CompletedData struct {
	FileID        string          `json:"fileId"`
	MediaURL      string          `json:"mediaUrl"`
	CoverURL      string          `json:"coverUrl,omitempty"`
	SourceContext string          `json:"sourceContext,omitempty"`
	Bytes         int64           `json:"bytes"`
	Metadata      json.RawMessage `json:"metadata,omitempty"`
}

// FailedData is the data of job.failed.
type FailedData struct {
	Error    Error           `json:"error"`
	Attempt  int             `json:"attempt"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// FileUploadedData is the data of vod.file_uploaded, from VOD's NewFileUpload event.
type FileUploadedData struct {
	FileID          string `json:"fileId"`
	MediaURL        string `json:"mediaUrl"`
	CoverURL        string `json:"coverUrl,omitempty"`
	SourceContext   string `json:"sourceContext,omitempty"`
	ProcedureTaskID string `json:"procedureTaskId,omitempty"`
}

// NewEvent builds an event with a fresh id and the current time.
func NewEvent(typ, jobID string, data any) (*Event, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("job: event data: %w", err)
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	return &Event{ID: "ev-" + hex.EncodeToString(id), Type: typ, Time: time.Now().UTC(), JobID: jobID, Data: b}, nil
}

// ErrEventMalformed is returned by DecodeEvent.
var ErrEventMalformed = errors.New("job: event malformed")

// DecodeEvent parses an event envelope.
func DecodeEvent(b []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEventMalformed, err)
	}
	if e.ID == "" || e.Type == "" {
		return nil, fmt.Errorf("%w: id and type are required", ErrEventMalformed)
	}
	return &e, nil
}
