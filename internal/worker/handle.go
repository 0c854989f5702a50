package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/resume"
	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/internal/tracing"
	"github.com/vodpipe/vodpipe/internal/upload"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// handle runs one delivered job message to an outcome and acks accordingly.
// Every outcome is written durably (status, events, dead letter) before the ack.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error("message without metadata", "err", err)
		_ = msg.Term()
		return
	}
	// The run's span, a child of the span that published the job (its
	// traceparent header): VOD's and COS's requests and the status writes
	// below are its children, and so is notify's delivery of the events.
	ctx, span := w.tracer.Start(tracing.Extract(ctx, msg.Headers()), "job", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.Int("vodpipe.attempt", int(meta.NumDelivered))))
	defer span.End()
	// The run's duration, by the outcome count notes.
	start, outcome := time.Now(), ""
	ctx = context.WithValue(ctx, outcomeKey{}, &outcome)
	defer func() {
		if outcome != "" {
			w.metrics.runTime.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
		}
	}()
	if meta.NumDelivered == 1 {
		w.metrics.queueWait.Observe(start.Sub(meta.Timestamp).Seconds())
	}
	attempt := int(meta.NumDelivered)
	j, err := job.Decode(msg.Data())
	if subj := msg.Subject(); subj != queue.JobsSubject {
		w.invalid(ctx, msg, meta, j, queue.WrongSubject(subj))
		return
	}
	if err != nil {
		w.invalid(ctx, msg, meta, j, err)
		return
	}
	j.Normalize()
	span.SetAttributes(attribute.String("vodpipe.job_id", j.ID))
	log := w.log.With("job_id", j.ID, "attempt", attempt)

	st, rev, err := w.q.Statuses.Get(ctx, j.ID)
	if errors.Is(err, queue.ErrNotFound) {
		// Published straight onto NATS: this worker is the first to see it.
		// A control the id has before its status exists is an earlier
		// job's (see queue.Control.Stale): forgotten once this one exists.
		stale, _ := w.q.Control.Stale(ctx, []string{j.ID})
		var created bool
		if st, created, err = w.q.Statuses.Create(ctx, j); err == nil {
			if rev, ok := stale[j.ID]; ok && created {
				if gone, _ := w.q.Control.ForgetStale(ctx, j.ID, rev); gone {
					w.setControl(j.ID, job.ControlNone)
				}
			}
			_ = w.q.Events.Emit(ctx, job.EventQueued, j.ID, j)
		}
	}
	if err != nil {
		log.Warn("status unavailable, retrying later", "err", err)
		_ = msg.NakWithDelay(2 * time.Second)
		return
	}
	if st.Job.ID == j.ID && st.Job.Source != "" {
		// The job is the one its status recorded (ingest's, or the first
		// message's): a later message with its id, a publisher's copy
		// naming another source say, runs that job and tells its events,
		// never its own fields.
		recorded := st.Job
		j = &recorded
	}
	if w.settle(ctx, msg, log, j, st) {
		return
	}

	lease, loaded, err := w.acquire(ctx, j.ID)
	if errors.Is(err, upload.ErrLeaseHeld) {
		// Another worker runs this job now (e.g. a resume raced a running copy): look again later.
		_ = msg.NakWithDelay(w.cfg.LeaseTTL)
		return
	}
	if err != nil {
		log.Warn("lease unavailable", "err", err)
		_ = msg.NakWithDelay(2 * time.Second)
		return
	}
	runCtx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)
	stopKeepAlive := w.keepAlive(runCtx, msg, lease, cancelRun)
	defer stopKeepAlive()
	var released bool // the uploader gave the lease up with the commit record
	defer func() {
		if !w.crashed.Load() && !released {
			_ = w.leaser.Release(context.WithoutCancel(ctx), lease)
		}
	}()
	w.setRunning(j.ID, true)
	defer w.setRunning(j.ID, false)
	w.metrics.inFlight.Inc()
	defer w.metrics.inFlight.Dec()
	defer w.metrics.forget(j.ID)

	st, rev, loaded, ok := w.prepare(ctx, msg, meta, log, j, queue.Known{Status: st, Rev: rev}, loaded)
	if !ok {
		return
	}
	control := w.confirmingControl(ctx, j.ID)
	var res *upload.Result
	if loaded != nil {
		res, err = w.uploader.RunLoaded(runCtx, j, lease, *loaded, control)
	} else {
		res, err = w.uploader.Run(runCtx, j, lease, control)
	}
	stopKeepAlive()
	if err != nil && !errors.Is(err, upload.ErrLeaseLost) && errors.Is(context.Cause(runCtx), upload.ErrLeaseLost) {
		// The run was cut because the lease went (keepAlive) inside a call
		// whose error does not carry the cause (a VOD request's transport
		// failure): it is the lease's loss all the same, and the job is
		// another worker's now, its status too.
		err = fmt.Errorf("%w (the run ended on: %v)", upload.ErrLeaseLost, err)
	}
	released = res != nil && res.LeaseReleased
	w.finish(ctx, msg, meta, j, queue.Known{Status: st, Rev: rev}, res, err)
}

// confirmingControl is the control the run checks at part boundaries. A
// cancel ends the job for good and the followed controls lag the bucket a
// little (an earlier job's cancel of this id, forgotten as this one was
// created, may still be in view): the first cancel the run meets is read
// again from the stream's leader, and taken only if it is still there. A pause is
// read again before it is carried out (pause).
func (w *Worker) confirmingControl(ctx context.Context, jobID string) upload.ControlFunc {
	var confirmed atomic.Bool
	return func() job.Control {
		c := w.control(jobID)
		if c != job.ControlCancel || confirmed.Load() {
			return c
		}
		fresh, err := w.q.Control.Current(ctx, jobID)
		switch {
		case err != nil || fresh == job.ControlCancel:
			confirmed.Store(true)
			return c
		case fresh == job.ControlNone && w.draining():
			return upload.ControlDrain
		}
		return fresh
	}
}

// settle carries out decideDelivery for a job that is not to run (finished,
// paused): it reports whether it took care of the message.
func (w *Worker) settle(ctx context.Context, msg jetstream.Msg, log *slog.Logger, j *job.Job, st *job.Status) bool {
	switch decideDelivery(st, w.control(j.ID)) {
	case deliveryCompleted:
		// Record the mapping and re-publish the completion (both idempotent:
		// an earlier attempt may have lost either), then ack.
		w.ackCompleted(ctx, msg, log, j, st.FileID, st.MediaURL, st.CoverURL, st.BytesTotal, "duplicate", func() error {
			if st.FileID == "" {
				return nil
			}
			return w.q.Files.Record(ctx, st.FileID, j.ID)
		})
		return true
	case deliveryFailed:
		if st.Error != nil {
			if err := w.emitFailed(ctx, j, *st.Error, st.Attempt); err != nil {
				retryLater(msg, log, "publish job.failed", err, 2*time.Second)
				return true
			}
		}
		w.count(ctx, "duplicate")
		_ = msg.Ack()
		return true
	case deliveryDone:
		w.count(ctx, "duplicate")
		_ = msg.Ack()
		return true
	case deliveryCancelPaused:
		w.cancelPaused(ctx, msg, j)
		return true
	case deliveryStale:
		_ = msg.Ack()
		return true
	}

	return false
}

// prepare carries out decideUnderLease for a leased job: it marks the job
// running (or leaves a committed one as it is) and returns the status the
// run starts from, or ok false when it took care of the message instead.
// loaded is the resume state read with the lease (nil: not read); the one
// returned is it, or the state prepare read when it had to.
func (w *Worker) prepare(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, log *slog.Logger, j *job.Job,
	known queue.Known, loaded *upload.Loaded) (*job.Status, uint64, *upload.Loaded, bool) {
	// Out of runs: its workers kept dying on it (or failing it for a
	// transient reason, which the run's end handles). The queue never gives
	// up on a job (its consumer has no delivery bound), the worker does,
	// here, so such a job is always dead-lettered and failed, even when
	// every worker was down as its last run's delivery timed out.
	st, rev := known.Status, known.Rev
	attempt := int(meta.NumDelivered)
	runs := runsLeft
	if w.outOfRuns(st) {
		runs = runsOut
	}
	decision := decideUnderLease(runs, w.control(j.ID), loaded)
	if decision == leaseReadAgain {
		// st was read before the lease: a hand-back or a resume may have
		// lowered the count since. Read it again under the lease.
		var err error
		if st, rev, err = w.q.Statuses.Get(ctx, j.ID); err != nil {
			retryLater(msg, log, "read the status", err, backoff(attempt))
			return nil, 0, nil, false
		}
		runs = runsLeft
		if w.outOfRuns(st) && !st.State.Terminal() {
			runs = runsOutReread
			if loaded == nil {
				l := w.uploader.Load(ctx, j.ID)
				loaded = &l
			}
		}
		decision = decideUnderLease(runs, w.control(j.ID), loaded)
	}
	switch decision {
	case leaseRetryLoad:
		err := errors.New("not read")
		if loaded != nil {
			err = loaded.Err
		}
		retryLater(msg, log, "read the resume state", err, backoff(attempt))
		return nil, 0, nil, false
	case leaseExhausted:
		w.fail(ctx, msg, meta, j, "max_deliveries", fmt.Errorf("no worker finished the job in %d runs", st.Runs))
		return nil, 0, nil, false
	case leaseRun:
		var err error
		st, rev, err = w.q.Statuses.TransitionFrom(ctx, j.ID, queue.Known{Status: st, Rev: rev}, job.StateRunning, func(s *job.Status) {
			s.Attempt, s.Worker, s.Error = attempt, w.cfg.ID, nil
			s.Runs++
		})
		if err != nil {
			retryLater(msg, log, "mark running", err, min(backoff(attempt), 30*time.Second))
			return nil, 0, nil, false
		}
		_ = w.q.Events.Emit(ctx, job.EventStarted, j.ID, job.StartedData{Attempt: attempt, Worker: w.cfg.ID,
			BytesResumed: loaded.Recorded(), Metadata: j.Metadata})
	case leaseFinishCommitted:
		// Committed before (a crash after the commit, or a copy of the job
		// that took the lease the committing worker gave up with its commit
		// record): the run below returns the recorded commit.
	}
	return st, rev, loaded, true
}

// acquireLoader is a leaser that reads the job's resume state in the same
// round trip as it takes the lease (resume.Redis).
type acquireLoader interface {
	AcquireLoad(ctx context.Context, jobID, owner string, ttl time.Duration) (upload.Lease, upload.Loaded, error)
}

// acquire takes the job's lease, with its resume state when the leaser can
// read both at once (loaded is nil otherwise: the uploader reads it).
func (w *Worker) acquire(ctx context.Context, jobID string) (upload.Lease, *upload.Loaded, error) {
	if al, ok := w.leaser.(acquireLoader); ok {
		l, loaded, err := al.AcquireLoad(ctx, jobID, w.cfg.ID, w.cfg.LeaseTTL)
		if err != nil {
			return upload.Lease{}, nil, err
		}
		return l, &loaded, nil
	}
	l, err := w.leaser.Acquire(ctx, jobID, w.cfg.ID, w.cfg.LeaseTTL)
	return l, nil, err
}

// keepAlive tells JetStream the job is in progress and renews the lease,
// so a long upload is never redelivered while its worker lives. A lost lease
// stops the run.
func (w *Worker) keepAlive(ctx context.Context, msg jetstream.Msg, l upload.Lease, stop context.CancelCauseFunc) func() {
	every := min(w.q.Config().AckWait, w.cfg.LeaseTTL) / 3
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
				if err := w.leaser.Renew(ctx, l); errors.Is(err, upload.ErrLeaseLost) {
					stop(err)
					return
				}
			}
		}
	}()
	var once bool
	return func() {
		if !once {
			once = true
			close(done)
			<-finished
		}
	}
}

// finish records the outcome, then acks, naks or terminates the message.
// running is the status the job was marked running with: the completion is
// written against its revision, saving a read, unless progress was written
// since (then it reads: a write against a stale revision would cost a failed
// write on top).
func (w *Worker) finish(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, j *job.Job, running queue.Known, res *upload.Result, err error) {
	log := w.log.With("job_id", j.ID, "attempt", meta.NumDelivered)
	if w.crashed.Load() {
		return // a crash records nothing: redelivery and lease expiry take over
	}
	ctx = context.WithoutCancel(ctx) // outcomes are written even during shutdown
	switch {
	case err == nil:
		// Durable status (with the FileId) before the ack: a redelivery then finds it.
		// The FileId → job mapping goes with it: VOD's callback is on its way to notify.
		if w.metrics.wasFlushed(j.ID) {
			running = queue.Known{}
		}
		if w.ackCompleted(ctx, msg, log, j, res.FileID, res.MediaURL, res.CoverURL, res.Size, "completed", func() error {
			err := w.q.Statuses.Complete(ctx, j.ID, running, res.FileID, func(s *job.Status) {
				s.FileID, s.MediaURL, s.CoverURL = res.FileID, res.MediaURL, res.CoverURL
				s.BytesDone, s.BytesTotal = max(res.Size, s.BytesTotal), max(res.Size, s.BytesTotal)
			})
			if errors.Is(err, job.ErrBadTransition) {
				return nil // completed already (a redelivery raced this attempt)
			}
			return err
		}) {
			log.Info("job completed", "file_id", res.FileID, "bytes", res.Size, "resumed_bytes", res.Resumed, "sent_bytes", res.Sent)
		}
	case errors.Is(err, upload.ErrPaused):
		w.pause(ctx, msg, log, j)
	case errors.Is(err, upload.ErrCanceled):
		_, _ = w.q.Statuses.Transition(ctx, j.ID, job.StateCanceled, nil)
		_ = w.q.Control.Set(ctx, j.ID, job.ControlNone)
		_ = w.q.Events.Emit(ctx, job.EventCanceled, j.ID, job.StoppedData{Metadata: j.Metadata})
		w.count(ctx, "canceled")
		_ = msg.Ack()
	case errors.Is(err, upload.ErrDrained) || (w.draining() && ctx.Err() == nil && isContextErr(err)):
		// Shutdown: state is saved; hand the job back so another worker resumes it at once.
		// Not a failed run: it does not count against the job's runs.
		w.handBack(ctx, j)
		w.count(ctx, "handed_back")
		log.Info("job handed back for shutdown")
		_ = msg.Nak()
	case errors.Is(err, upload.ErrLeaseLost):
		w.count(ctx, "lease_lost")
		log.Warn("lease lost: another worker owns the job")
		_ = msg.NakWithDelay(w.cfg.LeaseTTL)
	case errors.Is(err, upload.ErrStorageFull), errors.Is(err, resume.ErrNotReplicated):
		// Not the job's fault and not a run used up: it waits, its parts
		// saved, and resumes when space returns (or a Redis replica, for a
		// commit that must not be lost to a failover), however long that takes.
		code, what := "storage_full", "the storage is full; the job resumes when space returns: "
		if errors.Is(err, resume.ErrNotReplicated) {
			code, what = "redis_no_replica", "Redis has no replica to hold the job's state; the job resumes when one is back: "
		}
		_, _ = w.q.Statuses.Transition(ctx, j.ID, job.StateQueued, func(s *job.Status) {
			if s.Worker == w.cfg.ID {
				s.Runs = max(s.Runs-1, 0)
			}
			s.Error = &job.Error{Code: code, Message: what + err.Error()}
		})
		w.count(ctx, code)
		delay := retry.Around(w.cfg.StorageFullWait, 0.5)
		log.Warn("job waits", "code", code, "err", err, "retry_in", delay)
		_ = msg.NakWithDelay(delay)
	default:
		code, perm := upload.IsPermanent(err)
		if perm || w.outOfRuns(running.Status) {
			if !perm {
				code = "max_deliveries"
			}
			w.fail(ctx, msg, meta, j, code, err)
			return
		}
		_, _ = w.q.Statuses.Transition(ctx, j.ID, job.StateQueued, func(s *job.Status) {
			s.Error = &job.Error{Code: "transient", Message: err.Error()}
		})
		w.count(ctx, "retried")
		delay := backoff(int(meta.NumDelivered))
		log.Warn("job attempt failed, will retry", "err", err, "retry_in", delay)
		_ = msg.NakWithDelay(delay)
	}
}

// outOfRuns reports whether the job of status s has had every run
// VODPIPE_JOBS_MAX_DELIVER allows: before a run it is not started, after a
// transient failure it is not retried.
func (w *Worker) outOfRuns(s *job.Status) bool {
	return s != nil && s.Runs >= w.q.Config().MaxDeliver
}

// retryLater hands msg back for another delivery after delay, saying what could not be done.
func retryLater(msg jetstream.Msg, log *slog.Logger, what string, err error, delay time.Duration) {
	log.Warn("cannot "+what+", retrying", "err", err)
	_ = msg.NakWithDelay(delay)
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// backoff grows per delivery: about 1s, 2s, 4s ... up to 2 minutes, each
// ± half (retry.Run), so jobs that failed together do not come back together.
func backoff(delivered int) time.Duration { return retry.Run.Delay(delivered) }

// fail records a permanent failure: dead letter, failed status, job.failed event, terminate.
func (w *Worker) fail(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, j *job.Job, code string, err error) {
	jerr := job.Error{Code: code, Message: err.Error(), Permanent: true}
	if derr := w.q.DeadLetters.Publish(ctx, job.DeadLetter{JobID: j.ID, Code: code, Reason: err.Error(),
		Attempt: int(meta.NumDelivered), StreamSeq: meta.Sequence.Stream}, msg.Data()); derr != nil {
		w.log.Error("dead letter failed, retrying later", "job_id", j.ID, "err", derr)
		_ = msg.NakWithDelay(2 * time.Second)
		return
	}
	// The failed status and job.failed before the message ends: a NATS
	// failure here hands it back, and the redelivery finishes the record.
	log := w.log.With("job_id", j.ID)
	if _, serr := w.q.Statuses.Transition(ctx, j.ID, job.StateFailed, func(s *job.Status) { s.Error = &jerr }); serr != nil && !errors.Is(serr, job.ErrBadTransition) {
		retryLater(msg, log, "record the failure", serr, 2*time.Second)
		return
	}
	if eerr := w.emitFailed(ctx, j, jerr, int(meta.NumDelivered)); eerr != nil {
		retryLater(msg, log, "publish job.failed", eerr, 2*time.Second)
		return
	}
	w.count(ctx, "failed")
	w.log.Warn("job failed", "job_id", j.ID, "code", code, "err", err)
	_ = msg.TermWithReason(code)
}

// invalid dead-letters a message that is not a valid job (or not on the
// jobs subject). It publishes job.failed only for an id with no status: a
// bad copy of a job that is known (queued, running, done) does not fail it.
func (w *Worker) invalid(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, j *job.Job, err error) {
	id := queue.DeadLetterJobID(j, msg.Headers())
	jerr := job.Error{Code: "invalid_message", Message: err.Error(), Permanent: true}
	if derr := w.q.DeadLetters.Publish(ctx, job.DeadLetter{JobID: id, Code: jerr.Code, Reason: err.Error(),
		Attempt: int(meta.NumDelivered), StreamSeq: meta.Sequence.Stream}, msg.Data()); derr != nil {
		_ = msg.NakWithDelay(2 * time.Second)
		return
	}
	known := false
	if job.ValidID(id) { // no job has another (nor may its key's subject be kilobytes)
		_, _, serr := w.q.Statuses.Get(ctx, id)
		known = serr == nil
	}
	if !known {
		_ = w.q.Events.Emit(ctx, job.EventFailed, id, job.FailedData{Error: jerr, Attempt: int(meta.NumDelivered)})
	}
	w.count(ctx, "invalid")
	w.log.Warn("invalid job message dead-lettered", "job_id", id, "err", err)
	_ = msg.TermWithReason("invalid_message")
}

// ackCompleted makes a completion durable (record), publishes job.completed
// and acks, counting the job under outcome. The event goes before the ack: an
// event lost to a NATS failure is published again by the redelivery (same
// id, deduplicated). A failure of either hands the message back for a retry.
func (w *Worker) ackCompleted(ctx context.Context, msg jetstream.Msg, log *slog.Logger, j *job.Job,
	fileID, mediaURL, coverURL string, size int64, outcome string, record func() error) bool {
	if err := record(); err != nil {
		retryLater(msg, log, "record completion", err, time.Second)
		return false
	}
	if err := w.emitCompleted(ctx, j, fileID, mediaURL, coverURL, size); err != nil {
		retryLater(msg, log, "publish job.completed", err, time.Second)
		return false
	}
	w.count(ctx, outcome)
	_ = msg.Ack()
	return true
}

// emitCompleted publishes job.completed with an id fixed by the job and its
// FileId: a redelivery after the commit (an ack lost to a NATS failure)
// publishes the same event again, which JetStream drops within its duplicate
// window and which subscribers see with the same webhook-id after it.
func (w *Worker) emitCompleted(ctx context.Context, j *job.Job, fileID, mediaURL, coverURL string, size int64) error {
	return w.emitFixed(ctx, job.EventCompleted, j.ID, job.CompletedData{FileID: fileID, MediaURL: mediaURL, CoverURL: coverURL,
		SourceContext: j.SourceContext, Bytes: size, Metadata: j.Metadata}, "ev-completed-", j.ID, fileID)
}

// emitFixed publishes an event whose id is prefix + a hash of the parts
// that identify the outcome, so publishing it again is deduplicated.
func (w *Worker) emitFixed(ctx context.Context, typ, jobID string, data any, prefix string, parts ...string) error {
	e, err := job.NewEvent(typ, jobID, data)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	e.ID = prefix + hex.EncodeToString(sum[:12])
	return w.q.Events.Publish(ctx, e)
}

// emitFailed publishes job.failed with an id fixed by the job and the
// error code, so publishing it again (a redelivery finishing a failure
// that lost its event) is deduplicated like job.completed.
func (w *Worker) emitFailed(ctx context.Context, j *job.Job, jerr job.Error, attempt int) error {
	return w.emitFixed(ctx, job.EventFailed, j.ID, job.FailedData{Error: jerr, Attempt: attempt, Metadata: j.Metadata},
		"ev-failed-", j.ID, "failed", jerr.Code)
}

// flushProgress writes recent progress to job status and job.progress events, throttled.
func (w *Worker) flushProgress(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for id, p := range w.metrics.takeProgress() {
			if p[0] >= p[1] {
				// Every byte is up: the completion, a moment away, records it
				// (and a job of one PutObject never writes progress at all).
				continue
			}
			if _, err := w.q.Statuses.Update(ctx, id, func(s *job.Status) error {
				if s.State != job.StateRunning {
					return errSkip // finished meanwhile: its final status says it all
				}
				s.BytesDone, s.BytesTotal = p[0], p[1]
				return nil
			}); err != nil {
				continue
			}
			w.metrics.markFlushed(id)
			data, _ := json.Marshal(job.ProgressData{BytesDone: p[0], BytesTotal: p[1]})
			_ = w.q.Events.Emit(ctx, job.EventProgress, id, json.RawMessage(data))
		}
	}
}

var errSkip = errors.New("skip")

// cancelPaused cleans up a paused job that was canceled: abort the multipart
// upload, delete the resume state, mark it canceled.
func (w *Worker) cancelPaused(ctx context.Context, msg jetstream.Msg, j *job.Job) {
	lease, err := w.leaser.Acquire(ctx, j.ID, w.cfg.ID, w.cfg.LeaseTTL)
	if err != nil {
		_ = msg.NakWithDelay(2 * time.Second)
		return
	}
	defer func() { _ = w.leaser.Release(context.WithoutCancel(ctx), lease) }()
	if err := w.uploader.Abort(ctx, lease); err != nil && !errors.Is(err, upload.ErrCanceled) {
		w.log.Warn("cancel of paused job failed, retrying", "job_id", j.ID, "err", err)
		_ = msg.NakWithDelay(2 * time.Second)
		return
	}
	_, _ = w.q.Statuses.Transition(ctx, j.ID, job.StateCanceled, nil)
	_ = w.q.Control.Set(ctx, j.ID, job.ControlNone)
	_ = w.q.Events.Emit(ctx, job.EventCanceled, j.ID, job.StoppedData{Metadata: j.Metadata})
	w.count(ctx, "canceled")
	_ = msg.Ack()
}

// pause records a run stopped by a pause. The run saw the pause through
// this worker's watch of the control bucket, which can lag behind a resume
// accepted since: the key itself is read first, from the stream's leader (a
// replica a partition cut off may still have the pause), and a job no longer to be
// paused is handed back to run (or to be canceled) at once. The status
// turns paused only from the running status this worker wrote: a resume
// that requeued the job in between wins, and its copy runs the job.
func (w *Worker) pause(ctx context.Context, msg jetstream.Msg, log *slog.Logger, j *job.Job) {
	c, err := w.q.Control.Current(ctx, j.ID)
	if err != nil {
		retryLater(msg, log, "read the control", err, 2*time.Second)
		return
	}
	if c != job.ControlPause {
		w.setControl(j.ID, c)
		log.Info("pause withdrawn before it took effect: running the job again", "control", c)
		w.handBack(ctx, j)
		w.count(ctx, "handed_back")
		_ = msg.Nak()
		return
	}
	mine := func(s *job.Status) bool { return s.State == job.StateRunning && s.Worker == w.cfg.ID }
	if _, err := w.q.Statuses.TransitionIf(ctx, j.ID, mine, job.StatePaused, nil); err != nil {
		if errors.Is(err, queue.ErrConflict) {
			log.Info("pause overtaken: the job was requeued or taken over meanwhile")
			_ = msg.Ack()
			return
		}
		retryLater(msg, log, "record the pause", err, 2*time.Second)
		return
	}
	// A resume that withdrew the pause between the read above and the
	// transition saw the job running and left it to this worker: look again.
	c, err = w.q.Control.Current(ctx, j.ID)
	if err == nil && c == job.ControlCancel {
		// So did a cancel that came meanwhile (it requeues only a paused
		// job): the message goes back, and its next delivery cancels the
		// paused job (cancelPaused). Acked, the job stayed paused for good
		// with its cancel pending.
		w.setControl(j.ID, c)
		log.Info("canceled as the pause took effect: the job is canceled next")
		_ = msg.Nak()
		return
	}
	if err == nil && c == job.ControlNone {
		isPaused := func(s *job.Status) bool { return s.State == job.StatePaused }
		_, err := w.q.Statuses.TransitionIf(ctx, j.ID, isPaused, job.StateQueued, func(s *job.Status) { s.Error, s.Runs = nil, 0 })
		switch {
		case err == nil:
			w.setControl(j.ID, c)
			log.Info("pause withdrawn as it took effect: running the job again")
			w.count(ctx, "handed_back")
			_ = msg.Nak()
			return
		case errors.Is(err, queue.ErrConflict):
			// The resume found it paused and requeued it: its copy runs it.
			_ = msg.Ack()
			return
		default:
			log.Warn("pause withdrawn as it took effect, but the job could not be requeued", "err", err)
		}
	}
	_ = w.q.Events.Emit(ctx, job.EventPaused, j.ID, job.StoppedData{Metadata: j.Metadata})
	w.count(ctx, "paused")
	_ = msg.Ack()
}

// handBack puts a job this worker ran back to queued without counting the
// run against it (a shutdown, a withdrawn pause).
func (w *Worker) handBack(ctx context.Context, j *job.Job) {
	_, _ = w.q.Statuses.Transition(ctx, j.ID, job.StateQueued, func(s *job.Status) {
		if s.Worker == w.cfg.ID {
			s.Runs = max(s.Runs-1, 0)
		}
	})
}
