package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/stack"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// P3's shape: the whole system in this process (internal/stack), jobs submitted
// through ingest's HTTP API in batches.
const (
	p3Workers       = 2  // worker instances in the stack
	p3JobsPerWorker = 64 // jobs each runs at once
	p3Batch         = 100
	p3Target        = 1000.0 // jobs per second
)

// p3 pushes many small jobs through ingest, workers, vodsim and notify to an
// application's webhook endpoint, all in one process on this machine: jobs
// per second and latency percentiles, from submit to webhook delivered (and,
// on the way, to committed: the time on the job.completed event). A warm-up
// round opens the connections; the figure is the median of the measured
// rounds (the spread is in the setup text).
func (r *runner) p3(ctx context.Context) ([]Result, error) {
	paths, err := r.src.files(r.sz.jobSize, r.sz.jobs)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(r.dir, "p3-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// Resume state and leases in Redis, as production keeps them.
	rds, err := child.StartRedis(ctx, dir, "--save", "", "--appendonly", "no")
	if err != nil {
		return nil, err
	}
	defer func() { _ = rds.Stop() }()
	st, err := stack.Start(ctx, stack.Options{
		DataDir: dir, SourceRoot: r.src.root, Workers: p3Workers, JobsPerWorker: p3JobsPerWorker,
		RedisURL: "redis://" + rds.Addr,
		PartSize: r.sz.partSize, Concurrency: r.sz.concurrency, Queue: labQueue, LeaseTTL: labQueue.AckWait,
		Vodsim: func(c *vodsim.Config) { c.Discard = true },
	})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	// The application's endpoint is the measurement's only observer: the
	// commit time comes with the event, so nothing else taps NATS.
	delivered, err := subscribeWebhooks(ctx, st.NotifyURL, st.APIKey)
	if err != nil {
		return nil, err
	}
	defer delivered.stop()
	e := &p3Env{c: client.NewClient(st.IngestURL, st.APIKey), delivered: delivered, redisPID: rds.PID(), nats: st.NATS}

	if _, err := e.round(ctx, "p3-warm", paths[:p3Warm(paths)]); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	// P3b's bare loop, run right after each round (p3Pair).
	var bare *bareLoop
	if r.selected("P3b") {
		if bare, err = r.newBareLoop(ctx, paths); err != nil {
			return nil, fmt.Errorf("P3b: %w", err)
		}
		defer bare.Close()
	}
	reference := func() (float64, error) {
		if r.o.NoHostReference {
			return 0, nil // see Options.NoHostReference
		}
		return hostReference(ctx, time.Second)
	}
	var rounds []p3Round
	var pairs []p3Pair // P3b's, handed over once P3 succeeded
	for i := range p3Rounds(r.sz) {
		// The host's speed around the round (the mean of a second right
		// before and a second right after it), from a workload of no vodpipe code.
		before, err := reference()
		if err != nil {
			return nil, err
		}
		rr, err := e.round(ctx, fmt.Sprintf("p3-r%d", i+1), paths)
		if err != nil {
			return nil, err
		}
		after, err := reference()
		if err != nil {
			return nil, err
		}
		rr.reference = (before + after) / 2
		r.logf("P3: round %d: %d jobs: %.0f jobs/s, p50 %s, p99 %s to webhook delivered; p50 %s, p99 %s to committed "+
			"(ingest accepted %.0f jobs/s; %.1f of %d CPUs busy in this process; CPU per job %s here, %s in redis-server; "+
			"%s; NATS messages per job: %.1f in, %.1f out; last delivered: %s)",
			i+1, len(paths), rr.rate, rr.p50, rr.p99, rr.commitP50, rr.commitP99, rr.submitRate, rr.busy, runtime.NumCPU(),
			us(rr.cpuPerJob), us(rr.redisPerJob), rr.referenceText(), rr.natsIn, rr.natsOut, rr.slowest)
		rounds = append(rounds, rr)
		if bare != nil {
			rate, err := bare.round(ctx)
			if err != nil {
				return nil, fmt.Errorf("P3b: %w", err)
			}
			r.logf("P3b: after P3's round %d: bare loop %.0f jobs/s, ratio %.3f", i+1, rate, rr.rate/rate)
			pairs = append(pairs, p3Pair{p3: rr.rate, bare: rate})
		}
	}
	if n := delivered.invalid(); n > 0 {
		return nil, fmt.Errorf("%d webhook deliveries had an invalid signature", n)
	}
	r.p3Pairs = pairs
	// The median round by rate, the lower middle as median() takes it.
	slices.SortFunc(rounds, func(a, b p3Round) int { return cmp.Compare(a.rate, b.rate) })
	m := rounds[(len(rounds)-1)/2]
	spread := make([]string, len(rounds))
	for i, x := range rounds {
		spread[i] = fmt.Sprintf("%.0f", x.rate)
	}
	sz := r.sz
	return []Result{{
		ID: "P3", What: fmt.Sprintf("%d × %s jobs end to end, submitted → committed → webhook delivered", sz.jobs, mib(sz.jobSize)),
		Measured: fmt.Sprintf("%.0f jobs/s; p50 %s, p99 %s", m.rate, ms(m.p50), ms(m.p99)),
		Baseline: fmt.Sprintf("target %.0f jobs/s", p3Target), Ratio: m.rate / p3Target,
		Target: fmt.Sprintf("≥ %.0f jobs/s", p3Target), Verdict: verdict(m.rate >= p3Target),
		Setup: fmt.Sprintf("the whole system in one process (internal/stack: embedded NATS the services reach over loopback TCP, "+
			"vodsim in discard mode, ingest, %d workers × %d jobs at once, notify) with resume state and leases in a "+
			"redis-server process, on this machine; %d jobs of %s random files submitted through ingest's HTTP API in "+
			"batches of %d; a job's latency runs from the POST of its batch to the delivery of its job.completed webhook, "+
			"signature verified, at an endpoint subscribed through notify's API (to committed, the time the worker put on "+
			"that job.completed event: p50 %s, p99 %s); throughput from the first POST to the last delivery; after a "+
			"warm-up round of %d jobs, the median of %d rounds (jobs/s of each, sorted: %s; ingest accepted %.0f jobs/s; "+
			"the process kept %.1f of %d CPUs busy; CPU per job: %s in this process, %s in redis-server, a figure that "+
			"follows this machine's speed; %s; the NATS server took in %.1f "+
			"messages per job (publishes and requests of ingest, the workers and notify) and sent out %.1f)%s",
			p3Workers, p3JobsPerWorker, sz.jobs, mib(sz.jobSize), p3Batch, ms(m.commitP50), ms(m.commitP99),
			p3Warm(paths), len(rounds), strings.Join(spread, ", "), m.submitRate, m.busy, runtime.NumCPU(),
			us(m.cpuPerJob), us(m.redisPerJob), m.referenceSetup(), m.natsIn, m.natsOut, bareIdle(bare)),
	}}, nil
}

// referenceText is the round's host reference as its progress line gives it.
func (x p3Round) referenceText() string {
	if x.reference == 0 {
		return "host reference not measured (--cpuprofile)"
	}
	return fmt.Sprintf("host reference %.0f req/s, %.1f of them per job", x.reference, x.reference/x.rate)
}

// referenceSetup is the round's host reference as P3's setup tells it.
func (x p3Round) referenceSetup() string {
	if x.reference == 0 {
		return "the host reference was not measured (a CPU profile was taken: it would have held the reference's garbage collection)"
	}
	return fmt.Sprintf("the host reference, %.0f loopback HTTP POSTs of a 1 KiB JSON body per second "+
		"with %d clients and no vodpipe code, measured right before and after that round, was %.1f times its jobs/s, so on this "+
		"machine P3 reaches %.0f jobs/s when that reference reaches about %.0f req/s",
		x.reference, refClients, x.reference/x.rate, p3Target, p3Target*x.reference/x.rate)
}

// p3Warm is the size of the warm-up round.
func p3Warm(paths []string) int { return max(len(paths)/5, 1) }

// p3Rounds is how many rounds P3 measures: 3 (1 in a quick run); fewer
// than P1 and P2's, as each round is a thousand jobs.
func p3Rounds(sz sizes) int {
	if sz.rounds <= 1 {
		return 1
	}
	return 3
}

// p3Env is what every round of P3 uses.
type p3Env struct {
	c         *client.Client
	delivered *webhooks
	redisPID  int
	nats      *natsserver.Server // messages in and out per job, from its counters
}

// p3Round is one round's figures.
type p3Round struct {
	rate, submitRate, busy         float64
	reference                      float64       // host reference around the round (mean of before and after), req/s
	cpuPerJob, redisPerJob         time.Duration // CPU time per job: this process, redis-server
	slowest                        string        // the last job delivered, with its times
	natsIn, natsOut                float64       // NATS messages per job into and out of the server
	p50, p99, commitP50, commitP99 time.Duration
}

// round submits one job per path (ids prefix-NNNN) and waits for every
// commit and webhook.
func (e *p3Env) round(ctx context.Context, prefix string, paths []string) (p3Round, error) {
	submitted := make(map[string]time.Time, len(paths))
	ids := make([]string, 0, len(paths))
	start, cpu0, rcpu0 := time.Now(), cpuTime(), processCPU(e.redisPID)
	in0, out0 := e.natsMsgs()
	for from := 0; from < len(paths); from += p3Batch {
		batch := make([]*job.Job, 0, p3Batch)
		for i := from; i < min(from+p3Batch, len(paths)); i++ {
			batch = append(batch, fileJob(fmt.Sprintf("%s-%04d", prefix, i), paths[i]))
		}
		at := time.Now()
		resp, err := e.c.SubmitBatch(ctx, batch)
		if err != nil {
			return p3Round{}, fmt.Errorf("submit: %w", err)
		}
		if resp.Queued != len(batch) {
			return p3Round{}, fmt.Errorf("submit: %d of %d queued: %+v", resp.Queued, len(batch), resp.Items)
		}
		for _, j := range batch {
			submitted[j.ID] = at
			ids = append(ids, j.ID)
		}
	}
	submitRate := float64(len(ids)) / time.Since(start).Seconds()
	deliveries, err := e.delivered.wait(ctx, ids)
	if err != nil {
		return p3Round{}, err
	}
	commits := e.delivered.committedAt(ids)
	cpu, rcpu := cpuTime()-cpu0, processCPU(e.redisPID)-rcpu0
	in1, out1 := e.natsMsgs()
	busy := float64(cpu) / float64(time.Since(start))
	toCommit, _ := latencies(submitted, commits)
	toWebhook, last := latencies(submitted, deliveries)
	var slow string // the job delivered last: where a stalled round lost its time
	for id, at := range deliveries {
		if at.Equal(last) {
			slow = fmt.Sprintf("%s committed after %s, delivered after %s", id,
				commits[id].Sub(submitted[id]).Round(time.Millisecond), at.Sub(submitted[id]).Round(time.Millisecond))
		}
	}
	return p3Round{slowest: slow, natsIn: float64(in1-in0) / float64(len(ids)), natsOut: float64(out1-out0) / float64(len(ids)),
		rate: float64(len(ids)) / last.Sub(start).Seconds(), submitRate: submitRate, busy: busy,
		cpuPerJob: cpu / time.Duration(len(ids)), redisPerJob: rcpu / time.Duration(len(ids)),
		p50: percentile(toWebhook, 50), p99: percentile(toWebhook, 99),
		commitP50: percentile(toCommit, 50), commitP99: percentile(toCommit, 99),
	}, nil
}

// natsMsgs is how many messages the NATS server has taken in and sent out.
func (e *p3Env) natsMsgs() (in, out int64) {
	if e.nats == nil {
		return 0, 0
	}
	v, err := e.nats.Varz(nil)
	if err != nil {
		return 0, 0
	}
	return v.InMsgs, v.OutMsgs
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

// us is a duration in microseconds, for CPU time per job.
func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
