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

// DeadLetters is the dead-letter stream: messages and jobs that failed for
// good, each with the reason, under vodpipe.dlq.<job id>.
type DeadLetters struct {
	js       jetstream.JetStream
	stream   jetstream.Stream
	statuses *Statuses
	jobs     *Jobs
	events   *Events
}

// ErrNotAJob is a dead letter whose message is no job to run again: not
// JSON, cut short, or refused by the job decoder (it wraps the
// *job.ValidationError then).
var ErrNotAJob = errors.New("queue: the dead letter's message is not a job")

// Requeue runs a dead-lettered job again: its message as received, under
// its own id. A job that failed goes back to queued (its runs and error
// cleared); one without a status (it failed before it had one, or its
// status expired) gets one. The message is published with a fresh
// message id (the original may still be in the duplicate window), a
// job.queued event says so, and the dead letter is removed. A job in any
// other state is ErrConflict: it is not the dead letter's to run.
func (dl *DeadLetters) Requeue(ctx context.Context, seq uint64) (*job.Status, error) {
	e, err := dl.At(ctx, seq)
	if err != nil {
		return nil, err
	}
	if len(e.Message) == 0 || e.Truncated {
		return nil, fmt.Errorf("%w: it was not JSON, or was cut short", ErrNotAJob)
	}
	j, err := job.Decode(e.Message)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAJob, err)
	}
	j.Normalize()
	var s *job.Status
	// undo puts the status back as failed should the job's message not be
	// taken: the dead letter stays, and requeueing it again works.
	undo := func(s *job.Status) {
		s.Error = &job.Error{Code: "requeue_failed", Message: "requeued from the dead letters, but the job could not be published: requeue it again"}
	}
	if _, _, err = dl.statuses.Get(ctx, j.ID); errors.Is(err, ErrNotFound) {
		sctx, cancel := context.WithTimeout(ctx, staleReadTimeout)
		stale, _ := dl.statuses.control.Stale(sctx, []string{j.ID})
		cancel()
		var created bool
		if s, created, err = dl.statuses.Create(ctx, j); err != nil {
			return nil, err
		}
		if !created {
			return s, fmt.Errorf("%w: job %s is %s", ErrConflict, j.ID, s.State)
		}
		dl.statuses.control.forgetStale(ctx, stale, []string{j.ID})
	} else {
		// A pause or cancel accepted in the failed run, which it never met,
		// would stop the retry: read before the transition, it is the
		// earlier run's, and goes once the job is queued again (one written
		// since stays), as an earlier job's does for a new one.
		sctx, cancel := context.WithTimeout(ctx, staleReadTimeout)
		stale, _ := dl.statuses.control.Stale(sctx, []string{j.ID})
		cancel()
		failed := func(s *job.Status) bool { return s.State == job.StateFailed }
		var was job.Status
		s, err = dl.statuses.TransitionIf(ctx, j.ID, failed, job.StateQueued, func(s *job.Status) { was, s.Error, s.Runs, s.Attempt = *s, nil, 0, 0 })
		if err == nil {
			dl.statuses.control.forgetStale(ctx, stale, []string{j.ID})
		}
		undo = func(s *job.Status) { s.Error, s.Runs, s.Attempt = was.Error, was.Runs, was.Attempt }
		if errors.Is(err, ErrConflict) && s != nil {
			return s, fmt.Errorf("%w: job %s is %s, not failed", ErrConflict, j.ID, s.State)
		}
		if err != nil {
			return nil, err
		}
	}
	if _, err := dl.jobs.requeueOrUndo(ctx, s, "requeue", job.StateFailed, undo); err != nil {
		return nil, err
	}
	_ = dl.events.Emit(ctx, job.EventQueued, j.ID, j)
	if err := dl.stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return s, fmt.Errorf("queue: remove dead letter %d: %w", seq, err)
	}
	return s, nil
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

// A dead letter over deadLetterMax (well within NATS's 1 MiB payload limit)
// keeps only the first deadLetterKeep bytes of its message, base64-encoded.
const (
	deadLetterMax  = 900 << 10
	deadLetterKeep = 512 << 10
)

// Publish records a dead letter under vodpipe.dlq.<job id>.
func (dl *DeadLetters) Publish(ctx context.Context, d job.DeadLetter, raw []byte) error {
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
	if _, err := dl.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: b, Header: nats.Header{jetstream.MsgIDHeader: []string{msgID}}}); err != nil {
		return fmt.Errorf("queue: dead letter: %w", err)
	}
	return nil
}

// All lists every dead letter with its message, oldest first (for
// tests and operators).
func (dl *DeadLetters) All(ctx context.Context) ([]job.DeadLetter, error) {
	var out []job.DeadLetter
	for after := uint64(0); ; {
		page, next, err := dl.page(ctx, after, 100, true)
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

// Page lists up to limit dead letters with a sequence above after,
// oldest first, without their messages (entries can be 900 KiB each; see
// At). next is the after of the following page: the last seq of
// a full page (the following page may then be empty), 0 on a page that is
// not full. Sequences that expired or were removed are skipped by the
// server. An entry that is not a dead letter is listed with code
// "undecodable" rather than hiding the rest.
func (dl *DeadLetters) Page(ctx context.Context, after uint64, limit int) (page []job.DeadLetterEntry, next uint64, err error) {
	return dl.page(ctx, after, limit, false)
}

// page is Page, keeping each entry's message when
// messages is set.
func (dl *DeadLetters) page(ctx context.Context, after uint64, limit int, messages bool) (page []job.DeadLetterEntry, next uint64, err error) {
	if limit < 1 || after == math.MaxUint64 {
		return nil, 0, nil
	}
	for seq := after + 1; len(page) < limit; {
		m, err := dl.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(DLQPrefix+".>"))
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

// At returns the dead letter at sequence seq, with its message,
// or ErrNotFound.
func (dl *DeadLetters) At(ctx context.Context, seq uint64) (job.DeadLetterEntry, error) {
	m, err := dl.stream.GetMsg(ctx, seq)
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

// LastOf returns the newest dead letter of a job (with its message), or
// ErrNotFound: one read of the last entry on the job's subject.
func (dl *DeadLetters) LastOf(ctx context.Context, jobID string) (job.DeadLetterEntry, error) {
	e, err := dl.lastOf(ctx, jobID)
	if err != nil || runsJob(e, jobID) {
		return e, err
	}
	// The newest is no run of this job (a publisher's invalid copy with
	// its id, dead-lettered after it): the newest that is.
	var found *job.DeadLetterEntry
	subj := DLQPrefix + "." + subjectToken(jobID)
	for seq, n := uint64(1), 0; n < maxDeadLettersOfAJob; n++ {
		m, err := dl.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return job.DeadLetterEntry{}, fmt.Errorf("queue: read the dead letters of job %s: %w", jobID, err)
		}
		if c := decodeDeadLetter(m); runsJob(c, jobID) {
			found = &c
		}
		seq = m.Sequence + 1
	}
	if found == nil {
		return e, nil // the caller says why it runs nothing
	}
	return *found, nil
}

// maxDeadLettersOfAJob bounds the dead letters of one id LastOf reads.
const maxDeadLettersOfAJob = 1000

// runsJob reports whether dead letter e holds a run of job jobID: its
// message whole and a job of that id.
func runsJob(e job.DeadLetterEntry, jobID string) bool {
	if e.JobID != jobID || len(e.Message) == 0 || e.Truncated {
		return false
	}
	j, err := job.Decode(e.Message)
	return err == nil && j.ID == jobID
}

// lastOf is the newest dead letter filed under jobID.
func (dl *DeadLetters) lastOf(ctx context.Context, jobID string) (job.DeadLetterEntry, error) {
	m, err := dl.stream.GetLastMsgForSubject(ctx, DLQPrefix+"."+subjectToken(jobID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return job.DeadLetterEntry{}, fmt.Errorf("%w: no dead letter of job %s", ErrNotFound, jobID)
	}
	if err != nil {
		return job.DeadLetterEntry{}, fmt.Errorf("queue: read the dead letter of job %s: %w", jobID, err)
	}
	e := decodeDeadLetter(m)
	if e.JobID != jobID { // another id mapped to the same subject token
		return job.DeadLetterEntry{}, fmt.Errorf("%w: no dead letter of job %s", ErrNotFound, jobID)
	}
	return e, nil
}
