package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/tracing"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// Jobs is the JOBS work queue: jobs are published on JobsSubject with
// Nats-Msg-Id = job id, and the workers share one consumer of it.
type Jobs struct {
	js       jetstream.JetStream
	stream   jetstream.Stream
	statuses *Statuses
	index    *Index

	// unconfirmed are the jobs whose status this process created but whose
	// message it could not publish (a timeout, a store refusing it): a
	// second submit publishes them again, and RepublishUnconfirmed tries
	// until JetStream takes them (their id is their message id, so one
	// that was stored after all is not stored twice in the duplicate
	// window).
	mu          sync.Mutex
	unconfirmed map[string]*job.Job

	// republishWindow: see Config.RepublishWindow.
	republishWindow time.Duration
}

// MayBeUnpublished reports whether the job of st may have no message:
// its status says it could not be published (CodeNotQueued), this process
// could not confirm its message, or it was created within the republish
// window and is still queued, never delivered (an ingest may have died
// between the status and the message; a job handed back by a worker has
// its runs lowered again, but not its attempts). The window is at most
// half the duplicate window: ingest's clock and NATS's may differ by
// that much before a copy gets past JetStream's deduplication. Submitting such a job again publishes its
// stored job again, which JetStream drops if the first one was stored.
func (jq *Jobs) MayBeUnpublished(st *job.Status) bool {
	if st == nil || st.State != job.StateQueued {
		return false
	}
	return notQueued(st) || jq.isUnconfirmed(st.Job.ID) ||
		st.Attempt == 0 && st.Runs == 0 && time.Since(st.CreatedAt) < jq.republishWindow
}

// RepublishUnconfirmed publishes again the jobs whose status was created
// but whose message was not confirmed, and clears their not_queued mark;
// it returns how many JetStream took. Ingest calls it every few seconds.
func (jq *Jobs) RepublishUnconfirmed(ctx context.Context) (int, error) {
	jq.mu.Lock()
	pending := make([]*job.Job, 0, len(jq.unconfirmed))
	for _, j := range jq.unconfirmed {
		pending = append(pending, j)
	}
	jq.mu.Unlock()
	if len(pending) == 0 {
		return 0, nil
	}
	taken := 0
	var last error
	for i, r := range jq.PublishBatch(ctx, pending) {
		if r.Err != nil {
			last = r.Err
			continue
		}
		taken++
		jq.confirmed(pending[i].ID)
		_, _ = jq.statuses.Update(ctx, pending[i].ID, clearNotQueued)
	}
	return taken, last
}

// unconfirmedJob records j as created but not confirmed published.
func (jq *Jobs) unconfirmedJob(j *job.Job) {
	jq.mu.Lock()
	defer jq.mu.Unlock()
	if jq.unconfirmed == nil {
		jq.unconfirmed = map[string]*job.Job{}
	}
	jq.unconfirmed[j.ID] = j
}

func (jq *Jobs) confirmed(id string) {
	jq.mu.Lock()
	delete(jq.unconfirmed, id)
	jq.mu.Unlock()
}

func (jq *Jobs) isUnconfirmed(id string) bool {
	jq.mu.Lock()
	defer jq.mu.Unlock()
	_, ok := jq.unconfirmed[id]
	return ok
}

// Consumer returns the shared worker consumer.
func (j *Jobs) Consumer(ctx context.Context) (jetstream.Consumer, error) {
	return j.js.Consumer(ctx, JobsStream, WorkerConsumer)
}

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

// Publish puts one job on the queue with Nats-Msg-Id = job id, so a job
// published twice within the duplicate window runs once.
func (jq *Jobs) Publish(ctx context.Context, j *job.Job) (PublishResult, error) {
	b, err := j.Encode()
	if err != nil {
		return PublishResult{JobID: j.ID}, err
	}
	m := &nats.Msg{Subject: JobsSubject, Data: b, Header: nats.Header{jetstream.MsgIDHeader: []string{j.ID}}}
	tracing.Inject(ctx, m)
	ack, err := jq.js.PublishMsg(ctx, m)
	if err != nil {
		return PublishResult{JobID: j.ID}, fmt.Errorf("queue: publish job %s: %w", j.ID, err)
	}
	return PublishResult{JobID: j.ID, Duplicate: ack.Duplicate}, nil
}

// PublishBatch publishes a batch asynchronously and waits for every
// acknowledgement; each result says stored, duplicate or failed.
func (jq *Jobs) PublishBatch(ctx context.Context, jobs []*job.Job) []PublishResult {
	out := make([]PublishResult, len(jobs))
	futures := make([]jetstream.PubAckFuture, len(jobs))
	for i, j := range jobs {
		out[i].JobID = j.ID
		b, err := j.Encode()
		if err != nil {
			out[i].Err = err
			continue
		}
		m := &nats.Msg{Subject: JobsSubject, Data: b, Header: nats.Header{jetstream.MsgIDHeader: []string{j.ID}}}
		tracing.Inject(ctx, m)
		futures[i], err = jq.publishAsync(ctx, m)
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
func (jq *Jobs) Submit(ctx context.Context, jobs []*job.Job) []SubmitResult {
	// A batch once begun is carried through whatever its caller does: a
	// client that went away (an interrupted `vodpipe submit`) between a
	// job's status and its message would leave a queued status that no
	// message will ever run. submitTimeout bounds it all the same.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), submitTimeout)
	defer cancel()
	out := make([]SubmitResult, len(jobs))
	now := time.Now().UTC()
	for i, j := range jobs {
		out[i].Job = j
		out[i].Status = &job.Status{Job: *j, State: job.StateQueued, CreatedAt: now, UpdatedAt: now}
	}
	// Stage -1: the statuses the batch's ids already have, in one read per
	// thousand: a job submitted again (a run of `vodpipe submit` repeated
	// over a library) costs that share of a read, not index entries
	// written and deleted again and a refused create. A status created
	// after this read still loses the create below.
	dctx, dcancel := context.WithTimeout(ctx, duplicatesReadTimeout)
	jq.markDuplicates(dctx, out)
	dcancel()
	// The controls the new ids already have: earlier jobs' (see
	// Control.Stale), deleted once the new statuses exist. A failed read
	// deletes nothing.
	fresh := make([]string, 0, len(out))
	for _, r := range out {
		if r.Err == nil && !r.Duplicate {
			fresh = append(fresh, r.Job.ID)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, staleReadTimeout)
	stale, _ := jq.statuses.control.Stale(sctx, fresh)
	cancel()
	// Stage 0: the jobs' index entries, written before their statuses (see index.go).
	made := jq.indexBatch(ctx, out)
	// Stage 1: create statuses; the first submit of an id wins.
	statusFutures := make([]jetstream.PubAckFuture, len(jobs))
	for i, j := range jobs {
		if out[i].Err != nil || out[i].Duplicate {
			continue
		}
		st := out[i].Status
		b, err := job.MarshalStatus(st)
		if err != nil {
			out[i].Err = err
			continue
		}
		m := &nats.Msg{Subject: "$KV." + StatusBucket + "." + j.ID, Data: b, Header: nats.Header{}}
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		if statusFutures[i], err = jq.publishAsync(ctx, m); err != nil {
			out[i].Err = fmt.Errorf("queue: status %s: %w", j.ID, err)
		}
	}
	for i, f := range statusFutures {
		if f == nil {
			continue
		}
		if err := storageFull(awaitAck(ctx, f)); err != nil {
			if lostRace(err) {
				old, _, gerr := jq.statuses.Get(ctx, jobs[i].ID)
				if errors.Is(gerr, ErrNotFound) {
					// No status, but an entry: the marker of the id's earlier
					// job, which expired within the minute. The status is
					// created over it (a create of the KV API does).
					b, _ := job.MarshalStatus(out[i].Status) // stage 1 marshalled it without an error
					if _, cerr := jq.statuses.kv.Create(ctx, jobs[i].ID, b); cerr == nil {
						continue
					} else if !lostRace(cerr) {
						out[i].Err = fmt.Errorf("queue: status %s: %w", jobs[i].ID, cerr)
						made[i].remove(ctx, jq.index)
						continue
					}
					old, _, gerr = jq.statuses.Get(ctx, jobs[i].ID)
				}
				made[i].remove(ctx, jq.index)
				out[i].Duplicate = true
				if gerr == nil {
					out[i].Status = old
				}
				continue
			}
			out[i].Err = fmt.Errorf("queue: status %s: %w", jobs[i].ID, err)
			var refused *jetstream.APIError
			if errors.As(err, &refused) || errors.Is(err, nats.ErrNoResponders) {
				// JetStream answered: no status, so no index entries either.
				made[i].remove(ctx, jq.index)
			} else {
				// No answer (a timeout, a lost connection): the status may
				// be stored. The job is published again until JetStream
				// takes it (a worker creates a status that is missing).
				jq.unconfirmedJob(jobs[i])
			}
		}
	}
	if len(stale) > 0 {
		var created []string
		for _, r := range out {
			if r.Err == nil && !r.Duplicate {
				created = append(created, r.Job.ID)
			}
		}
		jq.statuses.control.forgetStale(ctx, stale, created)
	}
	// Stage 2: publish the new jobs and their job.queued events, and again
	// the job of a duplicate that may have no message (MayBeUnpublished: a
	// submit that created the status but could not publish the job, storage
	// full or its ingest dead in between, is mended by the client's retry).
	// Other duplicates cost no publish: a library submitted again costs its
	// reads only.
	type pending struct {
		i          int
		dup        bool
		jobF, evtF jetstream.PubAckFuture
	}
	var ps []pending
	for i, j := range jobs {
		if out[i].Err != nil {
			continue
		}
		if out[i].Duplicate {
			if !jq.MayBeUnpublished(out[i].Status) {
				continue
			}
			p := pending{i: i, dup: true}
			b, err := out[i].Status.Job.Encode()
			if err != nil {
				continue
			}
			jm := &nats.Msg{Subject: JobsSubject, Data: b, Header: nats.Header{jetstream.MsgIDHeader: []string{out[i].Status.Job.ID}}}
			tracing.Inject(ctx, jm)
			if p.jobF, err = jq.publishAsync(ctx, jm); err != nil {
				out[i].Err, out[i].Duplicate = fmt.Errorf("queue: publish job %s again: %w", j.ID, err), false
				continue
			}
			ps = append(ps, p)
			continue
		}
		b, err := j.Encode()
		if err != nil {
			out[i].Err = err
			continue
		}
		p := pending{i: i}
		jm := &nats.Msg{Subject: JobsSubject, Data: b, Header: nats.Header{jetstream.MsgIDHeader: []string{j.ID}}}
		tracing.Inject(ctx, jm)
		if p.jobF, err = jq.publishAsync(ctx, jm); err != nil {
			out[i].Err = fmt.Errorf("queue: publish job %s: %w", j.ID, err)
			continue
		}
		if e, err := job.NewEvent(job.EventQueued, j.ID, j); err == nil {
			if eb, err := encodeEvent(e); err == nil {
				em := &nats.Msg{Subject: EventSubject(e), Data: eb, Header: nats.Header{jetstream.MsgIDHeader: []string{e.ID}}}
				tracing.Inject(ctx, em)
				p.evtF, _ = jq.publishAsync(ctx, em)
			}
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		ack, err := awaitPubAck(ctx, p.jobF)
		err = storageFull(err)
		if err == nil && !p.dup && ack != nil && ack.Duplicate {
			// A new job's message taken for a duplicate: another message
			// had its id as Nats-Msg-Id within the window (a publisher's,
			// forged or mistaken), and JetStream dropped this one. It goes
			// again under an id of its own, as a requeue does.
			err = storageFull(jq.requeue(ctx, &job.Status{Job: *jobs[p.i]}, "submit"))
		}
		switch {
		case err != nil && p.dup:
			out[p.i].Err, out[p.i].Duplicate = fmt.Errorf("queue: publish job %s again: %w", jobs[p.i].ID, err), false
		case err != nil:
			out[p.i].Err = fmt.Errorf("queue: publish job %s: %w", jobs[p.i].ID, err)
			jq.unconfirmedJob(jobs[p.i])
			jq.markNotQueued(ctx, jobs[p.i].ID, err)
		case p.dup && !notQueued(out[p.i].Status):
			jq.confirmed(jobs[p.i].ID)
		case p.dup:
			jq.confirmed(jobs[p.i].ID)
			if st, err := jq.statuses.Update(ctx, jobs[p.i].ID, clearNotQueued); err == nil {
				out[p.i].Status = st
			}
		}
		if p.evtF != nil {
			_ = awaitAck(ctx, p.evtF)
		}
	}
	return out
}

// clearNotQueued is the update that takes a not_queued mark away once the
// job's message is stored (on a status that exists: Update stores none that
// f leaves without a state). A status without the mark is not written again.
func clearNotQueued(s *job.Status) error {
	if s.Error != nil && s.Error.Code == CodeNotQueued {
		s.Error = nil
		return nil
	}
	return errUnchanged
}

// submitTimeout bounds a batch's submit once begun (see Submit).
const submitTimeout = 30 * time.Second

// duplicatesReadTimeout bounds the read of a batch's existing statuses: a
// lost answer costs that, not the batch's whole submitTimeout (the creates
// find the duplicates then).
const duplicatesReadTimeout = 5 * time.Second

// staleReadTimeout bounds the read of a batch's stale controls: a NATS
// server whose permissions predate it (0.9's, during an upgrade) answers
// nothing, and the batch goes on without it.
const staleReadTimeout = 2 * time.Second

// CodeNotQueued is the error code of a status whose job could not be
// published: it stays queued with this error until the job is submitted
// again (which publishes it) or, if it never is, for people to see.
const CodeNotQueued = "not_queued"

// notQueued reports whether st is queued, never run, and marked not queued.
func notQueued(st *job.Status) bool {
	return st != nil && st.State == job.StateQueued && st.Runs == 0 && st.Error != nil && st.Error.Code == CodeNotQueued
}

// markNotQueued marks the status of a job whose publication failed, so that
// listings and the console show why it waits (best effort: with the whole
// store full the mark cannot be written either, and the client's 503 is
// all there is).
func (jq *Jobs) markNotQueued(ctx context.Context, jobID string, cause error) {
	msg := "the job could not be queued yet; submit it again (ingest retries it while it runs)"
	if errors.Is(cause, ErrStorageFull) {
		msg = "NATS JetStream storage was full when the job was submitted: it is not queued yet; submit it again (ingest retries it while it runs)"
	}
	_, _ = jq.statuses.Update(ctx, jobID, func(s *job.Status) error {
		if s.State != job.StateQueued || s.Runs != 0 || s.Error != nil && *s.Error == (job.Error{Code: CodeNotQueued, Message: msg}) {
			return errUnchanged // run or finished meanwhile, or marked so already
		}
		s.Error = &job.Error{Code: CodeNotQueued, Message: msg}
		return nil
	})
}

// markDuplicates marks the results whose job already has a status as
// duplicates, with that status. A failed read marks nothing: the creates
// find the duplicates then.
func (jq *Jobs) markDuplicates(ctx context.Context, out []SubmitResult) {
	ids := make([]string, len(out))
	for i, r := range out {
		ids[i] = r.Job.ID
	}
	have, err := jq.statuses.many(ctx, ids)
	if err != nil {
		return
	}
	for i := range out {
		if s := have[out[i].Job.ID]; s != nil {
			out[i].Status, out[i].Duplicate = s, true
		}
	}
}

// indexBatch writes the index entries of a batch of new statuses (by
// creation, and queued) asynchronously with one wait, and points the
// statuses at them; a job whose entries could not be written gets its Err.
// Duplicates already known get none.
func (jq *Jobs) indexBatch(ctx context.Context, out []SubmitResult) []madeEntries {
	made := make([]madeEntries, len(out))
	futures := make([][2]jetstream.PubAckFuture, len(out))
	for i, r := range out {
		if r.Duplicate {
			continue
		}
		for k, subj := range []string{indexCreated, indexSubject(job.StateQueued)} {
			f, err := jq.publishAsync(ctx, &nats.Msg{Subject: subj, Data: []byte(r.Job.ID)})
			if err != nil {
				out[i].Err = fmt.Errorf("queue: index %s: %w", r.Job.ID, err)
				break
			}
			futures[i][k] = f
		}
	}
	for i, fs := range futures {
		for k, f := range fs {
			if f == nil {
				continue
			}
			select {
			case ack := <-f.Ok():
				if k == 0 {
					made[i].log, out[i].Status.LogSeq = ack.Sequence, ack.Sequence
				} else {
					made[i].state, out[i].Status.IndexSeq = ack.Sequence, ack.Sequence
				}
			case err := <-f.Err():
				out[i].Err = fmt.Errorf("queue: index %s: %w", out[i].Job.ID, storageFull(err))
			case <-ctx.Done():
				out[i].Err = ctx.Err()
			}
		}
		if out[i].Err != nil {
			made[i].remove(ctx, jq.index)
		}
	}
	return made
}

// publishAsync is PublishMsgAsync that waits out a stall: with more
// messages awaiting their acknowledgement than the connection allows (a
// batch of thousands, a slow server), it waits for the outstanding ones
// (up to 10 s) and tries again, rather than failing jobs that would have
// gone through a moment later.
func (jq *Jobs) publishAsync(ctx context.Context, m *nats.Msg) (jetstream.PubAckFuture, error) {
	give := time.Now().Add(10 * time.Second)
	for {
		f, err := jq.js.PublishMsgAsync(m)
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) || time.Now().After(give) {
			return f, err
		}
		select {
		case <-jq.js.PublishAsyncComplete():
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return nil, err
		}
	}
}

func awaitAck(ctx context.Context, f jetstream.PubAckFuture) error {
	_, err := awaitPubAck(ctx, f)
	return err
}

// awaitPubAck is awaitAck with the stream's answer.
func awaitPubAck(ctx context.Context, f jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// requeueOrUndo requeues a job just put back to queued (s, from state
// back) and, when JetStream does not take the message, puts the status back
// with undo (nil: as it is) unless something moved it meanwhile: a queued
// status with no message would never run, and the caller's retry would
// find it queued, a conflict. Should the message have been stored all the
// same (its answer lost), the worker that takes it finds the job back in
// its old state and leaves it. It reports whether it put the status back.
func (jq *Jobs) requeueOrUndo(ctx context.Context, s *job.Status, why string, back job.State, undo func(*job.Status)) (undone bool, err error) {
	err = jq.requeue(ctx, s, why)
	if err == nil {
		return false, nil
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ours := func(cur *job.Status) bool {
		return cur.State == job.StateQueued && cur.Runs == 0 && cur.UpdatedAt.Equal(s.UpdatedAt)
	}
	_, uerr := jq.statuses.TransitionIf(uctx, s.Job.ID, ours, back, undo)
	switch {
	case uerr == nil:
		return true, err
	case errors.Is(uerr, ErrConflict):
		return false, err // moved meanwhile: its message was stored after all
	}
	return false, errors.Join(err, fmt.Errorf("queue: %s %s: putting the job back %s: %w", why, s.Job.ID, back, uerr))
}

// requeue publishes the job again so a worker picks it up. It takes a new
// message id: the original one is still in the duplicate window.
func (jq *Jobs) requeue(ctx context.Context, s *job.Status, why string) error {
	b, err := s.Job.Encode()
	if err != nil {
		return err
	}
	msgID := s.Job.ID + "." + why + "." + strconv.FormatInt(time.Now().UnixNano(), 10)
	if _, err := jq.js.PublishMsg(ctx, &nats.Msg{Subject: JobsSubject, Data: b, Header: nats.Header{
		jetstream.MsgIDHeader: []string{msgID}, HeaderResumeOf: []string{s.Job.ID}}}); err != nil {
		return fmt.Errorf("queue: %s %s: %w", why, s.Job.ID, err)
	}
	return nil
}
