package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vodpipe/vodpipe/pkg/ingest"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/stack"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// P3's shape: the whole system in this process (pkg/stack), jobs submitted
// through ingest's HTTP API in batches.
const (
	p3Workers       = 2  // worker instances in the stack
	p3JobsPerWorker = 32 // jobs each runs at once
	p3Batch         = 100
	p3Target        = 1000.0 // jobs per second
)

// p3 pushes many small jobs through ingest, workers, vodsim and notify to an
// application's webhook endpoint, all in one process on this machine: jobs
// per second and latency percentiles, from submit to webhook delivered (and,
// on the way, to committed: the job.completed event on NATS).
func (r *runner) p3(ctx context.Context) ([]Result, error) {
	sz := r.sz
	paths, err := r.src.files(sz.jobSize, sz.jobs)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(r.dir, "p3-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	st, err := stack.Start(ctx, stack.Options{
		DataDir: dir, SourceRoot: r.src.root, Workers: p3Workers, JobsPerWorker: p3JobsPerWorker,
		PartSize: sz.partSize, Concurrency: sz.concurrency, Queue: labQueue, LeaseTTL: labQueue.AckWait,
		Vodsim: func(c *vodsim.Config) { c.Discard = true },
	})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	nc, err := nats.Connect(st.NATSURL, nats.Name("vodpipe-bench"))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	committed, err := track(nc)
	if err != nil {
		return nil, err
	}
	defer committed.stop()
	delivered, err := subscribeWebhooks(ctx, st.NotifyURL, st.APIKey)
	if err != nil {
		return nil, err
	}
	defer delivered.stop()

	c := ingest.NewClient(st.IngestURL, st.APIKey)
	submitted := make(map[string]time.Time, len(paths))
	ids := make([]string, 0, len(paths))
	start, cpu0 := time.Now(), cpuTime()
	for from := 0; from < len(paths); from += p3Batch {
		batch := make([]*job.Job, 0, p3Batch)
		for i := from; i < min(from+p3Batch, len(paths)); i++ {
			batch = append(batch, fileJob(fmt.Sprintf("p3-%04d", i), paths[i]))
		}
		at := time.Now()
		resp, err := c.SubmitBatch(ctx, batch)
		if err != nil {
			return nil, fmt.Errorf("submit: %w", err)
		}
		if resp.Queued != len(batch) {
			return nil, fmt.Errorf("submit: %d of %d queued: %+v", resp.Queued, len(batch), resp.Items)
		}
		for _, j := range batch {
			submitted[j.ID] = at
			ids = append(ids, j.ID)
		}
	}
	submitRate := float64(len(ids)) / time.Since(start).Seconds()
	commits, err := committed.wait(ctx, ids)
	if err != nil {
		return nil, err
	}
	deliveries, err := delivered.wait(ctx, ids)
	if err != nil {
		return nil, err
	}
	busy := float64(cpuTime()-cpu0) / float64(time.Since(start))
	if n := delivered.invalid(); n > 0 {
		return nil, fmt.Errorf("%d webhook deliveries had an invalid signature", n)
	}
	toCommit, _ := latencies(submitted, commits)
	toWebhook, last := latencies(submitted, deliveries)
	rate := float64(len(ids)) / last.Sub(start).Seconds()
	p50, p99 := percentile(toWebhook, 50), percentile(toWebhook, 99)
	r.logf("P3: %d jobs: %.0f jobs/s, p50 %s, p99 %s to webhook delivered; p50 %s, p99 %s to committed "+
		"(ingest accepted %.0f jobs/s; %.1f of %d CPUs busy)", len(ids), rate, p50, p99,
		percentile(toCommit, 50), percentile(toCommit, 99), submitRate, busy, runtime.NumCPU())
	return []Result{{
		ID: "P3", What: fmt.Sprintf("%d × %s jobs end to end, submitted → committed → webhook delivered", sz.jobs, mib(sz.jobSize)),
		Measured: fmt.Sprintf("%.0f jobs/s; p50 %s, p99 %s", rate, ms(p50), ms(p99)),
		Baseline: fmt.Sprintf("target %.0f jobs/s", p3Target), Ratio: rate / p3Target,
		Target: fmt.Sprintf("≥ %.0f jobs/s", p3Target), Verdict: verdict(rate >= p3Target),
		Setup: fmt.Sprintf("the whole system in one process (pkg/stack: embedded NATS, vodsim in discard mode, ingest, "+
			"%d workers × %d jobs at once, resume state in JetStream KV, notify) on this machine; %d jobs of %s random files "+
			"submitted through ingest's HTTP API in batches of %d (accepted at %.0f jobs/s); a job's latency runs from "+
			"the POST of its batch to the delivery of its job.completed webhook, signature verified, at an endpoint "+
			"subscribed through notify's API (to committed, its job.completed event on NATS: p50 %s, p99 %s); "+
			"throughput from the first POST to the last delivery; the process kept %.1f of %d CPUs busy meanwhile",
			p3Workers, p3JobsPerWorker, sz.jobs, mib(sz.jobSize), p3Batch, submitRate,
			ms(percentile(toCommit, 50)), ms(percentile(toCommit, 99)), busy, runtime.NumCPU()),
	}}, nil
}

// latencies are the sorted times from each job's start to its end, and the last end.
func latencies(start, end map[string]time.Time) ([]time.Duration, time.Time) {
	out := make([]time.Duration, 0, len(start))
	var last time.Time
	for id, t := range start {
		out = append(out, end[id].Sub(t))
		if end[id].After(last) {
			last = end[id]
		}
	}
	slices.Sort(out)
	return out, last
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (p*len(sorted) + 99) / 100 // ceil(p/100 × n), 1-based
	return sorted[max(i, 1)-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
