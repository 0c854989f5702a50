package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// Header names on job messages.
const (
	// HeaderResumeOf marks a job re-enqueued by Resume (its Nats-Msg-Id differs from the job id).
	HeaderResumeOf = "Vodpipe-Resume-Of"
)

// PublishResult tells whether JetStream stored a job or dropped it as a duplicate.
type PublishResult struct {
	JobID     string
	Duplicate bool
	Err       error
}

// PublishJob puts one job on the queue with Nats-Msg-Id = job id, so a job
// published twice within the duplicate window runs once.
func (q *Queue) PublishJob(ctx context.Context, j *job.Job) (PublishResult, error) {
	b, err := j.Encode()
	if err != nil {
		return PublishResult{JobID: j.ID}, err
	}
	ack, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: JobsSubject, Data: b, Header: nats.Header{jetstream.MsgIDHeader: []string{j.ID}}})
	if err != nil {
		return PublishResult{JobID: j.ID}, fmt.Errorf("queue: publish job %s: %w", j.ID, err)
	}
	return PublishResult{JobID: j.ID, Duplicate: ack.Duplicate}, nil
}

// PublishJobs publishes a batch asynchronously and waits for every
// acknowledgement; each result says stored, duplicate or failed.
func (q *Queue) PublishJobs(ctx context.Context, jobs []*job.Job) []PublishResult {
	out := make([]PublishResult, len(jobs))
	futures := make([]jetstream.PubAckFuture, len(jobs))
	for i, j := range jobs {
		out[i].JobID = j.ID
		b, err := j.Encode()
		if err != nil {
			out[i].Err = err
			continue
		}
		futures[i], err = q.js.PublishMsgAsync(&nats.Msg{Subject: JobsSubject, Data: b, Header: nats.Header{jetstream.MsgIDHeader: []string{j.ID}}})
		if err != nil {
			out[i].Err = fmt.Errorf("queue: publish job %s: %w", j.ID, err)
		}
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			out[i].Duplicate = ack.Duplicate
		case err := <-f.Err():
			out[i].Err = fmt.Errorf("queue: publish job %s: %w", out[i].JobID, err)
		case <-ctx.Done():
			out[i].Err = ctx.Err()
		}
	}
	return out
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

func encodeEvent(e *job.Event) ([]byte, error) { return json.Marshal(e) }

// PublishEvent stores an event in the EVENTS stream (deduplicated by event id).
func (q *Queue) PublishEvent(ctx context.Context, e *job.Event) error {
	b, err := encodeEvent(e)
	if err != nil {
		return err
	}
	if _, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: EventSubject(e), Data: b,
		Header: nats.Header{jetstream.MsgIDHeader: []string{e.ID}}}); err != nil {
		return fmt.Errorf("queue: publish event %s: %w", e.Type, err)
	}
	return nil
}

// Emit builds and publishes an event.
func (q *Queue) Emit(ctx context.Context, typ, jobID string, data any) error {
	e, err := job.NewEvent(typ, jobID, data)
	if err != nil {
		return err
	}
	return q.PublishEvent(ctx, e)
}

// A dead letter over deadLetterMax (well within NATS's 1 MiB payload limit)
// keeps only the first deadLetterKeep bytes of its message, base64-encoded.
const (
	deadLetterMax  = 900 << 10
	deadLetterKeep = 512 << 10
)

// PublishDeadLetter records a dead letter under vodpipe.dlq.<job id>.
func (q *Queue) PublishDeadLetter(ctx context.Context, d job.DeadLetter, raw []byte) error {
	if d.Time.IsZero() {
		d.Time = time.Now().UTC()
	}
	if json.Valid(raw) {
		d.Message = raw
	} else {
		d.RawMessage = raw
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if len(b) > deadLetterMax {
		// Too big in its envelope: a message near the job stream's limit
		// (base64 adds a third), JSON that grew (json escapes <, > and &
		// six-fold), or a reason quoting a huge field. Keep the bytes, cut
		// short.
		d.Message, d.RawMessage = nil, raw[:min(len(raw), deadLetterKeep)]
		if d.Truncated = len(raw) > deadLetterKeep; d.Truncated {
			d.Size = len(raw)
		}
		if len(d.Reason) > 4<<10 {
			d.Reason = strings.ToValidUTF8(d.Reason[:4<<10], "") + " …"
		}
		if b, err = json.Marshal(d); err != nil {
			return err
		}
	}
	subj := DLQPrefix + "." + subjectToken(d.JobID)
	// One entry per message and reason: a delivery that dead-letters the
	// message again (its failed status could not be written) adds none.
	msgID := fmt.Sprintf("dlq-%s-%d-%s", subjectToken(d.JobID), d.StreamSeq, d.Code)
	if d.StreamSeq == 0 {
		msgID += fmt.Sprintf("-%d", d.Attempt)
	}
	if _, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: b, Header: nats.Header{jetstream.MsgIDHeader: []string{msgID}}}); err != nil {
		return fmt.Errorf("queue: dead letter: %w", err)
	}
	return nil
}

// DeadLetters lists every dead letter with its message, oldest first (for
// tests and operators).
func (q *Queue) DeadLetters(ctx context.Context) ([]job.DeadLetter, error) {
	var out []job.DeadLetter
	for after := uint64(0); ; {
		page, next, err := q.deadLetterPage(ctx, after, 100, true)
		if err != nil {
			return nil, err
		}
		for _, e := range page {
			out = append(out, e.DeadLetter)
		}
		if next == 0 {
			return out, nil
		}
		after = next
	}
}

// DeadLetterPage lists up to limit dead letters with a sequence above after,
// oldest first, without their messages (entries can be 900 KiB each; see
// DeadLetterAt). next is the after of the following page: the last seq of
// a full page (the following page may then be empty), 0 on a page that is
// not full. Sequences that expired or were removed are skipped by the
// server. An entry that is not a dead letter is listed with code
// "undecodable" rather than hiding the rest.
func (q *Queue) DeadLetterPage(ctx context.Context, after uint64, limit int) (page []job.DeadLetterEntry, next uint64, err error) {
	return q.deadLetterPage(ctx, after, limit, false)
}

// deadLetterPage is DeadLetterPage, keeping each entry's message when
// messages is set.
func (q *Queue) deadLetterPage(ctx context.Context, after uint64, limit int, messages bool) (page []job.DeadLetterEntry, next uint64, err error) {
	if limit < 1 || after == math.MaxUint64 {
		return nil, 0, nil
	}
	for seq := after + 1; len(page) < limit; {
		m, err := q.dlq.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(DLQPrefix+".>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return page, 0, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("queue: read dead letter after %d: %w", seq-1, err)
		}
		e := decodeDeadLetter(m)
		if !messages {
			e.Message, e.RawMessage = nil, nil
		}
		page = append(page, e)
		seq = m.Sequence + 1
	}
	return page, page[len(page)-1].Seq, nil
}

// DeadLetterAt returns the dead letter at sequence seq, with its message,
// or ErrNotFound.
func (q *Queue) DeadLetterAt(ctx context.Context, seq uint64) (job.DeadLetterEntry, error) {
	m, err := q.dlq.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return job.DeadLetterEntry{}, fmt.Errorf("%w: dead letter %d", ErrNotFound, seq)
	}
	if err != nil {
		return job.DeadLetterEntry{}, fmt.Errorf("queue: read dead letter %d: %w", seq, err)
	}
	return decodeDeadLetter(m), nil
}

// decodeDeadLetter decodes a dead-letter stream entry. One that is not a
// dead letter (written by something else) keeps its bytes as RawMessage
// under code "undecodable".
func decodeDeadLetter(m *jetstream.RawStreamMsg) job.DeadLetterEntry {
	e := job.DeadLetterEntry{Seq: m.Sequence}
	if err := json.Unmarshal(m.Data, &e.DeadLetter); err != nil {
		e.DeadLetter = job.DeadLetter{Code: "undecodable", Reason: "not a vodpipe dead letter: " + err.Error(),
			Time: m.Time, RawMessage: m.Data}
	}
	return e
}

// subjectToken makes s usable as one subject token.
func subjectToken(s string) string {
	if s == "" {
		return "unknown"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || r <= ' ' || r > '~':
			return '_'
		}
		return r
	}, s)
}
