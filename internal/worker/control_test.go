package worker_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// controlRequest is one pause, resume or cancel as the API makes it.
type controlRequest string

const (
	reqPause  controlRequest = "pause"
	reqResume controlRequest = "resume"
	reqCancel controlRequest = "cancel"
)

// controlLedger is what the API answered one job: the requests it accepted,
// in order.
type controlLedger struct {
	accepted       []controlRequest
	cancelAccepted bool
}

// want is the state the job must end in: canceled once a cancel was
// accepted, paused when the last accepted request is a pause, completed
// otherwise (a resume, or nothing, leaves it to run to its end).
func (l *controlLedger) want() job.State {
	switch {
	case l.cancelAccepted:
		return job.StateCanceled
	case len(l.accepted) > 0 && l.accepted[len(l.accepted)-1] == reqPause:
		return job.StatePaused
	}
	return job.StateCompleted
}

// TestLastAcceptedControlRequestWins interleaves pause, resume and cancel
// requests on several jobs with deliveries, redeliveries (stray copies of a
// job's message, workers killed with SIGKILL mid-part) and workers handing
// their jobs back on SIGTERM, in an order drawn from a seed, and checks that
// each job ends as the last request the API accepted says. Uploads are
// throttled while the requests are made, so no job can complete in the
// middle of them (a pause that loses to a commit would be a fair race, not
// a lost request); then the throttle is lifted and every job settles.
//
// VODPIPE_TEST_SEED=<seed> replays an order; VODPIPE_TEST_ROUNDS=<n> runs
// more of them.
func TestLastAcceptedControlRequestWins(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("VODPIPE_TEST_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("VODPIPE_TEST_SEED: %v", err)
		}
	}
	rounds := 1
	if s := os.Getenv("VODPIPE_TEST_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	for r := range rounds {
		t.Run(fmt.Sprintf("seed=%d", seed+uint64(r)), func(t *testing.T) {
			lastAcceptedControlRequestWins(t, seed+uint64(r))
		})
	}
}

func lastAcceptedControlRequestWins(t *testing.T, seed uint64) {
	t.Logf("order drawn from seed %d: VODPIPE_TEST_SEED=%[1]d replays it", seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	e := newEnv(t, true)
	// Kills and hand-backs must not run a job out of runs: that would be a
	// failure for a reason this test is not about.
	e.cfg.MaxDeliver = 100
	const (
		jobs     = 3
		size     = 16 << 20
		steps    = 30
		maxKills = 3
	)
	// 512 KiB/s for everything: a few MiB move while the requests are
	// made, far less than one job's 16.
	if err := e.sim.SetFaults(vodsim.FaultConfig{Bandwidth: 512 << 10}); err != nil {
		t.Fatal(err)
	}
	workers := []*exec.Cmd{e.workerProcess("w0"), e.workerProcess("w1")}
	nextWorker := 2
	// replace signals a worker and starts another in its place at once: a
	// worker stopped with SIGTERM drains its parts and hands its job back
	// meanwhile (workerProcess reaps it when the test ends).
	replace := func(i int, sig syscall.Signal) {
		_ = workers[i].Process.Signal(sig)
		workers[i] = e.workerProcess(fmt.Sprintf("w%d", nextWorker))
		nextWorker++
	}

	ids := make([]string, jobs)
	data := map[string][]byte{}
	ledgers := map[string]*controlLedger{}
	for i := range ids {
		ids[i] = fmt.Sprintf("ctl-%d", i)
		src, b := e.source(ids[i]+".mp4", size+i)
		data[ids[i]], ledgers[ids[i]] = b, &controlLedger{}
		e.submit(&job.Job{ID: ids[i], Source: src})
	}

	ctx := t.Context()
	js := e.q.JetStream()
	kills, copies := 0, 0
	var trace []string
	for step := range steps {
		id := ids[rng.IntN(jobs)]
		l := ledgers[id]
		switch n := rng.IntN(100); {
		case n < 65:
			req := []controlRequest{reqPause, reqResume, reqCancel}[rng.IntN(3)]
			var err error
			switch req {
			case reqPause:
				_, err = e.q.Control.Pause(ctx, id)
			case reqResume:
				_, err = e.q.Control.Resume(ctx, id)
			case reqCancel:
				_, err = e.q.Control.Cancel(ctx, id)
			}
			switch {
			case err == nil:
				if l.cancelAccepted && req != reqCancel {
					t.Fatalf("step %d: %s of %s accepted after its cancel was (trace %v)", step, req, id, trace)
				}
				l.accepted = append(l.accepted, req)
				l.cancelAccepted = l.cancelAccepted || req == reqCancel
				trace = append(trace, fmt.Sprintf("%s %s: accepted", req, id))
			case errors.Is(err, queue.ErrConflict):
				trace = append(trace, fmt.Sprintf("%s %s: refused", req, id))
			default:
				t.Fatalf("step %d: %s %s: %v", step, req, id, err)
			}
		case n < 80:
			// A stray copy of the job's message: a delivery the job's
			// state must absorb, whatever that state is.
			copies++
			st, _, err := e.q.Statuses.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			b, err := st.Job.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: queue.JobsSubject, Data: b,
				Header: nats.Header{jetstream.MsgIDHeader: []string{fmt.Sprintf("%s.copy.%d", id, copies)}}}); err != nil {
				t.Fatal(err)
			}
			trace = append(trace, "copy of "+id)
		case n < 90 && kills < maxKills:
			// A worker dies mid-part: its job is redelivered once its ack
			// wait and lease run out.
			kills++
			i := rng.IntN(len(workers))
			replace(i, syscall.SIGKILL)
			trace = append(trace, fmt.Sprintf("kill worker %d", i))
		default:
			i := rng.IntN(len(workers))
			replace(i, syscall.SIGTERM)
			trace = append(trace, fmt.Sprintf("stop worker %d", i))
		}
		// The interleaving's randomness: how far deliveries and parts get
		// between two steps. Nothing waits on this for a condition.
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
	}
	t.Logf("steps: %v", trace)
	t.Cleanup(func() {
		if t.Failed() {
			for _, id := range ids {
				logJobEvents(t, e, id)
			}
		}
	})

	// No job may have completed while the requests were made (the throttle
	// is what makes "the last accepted request" well defined).
	for _, id := range ids {
		if st, _, err := e.q.Statuses.Get(ctx, id); err == nil && st.State == job.StateCompleted {
			t.Fatalf("%s completed while requests were still made: the throttle is too loose for this test", id)
		}
	}
	if err := e.sim.SetFaults(vodsim.FaultConfig{}); err != nil {
		t.Fatal(err)
	}

	completed := 0
	for _, id := range ids {
		want := ledgers[id].want()
		s := e.waitState(id, want, 90*time.Second)
		if want == job.StateCompleted {
			completed++
			e.storedEquals(s, data[id])
		}
	}
	// Every copy of every message is gone from the queue, and the jobs are
	// still where they settled: nothing queued behind a pause carries it
	// out later, nothing resumes a paused job on its own.
	testharness.WaitFor(t, 60*time.Second, "an empty queue", func() bool {
		d, err := e.q.Depth(ctx)
		return err == nil && d.Pending == 0 && d.InFlight == 0
	})
	for _, id := range ids {
		st, _, err := e.q.Statuses.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if want := ledgers[id].want(); st.State != want {
			t.Fatalf("%s is %s after the queue drained, want %s (accepted %v)", id, st.State, want, ledgers[id].accepted)
		}
	}
	if files := e.sim.Files(); len(files) != completed {
		t.Fatalf("vodsim holds %d files, %d jobs completed", len(files), completed)
	}
	// Only a paused job keeps its multipart upload open, to resume it.
	paused := 0
	for _, id := range ids {
		if ledgers[id].want() == job.StatePaused {
			paused++
		}
	}
	if u := e.sim.Uploads(); len(u) > paused {
		t.Fatalf("%d multipart uploads left open, %d jobs paused: %+v", len(u), paused, u)
	}
}

// logJobEvents logs a job's events, to tell a failure's story.
func logJobEvents(t *testing.T, e *env, id string) {
	ctx := context.Background()
	c, err := e.q.JetStream().OrderedConsumer(ctx, queue.EventsStream,
		jetstream.OrderedConsumerConfig{FilterSubjects: []string{queue.EventFilterSubject("*", id)}})
	if err != nil {
		t.Log(err)
		return
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Log(err)
		return
	}
	for range info.NumPending {
		m, err := c.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			t.Log(err)
			return
		}
		if ev, err := job.DecodeEvent(m.Data()); err == nil {
			t.Logf("%s %s %s %.200s", ev.Time.Format("15:04:05.000"), id, ev.Type, ev.Data)
		}
	}
}

// TestControlAcceptedBeforeTheWorkerStartedIsCarriedOut: a worker's view
// of the control bucket starts with the controls already there, so a pause
// or a cancel accepted while no worker ran is carried out by the first
// worker that takes the job, not lost to a view that only saw changes.
func TestControlAcceptedBeforeTheWorkerStartedIsCarriedOut(t *testing.T) {
	e := newEnv(t, false)
	ctx := t.Context()
	srcP, _ := e.source("before-pause.mp4", 3<<20)
	srcC, _ := e.source("before-cancel.mp4", 3<<20)
	e.submit(&job.Job{ID: "before-pause", Source: srcP})
	e.submit(&job.Job{ID: "before-cancel", Source: srcC})
	if _, err := e.q.Control.Pause(ctx, "before-pause"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.Control.Cancel(ctx, "before-cancel"); err != nil {
		t.Fatal(err)
	}
	e.startWorker("late")
	e.waitState("before-pause", job.StatePaused, 30*time.Second)
	e.waitState("before-cancel", job.StateCanceled, 30*time.Second)
	if n := len(e.events(job.EventStarted, "before-cancel")); n > 1 {
		t.Fatalf("the canceled job started %d times", n)
	}
	if files := e.sim.Files(); len(files) != 0 {
		t.Fatalf("vodsim holds %+v: a controlled job was uploaded", files)
	}
}
