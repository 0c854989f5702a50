package worker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vodpipe/vodpipe/internal/upload"
	"github.com/vodpipe/vodpipe/pkg/job"
)

func TestDecideDelivery(t *testing.T) {
	controls := []job.Control{job.ControlNone, job.ControlPause, job.ControlCancel}
	for _, tc := range []struct {
		state   job.State
		control job.Control // "*": the same for every control
		want    onDelivery
	}{
		{job.StateQueued, "*", deliveryRun},
		{job.StateRunning, "*", deliveryRun}, // a redelivery after a worker died: run it again
		{job.StateCompleted, "*", deliveryCompleted},
		{job.StateFailed, "*", deliveryFailed},
		{job.StateCanceled, "*", deliveryDone},
		{job.StatePaused, job.ControlNone, deliveryStale},
		{job.StatePaused, job.ControlPause, deliveryStale},
		{job.StatePaused, job.ControlCancel, deliveryCancelPaused},
	} {
		for _, c := range controls {
			if tc.control != "*" && tc.control != c {
				continue
			}
			if got := decideDelivery(&job.Status{State: tc.state}, c); got != tc.want {
				t.Errorf("%s with control %q: %d, want %d", tc.state, c, got, tc.want)
			}
		}
	}
}

func TestDecideUnderLease(t *testing.T) {
	committed := &upload.Loaded{State: &upload.State{FileID: "5285890799999"}}
	partial := &upload.Loaded{State: &upload.State{}}
	none := &upload.Loaded{}
	unreadable := &upload.Loaded{Err: errors.New("redis: connection refused")}
	garbled := &upload.Loaded{Err: fmt.Errorf("decode: %w", upload.ErrBadState)}
	for _, tc := range []struct {
		name    string
		runs    runsFact
		control job.Control
		loaded  *upload.Loaded
		want    underLease
	}{
		{"runs left, state unread", runsLeft, job.ControlNone, nil, leaseRun},
		{"runs left, partial", runsLeft, job.ControlNone, partial, leaseRun},
		{"runs left, committed", runsLeft, job.ControlNone, committed, leaseFinishCommitted},
		{"runs left, pause asked", runsLeft, job.ControlPause, partial, leaseRun},
		{"out of runs", runsOut, job.ControlNone, partial, leaseReadAgain},
		{"out of runs, committed", runsOut, job.ControlNone, committed, leaseReadAgain},
		{"out of runs, pause asked: the run carries it out", runsOut, job.ControlPause, partial, leaseRun},
		{"out of runs, cancel asked: the run carries it out", runsOut, job.ControlCancel, partial, leaseRun},
		{"out of runs, cancel asked, committed", runsOut, job.ControlCancel, committed, leaseFinishCommitted},
		{"still out, committed", runsOutReread, job.ControlNone, committed, leaseFinishCommitted},
		{"still out, partial", runsOutReread, job.ControlNone, partial, leaseExhausted},
		{"still out, no state", runsOutReread, job.ControlNone, none, leaseExhausted},
		{"still out, state garbled", runsOutReread, job.ControlNone, garbled, leaseExhausted},
		{"still out, state unreadable", runsOutReread, job.ControlNone, unreadable, leaseRetryLoad},
		{"still out, state unread", runsOutReread, job.ControlNone, nil, leaseRetryLoad},
	} {
		if got := decideUnderLease(tc.runs, tc.control, tc.loaded); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
