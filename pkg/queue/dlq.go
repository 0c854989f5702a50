package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// maxDeliveriesAdvisory is the JetStream advisory for a message that used up its deliveries.
const maxDeliveriesAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + JobsStream + "." + WorkerConsumer

// Exhausted is a job message that used up its deliveries without an ack.
type Exhausted struct {
	DeadLetter DeadLetter
	Job        *job.Job // nil when the message was not a valid job
}

// WatchExhausted listens for JetStream's max-deliveries advisory (a job whose
// worker died on its last delivery gets no other chance), moves such a
// message to the dead-letter stream, removes it from the work queue, and calls
// f so the caller can record the failure. Several watchers may run: the
// dead-letter publish is deduplicated and the removal is idempotent.
//
// It returns once the NATS server it is connected to has the subscription
// (JetStream sends each advisory once, so one sent before that would be
// missed; in a cluster the other servers learn of it moments later) and
// keeps listening until ctx ends.
//
// A failure to move a message (the dead-letter stream unreachable) is logged
// to log: the advisory is not sent again, so such a job stays in the queue,
// counted in Depth as stranded.
func (q *Queue) WatchExhausted(ctx context.Context, nc *nats.Conn, log *slog.Logger, f func(context.Context, Exhausted)) error {
	sub, err := nc.Subscribe(maxDeliveriesAdvisory, func(m *nats.Msg) {
		var adv struct {
			StreamSeq  uint64 `json:"stream_seq"`
			Deliveries int    `json:"deliveries"`
		}
		if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
			return
		}
		if err := q.handleExhausted(ctx, adv.StreamSeq, adv.Deliveries, f); err != nil {
			log.Error("job out of deliveries not dead-lettered: it stays in the queue as stranded",
				"stream_seq", adv.StreamSeq, "deliveries", adv.Deliveries, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("queue: watch exhausted: %w", err)
	}
	context.AfterFunc(ctx, func() { _ = sub.Unsubscribe() })
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil {
		// The subscription stays: the connection sends it once it is back.
		return fmt.Errorf("queue: watch exhausted: subscription not confirmed: %w", err)
	}
	return nil
}

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

func (q *Queue) handleExhausted(ctx context.Context, seq uint64, deliveries int, f func(context.Context, Exhausted)) error {
	m, err := q.jobs.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // already handled by another watcher
	}
	if err != nil {
		return err
	}
	ex := Exhausted{DeadLetter: DeadLetter{Code: "max_deliveries",
		Reason: fmt.Sprintf("no worker finished the job in %d deliveries", deliveries), Attempt: deliveries, StreamSeq: seq}}
	if j, err := job.Decode(m.Data); err == nil {
		ex.Job = j
		ex.DeadLetter.JobID = j.ID
	}
	if err := q.PublishDeadLetter(ctx, ex.DeadLetter, m.Data); err != nil {
		return err
	}
	if err := q.jobs.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return err
	}
	if f != nil {
		f(ctx, ex)
	}
	return nil
}
