package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// controls pauses running jobs and resumes them while faults run; what
// it did is read once its loops have ended.
type controls struct {
	mu   sync.Mutex
	busy map[string]bool // the jobs a loop is pausing and resuming
	// Paused counts the pauses of each job carried out and resumed: each
	// interrupted the job's parts in flight; Late the pauses accepted as
	// their job finished (it completed instead).
	Paused map[string]int
	Late   int
	// Lost lists the pauses accepted that no worker carried out while the
	// run lasted, and the resumes refused.
	Lost []string
}

func newControls() *controls {
	return &controls{busy: map[string]bool{}, Paused: map[string]int{}}
}

// claim picks a job of ids that no other loop holds, or "".
func (c *controls) claim(rng *rand.Rand, ids []string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	for _, id := range ids {
		if !c.busy[id] {
			c.busy[id] = true
			return id
		}
	}
	return ""
}

func (c *controls) done(id string, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.busy, id)
	f()
}

// total is the number of pauses carried out and resumed.
func (c *controls) total() int {
	n := 0
	for _, p := range c.Paused {
		n += p
	}
	return n
}

// run pauses a running job every second or two while more says so, and
// resumes it once it is paused: workers of every NATS node must take each
// pause and the resume after it, in the order accepted, through node kills
// and partitions (a pause lost leaves the job running past it; a resume
// lost, or applied before its pause, leaves it paused for good, which the
// checks find as a job not committed). A job it holds paused is resumed
// whatever ctx does (within base, the run's own context), so every job can
// finish.
func (c *controls) run(ctx, base context.Context, rng *rand.Rand, api *client.Client, more func() bool, logf func(string, ...any)) {
	for more() {
		if !retry.Sleep(ctx, time.Second+time.Duration(rng.Int64N(int64(time.Second)))) {
			return
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := api.List(lctx, job.StateRunning, 20, "")
		cancel()
		if err != nil || len(list.Jobs) == 0 {
			continue // ingest restarting, or nothing running right now
		}
		ids := make([]string, len(list.Jobs))
		for i, v := range list.Jobs {
			ids[i] = v.ID
		}
		id := c.claim(rng, ids)
		if id == "" {
			continue
		}
		if !c.pauseAndResume(base, api, id, logf) {
			return
		}
	}
}

// pauseAndResume pauses job id and resumes it once paused; false if a
// pause or resume was lost (the loop stops: the checks report it).
func (c *controls) pauseAndResume(ctx context.Context, api *client.Client, id string, logf func(string, ...any)) bool {
	if _, err := control(ctx, api, id, "pause"); err != nil {
		c.done(id, func() {}) // finished meanwhile, or ingest unreachable
		return true
	}
	asked := time.Now()
	switch st := waitPausedOrDone(ctx, api, id); st {
	case job.StatePaused:
		// A resume whose answer was lost is refused when asked again:
		// the job is no longer paused.
		if _, err := control(ctx, api, id, "resume"); err != nil && stateOf(ctx, api, id) == job.StatePaused {
			c.done(id, func() { c.Lost = append(c.Lost, fmt.Sprintf("%s: resume: %v", id, err)) })
			return false
		}
		logf("controls: %s paused (%.1fs after the request) and resumed", id, time.Since(asked).Seconds())
		c.done(id, func() { c.Paused[id]++ })
	case job.StateCompleted:
		c.done(id, func() { c.Late++ })
	case "":
		c.done(id, func() { c.Lost = append(c.Lost, id+": neither paused nor finished while the run lasted") })
		return false
	default:
		c.done(id, func() { c.Lost = append(c.Lost, fmt.Sprintf("%s: %s after its pause", id, st)) })
	}
	return true
}

// control asks ingest for action on job id until it answers (it may be
// restarting): nil once accepted, the API's error once refused.
func control(ctx context.Context, api *client.Client, id, action string) (client.JobView, error) {
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := api.Control(rctx, id, action)
		cancel()
		var ae *client.APIError
		if err == nil || errors.As(err, &ae) && ae.Status < http.StatusInternalServerError {
			return v, err
		}
		if !retry.Sleep(ctx, 250*time.Millisecond) {
			return v, err
		}
	}
}

// waitPausedOrDone waits until job id is paused or terminal and returns
// that state ("" if ctx ended first).
func waitPausedOrDone(ctx context.Context, api *client.Client, id string) job.State {
	for {
		st := stateOf(ctx, api, id)
		if st == "" || st == job.StatePaused || st.Terminal() {
			return st
		}
		if !retry.Sleep(ctx, 200*time.Millisecond) {
			return ""
		}
	}
}

// stateOf is job id's state, asked until ingest answers ("" if ctx ends first).
func stateOf(ctx context.Context, api *client.Client, id string) job.State {
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := api.Get(rctx, id)
		cancel()
		if err == nil {
			return v.State
		}
		if !retry.Sleep(ctx, 200*time.Millisecond) {
			return ""
		}
	}
}
