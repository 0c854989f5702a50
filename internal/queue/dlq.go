package queue

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// WrongSubject is why a message published on subj, under the stream's
// subjects but not JobsSubject, is dead-lettered instead of run.
func WrongSubject(subj string) error {
	return fmt.Errorf("published on %s: jobs are published on %s (publish it there with a new Nats-Msg-Id: "+
		"this copy spent its one for the stream's duplicate window)", subj, JobsSubject)
}

// DeadLetterJobID is the job id a dead letter is filed under: the message's
// job id when it has one (j may be a job that failed validation), otherwise
// the publisher's Nats-Msg-Id, so the dead letter names something.
func DeadLetterJobID(j *job.Job, h nats.Header) string {
	if j != nil && j.ID != "" {
		return j.ID
	}
	return h.Get(jetstream.MsgIDHeader)
}
