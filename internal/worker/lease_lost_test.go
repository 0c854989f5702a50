package worker_test

import (
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/resume"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// TestWorkerThatLostItsLeaseLeavesTheStatusAlone: a worker whose lease was
// taken over (it expired while Redis was out of reach, or while the worker
// was stopped) notices at its next renewal and cancels its run. When the
// run was inside a VOD call (here a commit whose answer is slow), the
// cancellation came back as a transport failure, not upload.ErrLeaseLost,
// and until 0.10 finish wrote the status queued over the new holder's
// running one (and the signature service then refused the holder). A
// worker that no longer holds the lease writes no status.
func TestWorkerThatLostItsLeaseLeavesTheStatusAlone(t *testing.T) {
	e := newEnv(t, true, func(c *vodsim.Config) {
		c.Faults = vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpCommit, AnswerLatency: vodsim.Duration(8 * time.Second)}}}
	})
	src, _ := e.source("stale.mp4", 2<<20+1)
	j := &job.Job{ID: "stale-1", Source: src}
	e.submit(j)
	e.startWorker("w1")
	// The commit is carried out; its answer is 8 s away.
	deadline := time.Now().Add(30 * time.Second)
	for len(e.sim.Files()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no commit in 30 s\nlogs:\n%s", e.logBuf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Another worker takes the job over: the lease expired and w2 took it
	// and marked the job running.
	rdb := e.redis.Client(t)
	if err := rdb.Del(t.Context(), "vodpipe:{"+j.ID+"}:lease").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := resume.NewRedis(rdb).Acquire(t.Context(), j.ID, "w2", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.Statuses.Transition(t.Context(), j.ID, job.StateRunning, func(s *job.Status) { s.Worker = "w2" }); err != nil {
		t.Fatal(err)
	}
	// w1 renews within a second, finds the lease lost, stops its run.
	time.Sleep(4 * time.Second)
	s, _, err := e.q.Statuses.Get(t.Context(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.State != job.StateRunning || s.Worker != "w2" {
		t.Fatalf("status after w1 lost its lease = %s by %q (error %+v); want running by w2, untouched by w1\nlogs:\n%s",
			s.State, s.Worker, s.Error, e.logBuf.String())
	}
}
