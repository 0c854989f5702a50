package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// SubmitResult is the outcome of submitting one job of a batch.
type SubmitResult struct {
	Job *job.Job
	// Status is the job's status: the new one, or the existing one of a duplicate.
	Status    *job.Status
	Duplicate bool
	Err       error
}

// Submit records statuses, publishes the jobs and their job.queued events
// for a batch, all asynchronously with one wait per stage, so a batch costs a
// few round trips instead of three per job. A job whose id already has a
// status is a duplicate: it is not published again.
func (q *Queue) Submit(ctx context.Context, jobs []*job.Job) []SubmitResult {
	out := make([]SubmitResult, len(jobs))
	now := time.Now().UTC()
	// Stage 1: create statuses; the first submit of an id wins.
	statusFutures := make([]jetstream.PubAckFuture, len(jobs))
	for i, j := range jobs {
		out[i].Job = j
		st := &job.Status{Job: *j, State: job.StateQueued, CreatedAt: now, UpdatedAt: now}
		out[i].Status = st
		b, err := job.MarshalStatus(st)
		if err != nil {
			out[i].Err = err
			continue
		}
		m := &nats.Msg{Subject: "$KV." + StatusBucket + "." + j.ID, Data: b, Header: nats.Header{}}
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		if statusFutures[i], err = q.js.PublishMsgAsync(m); err != nil {
			out[i].Err = fmt.Errorf("queue: status %s: %w", j.ID, err)
		}
	}
	for i, f := range statusFutures {
		if f == nil {
			continue
		}
		if err := awaitAck(ctx, f); err != nil {
			if lostRace(err) {
				out[i].Duplicate = true
				if old, _, gerr := q.Status(ctx, jobs[i].ID); gerr == nil {
					out[i].Status = old
				}
				continue
			}
			out[i].Err = fmt.Errorf("queue: status %s: %w", jobs[i].ID, err)
		}
	}
	// Stage 2: publish the new jobs and their job.queued events.
	type pending struct {
		i          int
		jobF, evtF jetstream.PubAckFuture
	}
	var ps []pending
	for i, j := range jobs {
		if out[i].Err != nil || out[i].Duplicate {
			continue
		}
		b, err := j.Encode()
		if err != nil {
			out[i].Err = err
			continue
		}
		p := pending{i: i}
		if p.jobF, err = q.js.PublishMsgAsync(&nats.Msg{Subject: JobsSubject, Data: b,
			Header: nats.Header{jetstream.MsgIDHeader: []string{j.ID}}}); err != nil {
			out[i].Err = fmt.Errorf("queue: publish job %s: %w", j.ID, err)
			continue
		}
		if e, err := job.NewEvent(job.EventQueued, j.ID, j); err == nil {
			if eb, err := encodeEvent(e); err == nil {
				p.evtF, _ = q.js.PublishMsgAsync(&nats.Msg{Subject: EventSubject(e), Data: eb,
					Header: nats.Header{jetstream.MsgIDHeader: []string{e.ID}}})
			}
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		if err := awaitAck(ctx, p.jobF); err != nil {
			out[p.i].Err = fmt.Errorf("queue: publish job %s: %w", jobs[p.i].ID, err)
		}
		if p.evtF != nil {
			_ = awaitAck(ctx, p.evtF)
		}
	}
	return out
}

func awaitAck(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
