package queue

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/tracing"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// Events is the EVENTS stream: job and VOD events under
// vodpipe.events.<type>.<job id>, deduplicated by event id.
type Events struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// EventSubject is the subject of an event: vodpipe.events.<type>.<job id>,
// "none" standing for events of no job; dots in a job id become '_'.
func EventSubject(e *job.Event) string {
	id := "none"
	if e.JobID != "" {
		id = subjectToken(e.JobID)
	}
	return EventsPrefix + "." + e.Type + "." + id
}

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

func encodeEvent(e *job.Event) ([]byte, error) { return json.Marshal(e) }

// Publish stores an event in the EVENTS stream (deduplicated by event id).
func (ev *Events) Publish(ctx context.Context, e *job.Event) error {
	_, err := ev.PublishOnce(ctx, e)
	return err
}

// PublishOnce is Publish that also reports whether JetStream
// dropped the event as a duplicate of one with the same id published within
// the stream's duplicate window.
func (ev *Events) PublishOnce(ctx context.Context, e *job.Event) (duplicate bool, err error) {
	b, err := encodeEvent(e)
	if err != nil {
		return false, err
	}
	m := &nats.Msg{Subject: EventSubject(e), Data: b, Header: nats.Header{jetstream.MsgIDHeader: []string{e.ID}}}
	tracing.Inject(ctx, m) // notify's delivery of it continues the trace
	ack, err := ev.js.PublishMsg(ctx, m)
	if err != nil {
		return false, fmt.Errorf("queue: publish event %s: %w", e.Type, err)
	}
	return ack.Duplicate, nil
}

// Emit builds and publishes an event.
func (ev *Events) Emit(ctx context.Context, typ, jobID string, data any) error {
	e, err := job.NewEvent(typ, jobID, data)
	if err != nil {
		return err
	}
	return ev.Publish(ctx, e)
}

// jobEventTypes are the event types of a job, the subjects ForJob reads.
var jobEventTypes = []string{job.EventQueued, job.EventStarted, job.EventProgress, job.EventPaused, job.EventResumed,
	job.EventCanceled, job.EventFailed, job.EventCompleted, job.EventVODFileUpload, job.EventVODProcedure}

// ForJob reads the events of one job stored from since on, oldest first,
// with batched direct gets on each of its subjects (no consumer). Each
// subject is literal (vodpipe.events.<type>.<job>), which the server finds
// in its subject index: a wildcard over the types would make it count the
// matches through the rest of the stream, whose cost grows with the stream
// (about 300 ms at a million jobs). It reads at most max events; more is
// reported as truncated. since is the job's creation: its events cannot be
// older, and the server starts its search there.
func (ev *Events) ForJob(ctx context.Context, jobID string, since time.Time, max int) (events []job.Event, truncated bool, err error) {
	type stored struct {
		seq uint64
		e   job.Event
	}
	var all []stored
	for _, t := range jobEventTypes {
		n := 0 // of this type: each type is read up to max+1, so the oldest max of all are among them
		err := ScanSince(ctx, ev.js.Conn(), EventsStream, EventFilterSubject(t, jobID), since.Add(-time.Second), func(m *nats.Msg) bool {
			var e job.Event
			if json.Unmarshal(m.Data, &e) != nil || e.JobID != jobID {
				return true // another job's id that maps to the same subject token
			}
			seq, _ := strconv.ParseUint(ServerHeader(m.Header, jetstream.SequenceHeader), 10, 64)
			all = append(all, stored{seq, e})
			n++
			return n <= max
		})
		if err != nil {
			return nil, false, err
		}
	}
	slices.SortFunc(all, func(a, b stored) int { return cmp.Compare(a.seq, b.seq) })
	if truncated = len(all) > max; truncated {
		all = all[:max]
	}
	events = make([]job.Event, len(all))
	for i, s := range all {
		events[i] = s.e
	}
	return events, truncated, nil
}
