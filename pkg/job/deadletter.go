package job

import (
	"encoding/json"
	"time"
)

// DeadLetter is a job that failed for good, with the reason.
type DeadLetter struct {
	JobID   string    `json:"jobId,omitempty"`
	Code    string    `json:"code"`
	Reason  string    `json:"reason"`
	Attempt int       `json:"attempt"`
	Time    time.Time `json:"time"`
	// Message is the job message as received, when it was JSON.
	Message json.RawMessage `json:"message,omitempty"`
	// RawMessage is the job message as received, when it was not JSON.
	RawMessage []byte `json:"rawMessage,omitempty"`
	// StreamSeq is the message's sequence in the JOBS stream.
	StreamSeq uint64 `json:"streamSeq,omitempty"`
	// Truncated is set when the message was too big to keep whole: RawMessage
	// holds its first 512 KiB, and Size its length.
	Truncated bool `json:"truncated,omitempty"`
	Size      int  `json:"size,omitempty"`
}

// DeadLetterEntry is a dead letter and its sequence in the dead-letter stream.
type DeadLetterEntry struct {
	Seq uint64 `json:"seq"`
	DeadLetter
}
