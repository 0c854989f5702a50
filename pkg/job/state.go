package job

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// State is where a job is in its life.
type State string

// The job states. Terminal states never change again.
const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StatePaused    State = "paused"
	StateCompleted State = "completed"
	StateFailed    State = "failed"
	StateCanceled  State = "canceled"
)

// States lists every job state, in the order a job meets them.
func States() []State {
	return []State{StateQueued, StateRunning, StatePaused, StateCompleted, StateFailed, StateCanceled}
}

// transitions is the job state machine, written down once: from → allowed to.
var transitions = map[State][]State{
	"":             {StateQueued, StateFailed},
	StateQueued:    {StateRunning, StatePaused, StateCanceled, StateFailed, StateCompleted},
	StateRunning:   {StateQueued, StatePaused, StateCanceled, StateFailed, StateCompleted, StateRunning},
	StatePaused:    {StateQueued, StateCanceled},
	StateCompleted: {},
	StateFailed:    {StateQueued}, // a retry: a dead letter requeued
	StateCanceled:  {},
}

// ErrNotActive means no worker may be processing the job now: it is
// unknown, queued, paused or finished. Nothing is signed for such a job.
var ErrNotActive = errors.New("job: not active")

// ErrBadTransition is returned for a state change the machine does not allow.
var ErrBadTransition = errors.New("job: state transition not allowed")

// Terminal reports whether s never changes again.
func (s State) Terminal() bool {
	return s == StateCompleted || s == StateFailed || s == StateCanceled
}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	_, ok := transitions[s]
	return ok && s != ""
}

// CanTransition reports whether from → to is allowed.
func CanTransition(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// CheckTransition returns ErrBadTransition, wrapped with the states, when from → to is not allowed.
func CheckTransition(from, to State) error {
	if !CanTransition(from, to) {
		return fmt.Errorf("%w: %s → %s", ErrBadTransition, displayState(from), to)
	}
	return nil
}

func displayState(s State) string {
	if s == "" {
		return "(new)"
	}
	return string(s)
}

// Error is a failure recorded on a job.
type Error struct {
	// Code is stable and machine-readable, e.g. "source_not_found", "policy_refused".
	Code string `json:"code"`
	// Message is for people.
	Message string `json:"message"`
	// Permanent failures are not retried.
	Permanent bool `json:"permanent"`
}

// Status is the durable answer to "what happened to job X".
type Status struct {
	Job     Job   `json:"job"`
	State   State `json:"state"`
	Attempt int   `json:"attempt"`
	// Runs counts the workers that started the job since it was submitted
	// or last resumed, less the runs handed back at a worker's shutdown:
	// after VODPIPE_JOBS_MAX_DELIVER runs without an outcome (or with
	// transient failures) the job is dead-lettered. Deliveries that never
	// started it (its lease held elsewhere, a store briefly unreachable) do
	// not count.
	Runs       int       `json:"runs,omitempty"`
	BytesDone  int64     `json:"bytesDone"`
	BytesTotal int64     `json:"bytesTotal"`
	FileID     string    `json:"fileId,omitempty"`
	MediaURL   string    `json:"mediaUrl,omitempty"`
	CoverURL   string    `json:"coverUrl,omitempty"`
	Error      *Error    `json:"error,omitempty"`
	Worker     string    `json:"worker,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	// LogSeq and IndexSeq are the sequences of the job's entries in the
	// job index (internal/queue): by creation, and in its current state.
	LogSeq   uint64 `json:"logSeq,omitempty"`
	IndexSeq uint64 `json:"indexSeq,omitempty"`
}

// MarshalStatus encodes a status.
func MarshalStatus(s *Status) ([]byte, error) { return json.Marshal(s) }

// UnmarshalStatus decodes a status.
func UnmarshalStatus(b []byte) (*Status, error) {
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("job: status: %w", err)
	}
	return &s, nil
}

// Control is an operator's instruction to a job, kept in the control bucket.
type Control string

// Controls.
const (
	ControlNone   Control = ""
	ControlPause  Control = "pause"
	ControlCancel Control = "cancel"
)
