// Package chaos is vodpipe's chaos run (`vodpipe chaos`): real processes for
// the three nodes of a NATS cluster, Redis with Sentinel (a primary, a
// replica, three sentinels), vodsim (injecting errors, connection resets
// and lost answers), ingest, notify and the workers, with a webhook
// receiver (the application) in the driving process. While jobs of many
// sizes run, it SIGKILLs workers and restarts them, kills one NATS node
// and restarts it, SIGKILLs the Redis primary (the sentinels fail over),
// and SIGKILLs and restarts notify and
// ingest; the webhook receiver refuses the first delivery of one
// job.completed in ten. Then it checks that every one of those faults
// happened, that every stream and bucket is at 3 replicas, that every job
// committed exactly once, no multipart upload is left open, every
// job.completed webhook (one webhook id through redeliveries) and every
// vod.file_uploaded naming its job arrived once, that killed work was
// re-sent only within the parts in flight, and that the run kept within its
// time.
//
// The same machinery runs the soak (soak.go: jobs all along, faults
// repeating, the services sampled) and the rolling upgrade (upgrade.go:
// the previous release's processes replaced one at a time and back).
package chaos

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/netfault"
	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/internal/version"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// Options shape a run; zero values give the full run of issue 10.
type Options struct {
	// Jobs is the number of jobs (200).
	Jobs int
	// MinSize and MaxSize bound the job sizes, drawn log-uniformly (1 KiB, 64 MiB).
	MinSize, MaxSize int64
	// Duration bounds the whole run (10 minutes); jobs not terminal by then are violations.
	Duration time.Duration
	// Seed makes sizes, the mix and the victims repeatable (0: from the clock).
	Seed uint64
	// KillEvery is the pause between worker SIGKILLs (3 s).
	KillEvery time.Duration
	// Bandwidth limits the bytes per second vodsim reads, all uploads together,
	// so that the faults land while jobs are in flight (32 MiB/s; negative: none).
	Bandwidth int64
	// FaultRate is the fraction of vodsim requests that fail: half answered
	// with an error, half with the connection reset mid-body (0.05).
	FaultRate float64
	// Workers, JobsPerWorker, PartSize and Concurrency shape the worker processes (3, 2, 1 MiB, 4).
	Workers, JobsPerWorker int
	PartSize               int64
	Concurrency            int
	// AckWait is the job ack wait and lease TTL: how soon a killed worker's job is redelivered (5 s).
	AckWait time.Duration
	// Soak, when set, makes the run a soak of that length: jobs submitted
	// all along (a few in flight), the faults repeating, the services'
	// goroutines, heap, open files, RSS, JetStream's consumers and the
	// jobs' latency sampled; growth or drift fails it (soak.go). ingest,
	// notify and worker w1 are never killed, so their series are whole.
	Soak time.Duration
	// SoakPlot is where the soak's SVG goes ("" none).
	SoakPlot string
	// Redis is "sentinel" (a primary, a replica, three sentinels; the
	// primary is SIGKILLed mid-run) or "cluster" (three primaries; the
	// slots of the jobs move to other nodes mid-run). Default sentinel.
	Redis string
	// Previous, when set, makes the run a rolling upgrade (upgrade.go):
	// ingest, notify and the workers start on this version, are replaced by
	// this build one at a time while jobs flow, then go back to it. The
	// run's own faults are left out but vodsim's.
	Previous *Previous
	// Dir holds the run's files; a temporary folder (removed at the end) when empty.
	Dir string
	// Log receives progress lines; nil: none.
	Log io.Writer
}

func (o *Options) defaults() {
	def := func(p *int64, v int64) {
		if *p == 0 {
			*p = v
		}
	}
	defInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defInt(&o.Jobs, 200)
	def(&o.MinSize, 1<<10)
	if o.Soak > 0 {
		def(&o.MaxSize, 1<<20) // thousands of jobs: small ones
	}
	def(&o.MaxSize, 64<<20)
	if o.Duration == 0 {
		o.Duration = 10*time.Minute + o.Soak
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	if o.KillEvery == 0 {
		o.KillEvery = 3 * time.Second
	}
	def(&o.Bandwidth, 32<<20)
	if o.FaultRate == 0 {
		o.FaultRate = 0.05
	}
	defInt(&o.Workers, 3)
	defInt(&o.JobsPerWorker, 2)
	def(&o.PartSize, 1<<20)
	defInt(&o.Concurrency, 4)
	if o.AckWait == 0 {
		o.AckWait = 5 * time.Second
	}
	if o.Redis == "" {
		o.Redis = RedisSentinel
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Report is what a run found.
type Report struct {
	Jobs, Committed, Failed int
	// WorkerKills, NATSRestarts and RedisFaults (with Sentinel the primary
	// SIGKILLed and a replica promoted; with Cluster the slots of the jobs
	// moved to other nodes) count the faults caused; WorkerExits the
	// workers that ended by themselves (and were restarted).
	WorkerKills, NATSRestarts, RedisFaults, WorkerExits int
	// RedisFault says how the Redis fault went; StorageFull how long
	// vodsim's store was out of space and what it refused.
	RedisFault, StorageFull string
	// StorageRefused counts the bodies vodsim refused while out of space,
	// StorageFulls the times it was.
	StorageRefused, StorageFulls int
	// ServiceCrashes lists the services SIGKILLed and restarted.
	ServiceCrashes []string
	// Upgrade lists an upgrade run's steps; Replacements counts the
	// workers it replaced (each interrupts the parts it had in flight).
	Upgrade      []string
	Replacements int
	// AcrossVersions counts an upgrade run's jobs that workers of both
	// versions started (job.started events against the times each worker
	// id switched version): handed back by one version, resumed by the other.
	AcrossVersions int
	// NetworkFaults lists the network faults held, with the traffic they met.
	NetworkFaults []string
	// InjectedFaults counts vodsim's injected faults; FaultKinds by kind
	// (error, reset, lost_answer: carried out, then the answer lost).
	InjectedFaults int
	FaultKinds     map[string]int
	// Paused counts the running jobs the run paused and resumed while the
	// faults ran; LatePauses the pauses accepted as their job completed.
	Paused, LatePauses int
	// Redelivered counts the job.completed events whose first delivery the
	// receiver refused and that notify delivered again under the same webhook id.
	Redelivered int
	// Replicated counts the streams and key-value buckets read back at 3 replicas.
	Replicated int
	// Bytes is the size of every stored object (media and covers), Received
	// what vodsim read, Resent the difference and ResentBound what the
	// faults may cost: per disruption every part in flight of one worker,
	// per injected fault one part.
	Bytes, Received, Resent, ResentBound int64
	// Interrupted counts the jobs that re-sent bytes after an interruption;
	// MaxResentPerInterruption is the most one such job re-sent per extra
	// delivery (faults' parts taken off), against PerInterruptionBound, its
	// parts in flight (Concurrency × PartSize).
	Interrupted                                    int
	MaxResentPerInterruption, PerInterruptionBound int64
	Elapsed                                        time.Duration
	// VODEvents is notify's count of VOD events by outcome (published,
	// published_by_media_url, duplicate, uncorrelated, ...), read from its
	// metrics at the end and, for the process the run crashed, right before
	// the crash: how often the media-URL fallback named the job. (An event
	// the crashed process published but had not counted comes back from VOD
	// and counts as a duplicate; one counted between that read and the
	// SIGKILL is missing. The checks count events at the receiver.)
	VODEvents map[string]int
	// Latency is, for a plain run, the p50, p90 and longest time from the
	// submission (of all jobs at once) to a job's first job.completed
	// webhook.
	Latency [3]time.Duration
	// Soak is the soak's findings (nil for a plain run).
	Soak *SoakReport
	// Violations lists every check that failed; empty means the run passed.
	Violations []string
	// Evidence is what the workers logged about the first jobs named in a violation.
	Evidence string

	suspects []string       // job ids named in violations
	pauses   map[string]int // the pauses of each job carried out (each interrupts its parts in flight)
	runs     workerRuns     // an upgrade run's: which version each worker ran when
}

// Print writes the report as the run's summary.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "chaos: %d jobs in %s; %d worker kills, %d NATS node restarts, %d Redis faults, %d injected vodsim faults "+
		"(%d errors, %d resets, %d answers lost after the work was done)\n",
		r.Jobs, r.Elapsed.Round(time.Second), r.WorkerKills, r.NATSRestarts, r.RedisFaults, r.InjectedFaults,
		r.FaultKinds["error"], r.FaultKinds["reset"], r.FaultKinds["lost_answer"])
	if len(r.ServiceCrashes) > 0 {
		fmt.Fprintf(w, "  crashed:    %s (SIGKILL, restarted at once)\n", strings.Join(r.ServiceCrashes, ", "))
	}
	for _, u := range r.Upgrade {
		fmt.Fprintf(w, "  upgrade:    %s (SIGTERM, the other version started, ready)\n", u)
	}
	if len(r.Upgrade) > 0 {
		fmt.Fprintf(w, "  versions:   %d jobs started by a worker of one version and run again, from its resume state, by one of the other\n", r.AcrossVersions)
	}
	fmt.Fprintf(w, "  clocks:     vodsim (VOD and COS) %s off ingest's and the workers' all run long\n", TencentClockOffset)
	if r.RedisFault != "" {
		fmt.Fprintf(w, "  redis:      %s\n", r.RedisFault)
	}
	if r.StorageFull != "" {
		fmt.Fprintf(w, "  disk:       %s\n", r.StorageFull)
	}
	for _, f := range r.NetworkFaults {
		fmt.Fprintf(w, "  network:    %s\n", f)
	}
	printSoak(w, r.Soak)
	if r.Latency[2] > 0 {
		how := "all submitted at once"
		if len(r.Upgrade) > 0 {
			how = "submitted all along"
		}
		fmt.Fprintf(w, "  latency:    p50 %s, p90 %s, longest %s (%s → the job's first job.completed webhook)\n",
			r.Latency[0].Round(100*time.Millisecond), r.Latency[1].Round(100*time.Millisecond), r.Latency[2].Round(100*time.Millisecond), how)
	}
	if r.Paused > 0 {
		fmt.Fprintf(w, "  controls:   %d pauses of running jobs carried out and resumed (%d more came as their job completed)\n", r.Paused, r.LatePauses)
	}
	fmt.Fprintf(w, "  committed:  %d of %d (%d failed)\n", r.Committed, r.Jobs, r.Failed)
	fmt.Fprintf(w, "  cluster:    %d streams and key-value buckets at 3 replicas\n", r.Replicated)
	fmt.Fprintf(w, "  webhooks:   %d job.completed deliveries refused once by the receiver, each delivered again under its webhook id\n", r.Redelivered)
	fmt.Fprintf(w, "  bytes:      %s stored, %s received, %s re-sent (bound %s)\n", mib(r.Bytes), mib(r.Received), mib(r.Resent), mib(r.ResentBound))
	fmt.Fprintf(w, "  per job:    %d jobs re-sent after an interruption, at most %s per interruption (bound: parts in flight, %s)\n",
		r.Interrupted, mib(r.MaxResentPerInterruption), mib(r.PerInterruptionBound))
	if r.VODEvents != nil {
		e := r.VODEvents
		fmt.Fprintf(w, "  vod events: %d published naming their job (%d found by FileId, %d by media URL), %d naming none, %d repeats\n",
			e["published"]+e["published_by_media_url"], e["published"], e["published_by_media_url"], e["uncorrelated"], e["duplicate"])
	}
	if len(r.Violations) == 0 {
		fmt.Fprintln(w, "  OK: every fault injected, every pause and resume carried out, every job committed once, one FileId each, no open multipart upload, one job.completed (one webhook id through redeliveries) and one vod.file_uploaded naming its job each, re-sent bytes within bound for every job")
		return
	}
	fmt.Fprintf(w, "  %d VIOLATIONS:\n", len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  - %s\n", v)
	}
	if r.Evidence != "" {
		fmt.Fprintf(w, "  worker log lines of the jobs named above:\n%s", r.Evidence)
	}
}

// evidence is every worker log line that names one of the first three ids.
func evidence(dir string, ids []string) string {
	ids = ids[:min(len(ids), 3)]
	if len(ids) == 0 {
		return ""
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "worker-*.log"))
	var b strings.Builder
	for _, path := range logs {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(data)) {
			for _, id := range ids {
				if strings.Contains(line, `"`+id+`"`) {
					fmt.Fprintf(&b, "    %s: %s", filepath.Base(path), line)
					break
				}
			}
		}
	}
	return b.String()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// Run runs the chaos run and reports what it found; the error is for a run
// that could not be carried out at all (a violation is in the report).
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	start := time.Now()
	// The waits end early enough to leave the checks their time within the bound.
	ctx, cancel := context.WithTimeout(ctx, o.Duration-min(30*time.Second, o.Duration/10))
	defer cancel()
	var logMu sync.Mutex // the driver and the fault loop both log
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(o.Log, "%6.1fs "+format+"\n", append([]any{time.Since(start).Seconds()}, args...)...)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "vodpipe-chaos-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0xc4a05))
	logf("seed %d, folder %s", o.Seed, dir)

	root := filepath.Join(dir, "src")
	var jobs []*job.Job
	var pool []string
	if o.Soak > 0 || o.Previous != nil {
		pool, err = soakSources(root, rng, o)
	} else {
		jobs, err = makeJobs(root, rng, o)
	}
	if err != nil {
		return nil, err
	}

	cl, err := startCluster(exe, dir)
	if err != nil {
		return nil, err
	}
	defer cl.stop()
	natsURL := cl.URL()
	if err := cl.waitJetStream(ctx); err != nil {
		return nil, err
	}
	logf("NATS cluster of 3 up: %s", natsURL)

	netw := &network{}
	defer netw.close()
	rd, err := startRedis(ctx, o.Redis, filepath.Join(dir, "redis"), jobs, netw, logf)
	if err != nil {
		return nil, err
	}
	defer rd.stop()

	sys, err := startServices(ctx, exe, dir, natsURL, cl.ServicesURL(), o)
	if err != nil {
		return nil, err
	}
	defer sys.close()
	logf("vodsim %s, ingest %s, notify %s", sys.simAddr, sys.ingestURL, sys.notifyURL)

	// Every path between the services and what they use goes through a
	// proxy that the network faults act on (the driver's own do not).
	netw.receiver = sys.recvProxy
	if netw.vodsim, err = netfault.Listen("vodsim", sys.simAddr); err != nil {
		return nil, err
	}
	logf("network: services reach NATS at %s, vodsim at %s, the receiver at %s (proxies)",
		cl.ServicesURL(), netw.vodsim.Addr(), netw.receiver.Addr())

	wexe := exe
	if o.Previous != nil {
		wexe = o.Previous.Exe
	}
	ws := &workerSetup{exe: wexe, dir: dir, root: root, natsURL: cl.ServicesURL(), redisAddrs: rd.addrs, redisMaster: rd.master, simAddr: netw.vodsim.Addr(),
		partSize: o.PartSize, concurrency: o.Concurrency, jobs: o.JobsPerWorker, ackWait: o.AckWait}
	workers := make([]*child.WorkerProcess, o.Workers)
	defer func() {
		for _, w := range workers {
			if w != nil {
				w.Kill()
			}
		}
	}()
	for i := range workers {
		if workers[i], err = ws.startWorker(fmt.Sprintf("w%d", i+1)); err != nil {
			return nil, err
		}
	}
	for _, w := range workers {
		if err := w.WaitReady(ctx); err != nil {
			return nil, err
		}
	}
	logf("%d worker processes ready", len(workers))

	api := client.NewClient(sys.ingestURL, sys.apiKey)
	for i := 0; i < len(jobs); i += 50 { // a soak submits as it goes
		batch := jobs[i:min(i+50, len(jobs))]
		resp, err := api.SubmitBatch(ctx, batch)
		if err != nil {
			return nil, fmt.Errorf("submit: %w", err)
		}
		if resp.Queued != len(batch) {
			return nil, fmt.Errorf("submit: %d of %d queued: %+v", resp.Queued, len(batch), resp.Items)
		}
	}
	submittedAt := time.Now()
	logf("%d jobs submitted", len(jobs))

	rep := &Report{Jobs: len(jobs)}
	cctx, stopChaos := context.WithCancel(ctx)
	var chaosWG sync.WaitGroup
	var chaosErr error
	scheduled, faultsEnded := make(chan struct{}), make(chan struct{})
	chaosWG.Go(func() {
		defer close(faultsEnded)
		if o.Previous != nil {
			cur := buildSide{exe: exe, version: version.Release, commit: version.Get().Commit}
			chaosErr = runUpgrade(cctx, o, cur, sys, ws, workers, rep, logf)
			return
		}
		chaosErr = runFaults(cctx, rng, o, cl, rd, sys, ws, workers, rep, scheduled, logf)
	})
	netDone := make(chan struct{})
	// Pauses and resumes while the faults run (a soak has none), three
	// jobs at a time.
	ctl := newControls()
	if o.Soak == 0 {
		more := func() bool { return !closed(faultsEnded) && !(closed(scheduled) && closed(netDone)) }
		for i := range 3 {
			chaosWG.Go(func() { ctl.run(cctx, ctx, rand.New(rand.NewPCG(o.Seed, 0xc0+uint64(i))), api, more, logf) })
		}
	}
	var met *metKinds
	if o.Soak > 0 {
		met = &metKinds{kinds: map[string]bool{}}
	}
	chaosWG.Go(func() {
		defer close(netDone)
		if o.Previous != nil { // an upgrade run's only faults are the steps and vodsim's
			return
		}
		netRng := rand.New(rand.NewPCG(o.Seed, 0x7e7)) // rng is the fault loop's
		for {
			for o.Soak > 0 && cctx.Err() == nil { // a soak's jobs start after the network's loop
				if n, err := activeJobs(cctx, api); err == nil && n > 0 {
					break
				}
				retry.Sleep(cctx, 500*time.Millisecond)
			}
			first, tracks := netSchedule(netRng, o, cl, netw)
			runNetwork(cctx, first, tracks, met, api, rep, logf)
			if o.Soak == 0 || cctx.Err() != nil { // a soak repeats the schedule all along
				return
			}
		}
	})

	var samples []soakSample
	var soakSubmitted map[string]time.Time
	var soakStart time.Time
	var feedErr error
	inFlight := o.Workers * o.JobsPerWorker * 4
	var fed *feeder // an upgrade run's
	switch {
	case o.Soak > 0:
		f := newFeeder(api, sys.recv, root, pool, rand.New(rand.NewPCG(o.Seed, 0x50a4)), fmt.Sprintf("soak-%x-", o.Seed&0xffffff), inFlight)
		soakStart = time.Now()
		jobs, soakSubmitted, samples, feedErr = runSoak(ctx, o, f, sys, workers[0].Addr, logf)
		logf("soak over: %d jobs submitted; faults stop, the last jobs finish", len(jobs))
		stopChaos()
	case o.Previous != nil:
		fed = newFeeder(api, sys.recv, root, pool, rand.New(rand.NewPCG(o.Seed, 0x50a4)), fmt.Sprintf("upgrade-%x-", o.Seed&0xffffff), inFlight)
		feedErr = fed.feed(ctx, func() bool { return closed(faultsEnded) })
		jobs = fed.jobs
		select {
		case <-faultsEnded: // chaosErr is written
			if chaosErr != nil { // a step failed: waiting for the jobs would wait out the bound
				logf("upgrade failed: %v", chaosErr)
				cancel()
			}
		default:
		}
		logf("upgrade over: %d jobs submitted; the last jobs finish", len(jobs))
	}
	states, waitErr := waitTerminal(ctx, api, jobs, logf)
	// Jobs that finished before the NATS node and Redis came back would
	// leave those faults untested: the run goes on until they have.
	select {
	case <-scheduled:
	case <-faultsEnded:
	case <-ctx.Done():
	}
	select { // and the network's schedule
	case <-netDone:
	case <-ctx.Done():
	}
	stopChaos()
	chaosWG.Wait()
	if o.Soak == 0 {
		rep.Paused, rep.LatePauses, rep.pauses = ctl.total(), ctl.Late, ctl.Paused
		for _, l := range ctl.Lost {
			rep.Violations = append(rep.Violations, "controls: "+l)
		}
		if rep.Paused == 0 && len(ctl.Lost) == 0 {
			rep.Violations = append(rep.Violations, "controls: no running job was paused and resumed: controls went untested")
		}
	}
	if o.Previous != nil {
		rep.Jobs = len(jobs)
		if feedErr != nil {
			rep.Violations = append(rep.Violations, "upgrade: submitting jobs: "+feedErr.Error())
		}
	}
	if o.Soak > 0 {
		rep.Jobs = len(jobs)
		if feedErr != nil {
			rep.Violations = append(rep.Violations, "soak: "+feedErr.Error())
		}
		first, tracks := netSchedule(rand.New(rand.NewPCG(1, 1)), o, cl, netw)
		for _, k := range met.missing(first, tracks) {
			rep.Violations = append(rep.Violations, fmt.Sprintf("soak: network fault %q never met traffic with jobs running", k))
		}
	}
	if chaosErr != nil && o.Previous != nil {
		rep.Violations = append(rep.Violations, chaosErr.Error()) // it names the step
	} else if chaosErr != nil {
		rep.Violations = append(rep.Violations, "fault injection: "+chaosErr.Error())
	}
	if waitErr != nil {
		rep.Violations = append(rep.Violations, waitErr.Error())
	}
	logf("jobs terminal; waiting for webhooks")
	waitWebhooks(ctx, sys, states)
	// A second job.completed of a job (a duplicate the checks must catch)
	// may still be on its way: the checks wait until notify has nothing
	// left to deliver.
	if err := sys.waitNotifyIdle(ctx); err != nil {
		rep.Violations = append(rep.Violations, err.Error())
	}
	if o.Previous != nil {
		rep.Latency = latencyOf(fed.submitted, sys.recv)
	} else if o.Soak == 0 {
		at := make(map[string]time.Time, len(jobs))
		for _, j := range jobs {
			at[j.ID] = submittedAt
		}
		rep.Latency = latencyOf(at, sys.recv)
	} else {
		// Judged once every job is in: each sample's latency is that of
		// the jobs submitted in the window before it.
		rep.Soak = analyseSoak(withLatency(samples, sys.recv, soakSubmitted), latencies(sys.recv, soakSubmitted, soakStart), len(jobs), o, rep)
	}
	check(rep, o, jobs, states, sys)
	rep.Elapsed = time.Since(start)
	if rep.Elapsed > o.Duration {
		rep.Violations = append(rep.Violations, fmt.Sprintf("the run took %s, over its bound of %s", rep.Elapsed.Round(time.Second), o.Duration))
	}
	rep.Evidence = evidence(dir, rep.suspects)
	return rep, nil
}

// closed tells whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// latencyOf is the p50, p90 and longest time from each job's submission
// (submitted: by job id) to its first job.completed webhook (jobs without
// one left out).
func latencyOf(submitted map[string]time.Time, recv *receiver) [3]time.Duration {
	ids := make([]string, 0, len(submitted))
	for id := range submitted {
		ids = append(ids, id)
	}
	var ds []time.Duration
	for id, t := range recv.doneAt(ids) {
		ds = append(ds, t.Sub(submitted[id]))
	}
	if len(ds) == 0 {
		return [3]time.Duration{}
	}
	slices.Sort(ds)
	return [3]time.Duration{ds[len(ds)/2], ds[len(ds)*9/10], ds[len(ds)-1]}
}

// makeJobs writes the sources and describes the jobs: sizes log-uniform
// between MinSize and MaxSize, every 4th with a cover, every 3rd with a task
// flow, every 5th with one-time signatures. The media name is the job id,
// so vodsim's files can be matched to jobs.
func makeJobs(root string, rng *rand.Rand, o Options) ([]*job.Job, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	cover := filepath.Join(root, "cover.jpg")
	if err := writeRandom(cover, 16<<10, rng); err != nil {
		return nil, err
	}
	lo, hi := math.Log(float64(o.MinSize)), math.Log(float64(o.MaxSize))
	prefix := fmt.Sprintf("chaos-%x-", o.Seed&0xffffff)
	jobs := make([]*job.Job, o.Jobs)
	for i := range jobs {
		size := int64(math.Exp(lo + rng.Float64()*(hi-lo)))
		if i == 0 {
			size = o.MaxSize // the largest always runs
		}
		id := fmt.Sprintf("%s%03d", prefix, i)
		path := filepath.Join(root, id+".mp4")
		if err := writeRandom(path, size, rng); err != nil {
			return nil, err
		}
		j := &job.Job{V: 1, ID: id, Source: "file://" + path, MediaName: id}
		if i%4 == 1 {
			j.Cover = "file://" + cover
		}
		if i%3 == 2 {
			j.Procedure = "LongVideoPreset"
		}
		if i%5 == 3 {
			j.OneTimeSignature = true
		}
		jobs[i] = j
	}
	return jobs, nil
}

func writeRandom(path string, size int64, rng *rand.Rand) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	seed := rng.Uint64()
	src := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), byte(seed >> 32), byte(seed >> 40), byte(seed >> 48), byte(seed >> 56)})
	if _, err := io.CopyN(f, src, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
