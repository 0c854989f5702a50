package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// EventFilterSubject is the subject filter on the EVENTS stream that holds
// the events of one type pattern, optionally of one job. eventType is an
// exact type ("job.completed"), a namespace wildcard ("job.*") or "*" for
// every type; jobID "" means every job (and events of no job).
//
// A job id is mapped to its subject token as EventSubject does, so two job
// ids that differ only in characters a subject cannot hold ('.', '*', '>',
// spaces) share a subject: filter on the envelope's jobId as well.
func EventFilterSubject(eventType, jobID string) string {
	jobTok := "*"
	if jobID != "" {
		jobTok = subjectToken(jobID)
	}
	if eventType == "*" {
		if jobID == "" {
			return EventsPrefix + ".>"
		}
		return EventsPrefix + ".*.*." + jobTok
	}
	return EventsPrefix + "." + eventType + "." + jobTok
}

// PublishEventOnce is PublishEvent that also reports whether JetStream
// dropped the event as a duplicate of one with the same id published within
// the stream's duplicate window.
func (q *Queue) PublishEventOnce(ctx context.Context, e *job.Event) (duplicate bool, err error) {
	b, err := encodeEvent(e)
	if err != nil {
		return false, err
	}
	ack, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: EventSubject(e), Data: b,
		Header: nats.Header{jetstream.MsgIDHeader: []string{e.ID}}})
	if err != nil {
		return false, fmt.Errorf("queue: publish event %s: %w", e.Type, err)
	}
	return ack.Duplicate, nil
}

// WaitJobForFile returns the job that uploaded a FileId, waiting until the
// mapping is recorded or ctx ends (then it returns ErrNotFound). It watches
// the key rather than polling, so a mapping recorded a moment after the
// call is seen at once.
func (q *Queue) WaitJobForFile(ctx context.Context, fileID string) (string, error) {
	id, err := q.JobForFile(ctx, fileID)
	switch {
	case err == nil:
		return id, nil
	case ctx.Err() != nil:
		return "", fmt.Errorf("%w: file %s", ErrNotFound, fileID)
	case !errors.Is(err, ErrNotFound):
		return "", err
	}
	if strings.ContainsAny(fileID, "*> ") {
		return "", fmt.Errorf("%w: file %s", ErrNotFound, fileID)
	}
	w, err := q.files.Watch(ctx, fileID)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("%w: file %s", ErrNotFound, fileID)
		}
		return "", fmt.Errorf("queue: watch file %s: %w", fileID, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return "", fmt.Errorf("%w: file %s", ErrNotFound, fileID)
			}
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				return string(e.Value()), nil
			}
		case <-ctx.Done():
			return "", fmt.Errorf("%w: file %s", ErrNotFound, fileID)
		}
	}
}
