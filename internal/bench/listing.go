package bench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/gctune"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// P7's targets, from the scale issue: a page of 100 at 1,000,000 jobs.
const (
	p7PageP99     = 50 * time.Millisecond
	p7FilteredP99 = 100 * time.Millisecond
	p7MaxRSS      = 150 << 20
	p7Page        = 100
	p7Requests    = 200  // per kind and level
	p7Running     = 1000 // jobs moved to running at each level, spread over the stored ones
	p7Batch       = 1000 // jobs per Submit while filling
)

// p7 measures GET /v1/jobs against the number of jobs stored: a page of
// 100 from a random point of the listing of all jobs, and of the running
// jobs (a state filter that matches one job in ten to a thousand), p50 and
// p99 over p7Requests each, and the ingest process's RSS, at each level of
// jobs stored. Jobs are stored through the queue's batched submit (no
// workers: they stay queued), then p7Running of them move to running.
func (r *runner) p7(ctx context.Context) ([]Result, error) {
	l, err := r.newLab(ctx, "p7", labConfig{queue: queue.Config{JobsMaxBytes: -1, EventsMaxBytes: -1}})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	in, base, key, err := r.startIngest(ctx, l)
	if err != nil {
		return nil, err
	}
	defer in.Stop(10 * time.Second)
	// The lab's NATS server runs in this process: what its heap holds per
	// job stored is the live heap's growth over the filling, from a heap
	// that no longer holds what the earlier measurements left (their NATS
	// servers' caches live on until their timers fire).
	heapBefore := settledLiveHeap(ctx)
	rng := rand.New(rand.NewPCG(7, 7))
	var out []Result
	stored := 0
	for _, level := range r.sz.listLevels {
		start := time.Now()
		for stored < level {
			n := min(p7Batch, level-stored)
			jobs := make([]*job.Job, n)
			for i := range jobs {
				id := fmt.Sprintf("p7-%07d", stored+i)
				jobs[i] = &job.Job{V: 1, ID: id, Source: "https://media.example.com/" + id + ".mp4"}
			}
			for _, res := range l.q.Jobs.Submit(ctx, jobs) {
				if res.Err != nil {
					return out, fmt.Errorf("store job %s: %w", res.Job.ID, res.Err)
				}
			}
			stored += n
		}
		for range p7Running {
			id := fmt.Sprintf("p7-%07d", rng.IntN(level))
			if _, err := l.q.Statuses.TransitionIf(ctx, id, func(s *job.Status) bool { return s.State == job.StateQueued },
				job.StateRunning, nil); err != nil && !errors.Is(err, queue.ErrConflict) {
				return out, err
			}
		}
		r.logf("P7: %d jobs stored in %s", level, time.Since(start).Round(time.Second))
		ix, err := l.q.JetStream().Stream(ctx, queue.IndexStream)
		if err != nil {
			return out, err
		}
		lastSeq := ix.CachedInfo().State.LastSeq // cursors are index sequences: pick them over the whole stream
		all, err := listLatencies(ctx, base, key, "", lastSeq, rng)
		if err != nil {
			return out, err
		}
		running, err := listLatencies(ctx, base, key, job.StateRunning, lastSeq, rng)
		if err != nil {
			return out, err
		}
		rss, hwm, err := in.RSS()
		if err != nil {
			return out, err
		}
		storage, err := storedBytes(ctx, l)
		if err != nil {
			return out, err
		}
		heap := max(gctune.LiveHeap()-heapBefore, 0)
		verdict := Met
		if all[1] > p7PageP99 || running[1] > p7FilteredP99 || hwm > p7MaxRSS {
			verdict = Missed
		}
		r.logf("P7: %d jobs: page p50 %s p99 %s; running p50 %s p99 %s; ingest RSS %s (peak %s); JetStream %s; NATS server heap %s (%d bytes a job)",
			level, all[0], all[1], running[0], running[1], mib(rss), mib(hwm), storage, mib(heap), heap/int64(level))
		out = append(out, Result{
			ID: fmt.Sprintf("P7 %s", countWord(level)), What: fmt.Sprintf("GET /v1/jobs?limit=%d at %d jobs stored", p7Page, level),
			Measured: fmt.Sprintf("p99 %s (p50 %s); state=running p99 %s (p50 %s); ingest RSS %s, peak %s; JetStream %s; "+
				"NATS server heap %s (%d bytes a job)",
				ms1(all[1]), ms1(all[0]), ms1(running[1]), ms1(running[0]), mib(rss), mib(hwm), storage, mib(heap), heap/int64(level)),
			Ratio:   math.NaN(),
			Target:  fmt.Sprintf("p99 ≤ %s, filtered ≤ %s, RSS < %s", ms1(p7PageP99), ms1(p7FilteredP99), mib(p7MaxRSS)),
			Verdict: verdict,
			Setup: fmt.Sprintf("%d requests of each kind from random cursors, one at a time, to an ingest process over loopback; "+
				"jobs stored with the batched submit, %d of them moved to running; the NATS server's heap is the growth of this "+
				"process's live heap (after a collection) since before the filling: the server runs in it", p7Requests, p7Running),
			Samples: map[string]float64{"jobs": float64(level), "p50_ms": msOf(all[0]), "p99_ms": msOf(all[1]),
				"filtered_p50_ms": msOf(running[0]), "filtered_p99_ms": msOf(running[1]), "nats_heap_bytes_per_job": float64(heap) / float64(level)},
		})
		cons, err := consolePages(ctx, base, key, level, rng)
		if err != nil {
			return out, fmt.Errorf("console pages: %w", err)
		}
		r.logf("P7: %d jobs: %s", level, cons.Measured)
		out = append(out, cons)
	}
	return out, nil
}

// storedBytes says what the job layout's streams hold on disk: the status
// bucket, the index, the queued job messages and the events.
func storedBytes(ctx context.Context, l *lab) (string, error) {
	var parts []string
	for _, name := range []string{"KV_" + queue.StatusBucket, queue.IndexStream, queue.JobsStream, queue.EventsStream} {
		st, err := l.q.JetStream().Stream(ctx, name)
		if err != nil {
			return "", err
		}
		parts = append(parts, fmt.Sprintf("%s %s", name, mib(int64(st.CachedInfo().State.Bytes))))
	}
	return strings.Join(parts, ", "), nil
}

// startIngest starts an ingest process on l's NATS and returns it, its
// base URL and an API key with the read scope.
func (r *runner) startIngest(ctx context.Context, l *lab) (*child.Process, string, string, error) {
	port, err := child.FreePort()
	if err != nil {
		return nil, "", "", err
	}
	addr := child.Loopback(port)
	key := "p7-" + randomHex(16)
	cmd := exec.Command(r.o.Worker[0], append(slices.Clone(r.o.Worker[1:len(r.o.Worker)-1]), "ingest")...)
	cmd.Env = append(child.EnvWithout("VODPIPE_"), "VODPIPE_NATS_URL="+l.ns.ClientURL(),
		"VODPIPE_INGEST_HTTP_ADDR="+addr, "VODPIPE_API_KEYS=bench:"+key+":read", "VODPIPE_JOBS_MAX_BYTES=-1",
		// It signs nothing here, but a signature service is part of every ingest.
		"VODPIPE_SECRET_ID=AKIDbench"+randomHex(12), "VODPIPE_SECRET_KEY="+randomHex(24),
		"VODPIPE_EVENTS_MAX_BYTES=-1")
	p, err := child.Start(cmd, filepath.Join(l.dir, "ingest.log"))
	if err != nil {
		return nil, "", "", err
	}
	if err := p.WaitHTTPReady(ctx, "http://"+addr+"/readyz", 30*time.Second); err != nil {
		p.Kill()
		return nil, "", "", fmt.Errorf("ingest: %w\n%s", err, p.LogTail(2048))
	}
	return p, "http://" + addr, key, nil
}

// listLatencies times p7Requests pages of the listing (state "" for all
// jobs) from random cursors below lastSeq and returns their p50 and p99.
func listLatencies(ctx context.Context, base, key string, state job.State, lastSeq uint64, rng *rand.Rand) ([2]time.Duration, error) {
	var took []time.Duration
	for i := range p7Requests {
		u := fmt.Sprintf("%s/v1/jobs?limit=%d", base, p7Page)
		if state != "" {
			u += "&state=" + string(state)
		}
		if i > 0 { // the first page, then pages from random points
			seq := 1 + rng.Uint64N(max(lastSeq, 1))
			u += "&cursor=" + base64.RawURLEncoding.EncodeToString([]byte(string(state)+":"+strconv.FormatUint(seq, 10)))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return [2]time.Duration{}, err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return [2]time.Duration{}, err
		}
		var page struct {
			Jobs []json.RawMessage `json:"jobs"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		took = append(took, time.Since(start))
		if resp.StatusCode != http.StatusOK || err != nil {
			return [2]time.Duration{}, fmt.Errorf("GET %s: %d %v", u, resp.StatusCode, err)
		}
	}
	slices.Sort(took)
	return [2]time.Duration{took[len(took)/2], took[len(took)*99/100]}, nil
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ms1 is a duration in milliseconds with a tenth, for latencies of a few ms.
func ms1(d time.Duration) string { return fmt.Sprintf("%.1f ms", msOf(d)) }

// countWord is 10k, 100k, 1M.
func countWord(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// settledLiveHeap is the live heap once it stops shrinking: sampled every
// half second until a sample is within 1 MiB of the one before, for at
// most 30 s.
func settledLiveHeap(ctx context.Context) int64 {
	last := gctune.LiveHeap()
	for range 60 {
		if !retry.Sleep(ctx, 500*time.Millisecond) {
			return last
		}
		now := gctune.LiveHeap()
		if last-now < 1<<20 {
			return min(last, now)
		}
		last = now
	}
	return last
}
