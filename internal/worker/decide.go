package worker

import (
	"errors"

	"github.com/vodpipe/vodpipe/internal/upload"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// What a worker does with a job: the decisions are pure functions of what
// it read (status, control, runs, resume state), table-tested in
// decide_test.go; handle carries them out (acks, naks, writes).

// onDelivery is what to do with a delivered job message, before any lease.
type onDelivery int

const (
	// deliveryRun takes the lease and decides again under it (underLease).
	deliveryRun onDelivery = iota
	// deliveryCompleted: committed before; record the FileId mapping,
	// publish job.completed again (same id) and ack. Never a second file.
	deliveryCompleted
	// deliveryFailed: failed for good before; publish job.failed again and ack.
	deliveryFailed
	// deliveryDone: canceled before, nothing left; ack.
	deliveryDone
	// deliveryCancelPaused: a paused job with a cancel pending; abort its
	// upload, cancel it and ack.
	deliveryCancelPaused
	// deliveryStale: a copy of a paused job (its resume publishes a fresh
	// one); ack.
	deliveryStale
)

// decideDelivery decides from the job's status and its control.
func decideDelivery(st *job.Status, control job.Control) onDelivery {
	switch st.State {
	case job.StateCompleted:
		return deliveryCompleted
	case job.StateFailed:
		return deliveryFailed
	case job.StateCanceled:
		return deliveryDone
	case job.StatePaused:
		if control == job.ControlCancel {
			return deliveryCancelPaused
		}
		return deliveryStale
	}
	return deliveryRun
}

// underLease is what to do with a job once its lease is held.
type underLease int

const (
	// leaseRun marks the job running and runs the upload.
	leaseRun underLease = iota
	// leaseFinishCommitted runs nothing: the resume state holds a commit,
	// so no running status and no job.started; the run returns the
	// recorded commit and the job completes.
	leaseFinishCommitted
	// leaseReadAgain: out of runs with nothing asked for; read the status
	// again under the lease (a hand-back or a resume may have lowered the
	// count) and decide again.
	leaseReadAgain
	// leaseExhausted: out of runs for good and never committed; fail and
	// dead-letter the job (max_deliveries).
	leaseExhausted
	// leaseRetryLoad: the resume state could not be read; try the delivery
	// again later.
	leaseRetryLoad
)

// runsFact is what the worker knows of a job's runs.
type runsFact int

const (
	runsLeft      runsFact = iota // the job has runs left
	runsOut                       // out of runs, as first read
	runsOutReread                 // out of runs, read again under the lease
)

// decideUnderLease decides from the job's runs, its control (a pause or a
// cancel asked for is carried out by a run, which stops at once, even out
// of runs) and its resume state (nil: not read with the lease).
func decideUnderLease(runs runsFact, control job.Control, loaded *upload.Loaded) underLease {
	if runs == runsOut && control == job.ControlNone {
		return leaseReadAgain
	}
	if runs == runsOutReread {
		switch {
		case loaded == nil || (loaded.Err != nil && !errors.Is(loaded.Err, upload.ErrBadState)):
			// Its resume state decides, and it is unread (the caller reads
			// it under the lease before asking) or could not be read.
			return leaseRetryLoad
		case loaded.Err != nil || !loaded.Committed():
			// An undecodable state cannot say it was committed either.
			return leaseExhausted
		}
	}
	if loaded != nil && loaded.Committed() {
		return leaseFinishCommitted
	}
	return leaseRun
}
