// Package chaos is vodpipe's chaos run (`vodpipe chaos`): real processes for
// the three nodes of a NATS cluster, redis-server, vodsim (injecting errors,
// connection resets and lost answers), ingest, notify and the workers, with
// a webhook receiver (the application) in the driving process. While jobs of
// many sizes run, it SIGKILLs workers and restarts them, kills one NATS node
// and restarts it, restarts Redis, and SIGKILLs and restarts notify and
// ingest; the webhook receiver refuses the first delivery of one
// job.completed in ten. Then it checks that every one of those faults
// happened, that every stream and bucket is at 3 replicas, that every job
// committed exactly once, no multipart upload is left open, every
// job.completed webhook (one webhook id through redeliveries) and every
// vod.file_uploaded naming its job arrived once, that killed work was
// re-sent only within the parts in flight, and that the run kept within its
// time.
package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
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
	def(&o.MaxSize, 64<<20)
	if o.Duration == 0 {
		o.Duration = 10 * time.Minute
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
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Report is what a run found.
type Report struct {
	Jobs, Committed, Failed int
	// WorkerKills, NATSRestarts and RedisRestarts count the faults caused;
	// WorkerExits the workers that ended by themselves (and were restarted).
	WorkerKills, NATSRestarts, RedisRestarts, WorkerExits int
	// ServiceCrashes lists the services SIGKILLed and restarted.
	ServiceCrashes []string
	// InjectedFaults counts vodsim's injected faults; FaultKinds by kind
	// (error, reset, lost_answer: carried out, then the answer lost).
	InjectedFaults int
	FaultKinds     map[string]int
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
	// Violations lists every check that failed; empty means the run passed.
	Violations []string
	// Evidence is what the workers logged about the first jobs named in a violation.
	Evidence string

	suspects []string // job ids named in violations
}

// Print writes the report as the run's summary.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "chaos: %d jobs in %s; %d worker kills, %d NATS node restarts, %d Redis restarts, %d injected vodsim faults "+
		"(%d errors, %d resets, %d answers lost after the work was done)\n",
		r.Jobs, r.Elapsed.Round(time.Second), r.WorkerKills, r.NATSRestarts, r.RedisRestarts, r.InjectedFaults,
		r.FaultKinds["error"], r.FaultKinds["reset"], r.FaultKinds["lost_answer"])
	fmt.Fprintf(w, "  crashed:    %s (SIGKILL, restarted at once)\n", strings.Join(r.ServiceCrashes, ", "))
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
		fmt.Fprintln(w, "  OK: every fault injected, every job committed once, one FileId each, no open multipart upload, one job.completed (one webhook id through redeliveries) and one vod.file_uploaded naming its job each, re-sent bytes within bound for every job")
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
	jobs, err := makeJobs(root, rng, o)
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

	rdir := filepath.Join(dir, "redis")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return nil, err
	}
	// Append-only with every write synced, as production runs it, so a restart keeps the resume state.
	rs, err := child.StartRedis(ctx, rdir, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	if err != nil {
		return nil, err
	}
	defer func() { _ = rs.Stop() }()
	logf("redis-server up on %s (append-only)", rs.Addr)

	sys, err := startServices(ctx, exe, dir, natsURL, o)
	if err != nil {
		return nil, err
	}
	defer sys.close()
	logf("vodsim %s, ingest %s, notify %s", sys.simAddr, sys.ingestURL, sys.notifyURL)

	ws := &workerSetup{exe: exe, dir: dir, root: root, natsURL: natsURL, redisAddr: rs.Addr, simAddr: sys.simAddr,
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
	for i := 0; i < len(jobs); i += 50 {
		batch := jobs[i:min(i+50, len(jobs))]
		resp, err := api.SubmitBatch(ctx, batch)
		if err != nil {
			return nil, fmt.Errorf("submit: %w", err)
		}
		if resp.Queued != len(batch) {
			return nil, fmt.Errorf("submit: %d of %d queued: %+v", resp.Queued, len(batch), resp.Items)
		}
	}
	logf("%d jobs submitted", len(jobs))

	rep := &Report{Jobs: len(jobs)}
	cctx, stopChaos := context.WithCancel(ctx)
	var chaosWG sync.WaitGroup
	var chaosErr error
	scheduled, faultsEnded := make(chan struct{}), make(chan struct{})
	chaosWG.Go(func() {
		defer close(faultsEnded)
		chaosErr = runFaults(cctx, rng, o, cl, rs, sys, ws, workers, rep, scheduled, logf)
	})

	states, waitErr := waitTerminal(ctx, api, jobs, logf)
	// Jobs that finished before the NATS node and Redis came back would
	// leave those faults untested: the run goes on until they have.
	select {
	case <-scheduled:
	case <-faultsEnded:
	case <-ctx.Done():
	}
	stopChaos()
	chaosWG.Wait()
	if chaosErr != nil {
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
	check(rep, o, jobs, states, sys)
	rep.Elapsed = time.Since(start)
	if rep.Elapsed > o.Duration {
		rep.Violations = append(rep.Violations, fmt.Sprintf("the run took %s, over its bound of %s", rep.Elapsed.Round(time.Second), o.Duration))
	}
	rep.Evidence = evidence(dir, rep.suspects)
	return rep, nil
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

// services are vodsim, ingest and notify, each a process of its own, and
// the webhook receiver, in the driving process (it is the application).
type services struct {
	simAddr, ingestURL, notifyURL string
	natsURL, apiKey               string
	callbackAttempts              int
	exe, dir                      string
	js                            jetstream.JetStream // the driver's own connection, for its checks
	nc                            *nats.Conn
	mu                            sync.Mutex // procs and vodEventsBefore: the fault loop restarts services
	procs                         []*serviceProcess
	vodEventsBefore               map[string]int // notify's VOD event counts read before its crash
	recv                          *receiver
}

// serviceProcess is one service's process, and how to start it again.
type serviceProcess struct {
	name  string
	env   []string
	ready string // the URL that answers 200 once it serves
	*child.Process
}

// callbackAttempts: vodsim's callbacks get 11 attempts (about 3.5 minutes of
// back-off from 200 ms; waitWebhooks waits for them): a NATS node restart
// can refuse notify's intake for a while, and VOD itself keeps retrying a
// callback far longer than the default 8.
const callbackAttempts = 11

// startServices starts vodsim, ingest and notify as processes of exe (the
// vodpipe binary, re-executed with the role), each on a free loopback port
// with its log in dir, and the webhook receiver subscribed through notify.
func startServices(ctx context.Context, exe, dir, natsURL string, o Options) (_ *services, err error) {
	// s stays set on every return, so a failed start stops what it started
	// (the returns below hand back nil for the caller, not for this defer).
	s := &services{apiKey: "vp_chaos_" + fmt.Sprint(o.Seed), natsURL: natsURL, callbackAttempts: callbackAttempts, exe: exe, dir: dir}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	// The driver's own connection to the cluster, for its checks (it
	// reconnects to another node while one is down).
	if s.nc, err = nats.Connect(natsURL, nats.MaxReconnects(-1)); err != nil {
		return nil, err
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		return nil, err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = child.FreePort(); err != nil {
			return nil, err
		}
	}
	s.simAddr = child.Loopback(ports[0])
	s.ingestURL, s.notifyURL = "http://"+child.Loopback(ports[1]), "http://"+child.Loopback(ports[2])
	secretID, secretKey := "AKIDchaos0123456789", "chaos-secret-key-0123456789"
	callbackToken := "chaos-callback-token-0123456789"
	webhookSecretKey := strings.Repeat("c4", 32) // hex: one key across notify's restarts
	// On top of the errors and resets, a fifth as many requests are carried
	// out with their answer lost: the client tries again what was done.
	faults := vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: "*", ErrorRate: o.FaultRate / 2, ResetRate: o.FaultRate / 2,
		LostAnswerRate: o.FaultRate / 5}}}
	if o.Bandwidth > 0 {
		faults.Bandwidth = o.Bandwidth
	}
	fj, err := json.Marshal(faults)
	if err != nil {
		return nil, err
	}
	// Every stream and bucket at 3 replicas; the jobs' ack wait (and the workers' lease) short, so a killed worker's job comes back in seconds.
	queueEnv := []string{"VODPIPE_NATS_URL=" + natsURL, "VODPIPE_NATS_REPLICAS=3", "VODPIPE_JOBS_ACK_WAIT=" + o.AckWait.String(),
		"VODPIPE_API_KEYS=chaos:" + s.apiKey}
	start := []struct {
		role, ready string
		env         []string
	}{
		{"vodsim", "http://" + s.simAddr + "/healthz", []string{
			"VODPIPE_VODSIM_ADDR=" + s.simAddr, "VODPIPE_VODSIM_APPS=" + secretID + ":" + secretKey, "VODPIPE_VODSIM_DISCARD=true",
			"VODPIPE_VODSIM_CALLBACK_URL=" + s.notifyURL + "/v1/vod/callback?token=" + callbackToken,
			"VODPIPE_VODSIM_CALLBACK_ATTEMPTS=" + strconv.Itoa(callbackAttempts), "VODPIPE_VODSIM_FAULTS=" + string(fj)}},
		{"notify", s.notifyURL + "/readyz", append([]string{"VODPIPE_NOTIFY_HTTP_ADDR=" + child.Loopback(ports[2]),
			"VODPIPE_CALLBACK_TOKEN=" + callbackToken, "VODPIPE_WEBHOOK_SECRET_KEYS=" + webhookSecretKey,
			"VODPIPE_WEBHOOK_ALLOW_PRIVATE=true", "VODPIPE_WEBHOOK_TIMEOUT=5s",
			"VODPIPE_WEBHOOK_RETRY_SCHEDULE=500ms,1s,2s,5s,10s"}, queueEnv...)},
		{"ingest", s.ingestURL + "/readyz", append([]string{"VODPIPE_INGEST_HTTP_ADDR=" + child.Loopback(ports[1]),
			"VODPIPE_SECRET_ID=" + secretID, "VODPIPE_SECRET_KEY=" + secretKey, "VODPIPE_SIGN_MAX_VALIDITY=2h",
			"VODPIPE_BATCH_MAX=1000", "VODPIPE_MAX_BODY=67108864", "VODPIPE_SIGN_RATE=50", "VODPIPE_SIGN_BURST=100",
			"VODPIPE_SIGN_PROCEDURES=*", "VODPIPE_SIGN_STORAGE_REGIONS=*", "VODPIPE_SIGN_CLASS_IDS=*", "VODPIPE_SIGN_SUB_APP_IDS=*"},
			queueEnv...)},
	}
	// All start at once, as pods of a rollout do: notify, launched before
	// ingest, waits for ingest to create the layout it attaches to.
	for _, st := range start {
		sp := &serviceProcess{name: st.role, env: st.env, ready: st.ready}
		if err := s.launch(sp); err != nil {
			return nil, err
		}
		s.procs = append(s.procs, sp)
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}

	if s.recv, err = startReceiver(); err != nil {
		return nil, err
	}
	secret, err := s.subscribe(ctx, s.recv.URL)
	if err != nil {
		return nil, err
	}
	s.recv.setSecret(secret)
	return s, nil
}

// waitReady waits until every service answers ready, or one exits before it
// is: that one's reason ends the wait. A cluster that has just formed may
// still be electing the leaders of the streams a service opens: a minute, as
// a rollout would wait.
func (s *services) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(s.procs))
	for _, sp := range s.procs {
		go func() {
			if err := sp.WaitHTTPReady(ctx, sp.ready, time.Minute); err != nil {
				errs <- fmt.Errorf("%s: %w\n%s", sp.name, err, sp.LogTail(2048))
				return
			}
			errs <- nil
		}()
	}
	for range s.procs {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

// launch starts (or starts again) the process of sp, its output appended to its log.
func (s *services) launch(sp *serviceProcess) error {
	cmd := exec.Command(s.exe, sp.name)
	cmd.Env = append(child.EnvWithout("VODPIPE_"), sp.env...)
	p, err := child.Start(cmd, filepath.Join(s.dir, sp.name+".log"))
	if err != nil {
		return fmt.Errorf("start %s: %w", sp.name, err)
	}
	sp.Process = p
	return nil
}

// crash SIGKILLs the service named role and starts it again at once on the
// same address, as a supervisor would.
func (s *services) crash(role string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range s.procs {
		if sp.name != role {
			continue
		}
		if role == "notify" {
			// Its counters start again at 0: keep what they said.
			if m, err := s.vodEvents(); err == nil {
				s.vodEventsBefore = m
			}
		}
		sp.Kill()
		return s.launch(sp)
	}
	return fmt.Errorf("no service %s", role)
}

// exited names the services whose process ended by itself, with the last
// line of its log.
func (s *services) exited() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range s.procs {
		if p.Exited() {
			out = append(out, fmt.Sprintf("%s (%v: %s)", p.name, p.Cmd.ProcessState, lastLine(p.LogTail(512))))
		}
	}
	return out
}

// simGet reads one of vodsim's admin lists (GET /vodsim/...) into v.
func (s *services) simGet(path string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.simAddr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("vodsim %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("vodsim %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("vodsim %s: %w", path, err)
	}
	return nil
}

// simState is what vodsim holds at the end of a run.
type simState struct {
	files      []vodsim.File
	objects    []vodsim.Object
	uploads    []vodsim.UploadView
	events     []vodsim.EventRecord
	traffic    []vodsim.ObjectTraffic
	received   int64          // object body bytes read, bodies cut short included
	faultKinds map[string]int // injected faults by kind
}

// simState reads vodsim's state through its admin API and metrics.
func (s *services) simState() (*simState, error) {
	var st simState
	for _, g := range []struct {
		path string
		v    any
	}{{"/vodsim/files", &st.files}, {"/vodsim/objects", &st.objects}, {"/vodsim/uploads", &st.uploads},
		{"/vodsim/events", &st.events}, {"/vodsim/traffic", &st.traffic}} {
		if err := s.simGet(g.path, g.v); err != nil {
			return nil, err
		}
	}
	fams, err := metricFamilies("http://" + s.simAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	read, ok := fams["vodsim_body_bytes_read_total"] // always exported: its absence is a renamed metric
	if !ok {
		return nil, errors.New("vodsim exports no vodsim_body_bytes_read_total")
	}
	st.received = int64(sumByLabel(read, "")[""])
	st.faultKinds = sumByLabel(fams["vodsim_injected_faults_total"], "kind")
	return &st, nil
}

// vodEvents is notify's count of VOD events by outcome, from its metrics.
func (s *services) vodEvents() (map[string]int, error) {
	fams, err := metricFamilies(s.notifyURL + "/metrics")
	if err != nil {
		return nil, err
	}
	return sumByLabel(fams["vodpipe_notify_vod_events_total"], "outcome"), nil
}

// simEvents is vodsim's list of events (nil when it cannot be read).
func (s *services) simEvents() []vodsim.EventRecord {
	var ev []vodsim.EventRecord
	if s.simGet("/vodsim/events", &ev) != nil {
		return nil
	}
	return ev
}

// close stops the services (SIGTERM, then SIGKILL after a grace) and the receiver.
func (s *services) close() {
	if s.recv != nil {
		s.recv.close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop(10 * time.Second)
	}
	if s.nc != nil {
		s.nc.Close()
	}
}

// subscribe creates the receiver's subscription (job.completed and
// vod.file_uploaded) through notify's
// API, trying again for up to half a minute while notify answers 503: the
// subscriptions bucket of a cluster that has just formed may still be electing
// its leader, which notify reports as unavailable, as any client would see.
func (s *services) subscribe(ctx context.Context, url string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		secret, retry, err := s.subscribeOnce(ctx, url)
		if err == nil || !retry || time.Now().After(deadline) {
			return secret, err
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// subscribeOnce makes one try; retry says whether the refusal was 503.
func (s *services) subscribeOnce(ctx context.Context, url string) (secret string, retry bool, err error) {
	body, _ := json.Marshal(map[string]any{"url": url, "eventTypes": []string{job.EventCompleted, job.EventVODFileUpload}, "description": "chaos receiver"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.notifyURL+"/v1/subscriptions", bytes.NewReader(body))
	if err != nil {
		return "", false, err
	}
	req.Header.Set("Authorization", "Bearer "+s.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return "", resp.StatusCode == http.StatusServiceUnavailable, fmt.Errorf("create subscription: %s: %s", resp.Status, b)
	}
	var sub notify.Subscription
	if err := json.Unmarshal(b, &sub); err != nil {
		return "", false, err
	}
	if sub.Secret == "" {
		return "", false, errors.New("create subscription: no secret in the answer")
	}
	return sub.Secret, false, nil
}

// waitNotifyIdle waits, within ctx, until every consumer of notify's
// subscriptions has no event left pending or unacknowledged.
func (s *services) waitNotifyIdle(ctx context.Context) error {
	for {
		busy, err := notifyBacklog(ctx, s.js)
		if err == nil && busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("notify still had %d events to deliver when the run's time was up (%v)", busy, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// notifyBacklog is the number of events notify's subscription consumers
// have yet to deliver or to have acknowledged.
func notifyBacklog(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := js.Stream(rctx, queue.EventsStream)
	if err != nil {
		return 0, err
	}
	var busy uint64
	l := st.ListConsumers(rctx)
	for info := range l.Info() {
		if strings.HasPrefix(info.Name, "notify_") {
			busy += info.NumPending + uint64(info.NumAckPending)
		}
	}
	return busy, l.Err()
}

// streamReplicas reads back every stream (key-value buckets included) and
// returns their names by replica count.
func (s *services) streamReplicas(ctx context.Context) (map[int][]string, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	byReplicas := map[int][]string{}
	l := s.js.ListStreams(rctx)
	for info := range l.Info() {
		byReplicas[info.Config.Replicas] = append(byReplicas[info.Config.Replicas], info.Config.Name)
	}
	return byReplicas, l.Err()
}

// inEventsStream reports whether VODPIPE_EVENTS holds a job.completed of
// jobID, to tell a lost event from an undelivered one.
func (s *services) inEventsStream(jobID string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, queue.EventsStream)
	if err != nil {
		return "unknown: " + err.Error()
	}
	m, err := st.GetLastMsgForSubject(ctx, queue.EventFilterSubject(job.EventCompleted, jobID))
	if err != nil {
		return "not in " + queue.EventsStream + " (" + err.Error() + ")"
	}
	return fmt.Sprintf("in %s at seq %d, %s", queue.EventsStream, m.Sequence, m.Time.Format(time.RFC3339Nano))
}

// runFaults kills a random worker every KillEvery and restarts it; with
// the first kill it also SIGKILLs one NATS node and restarts it on its
// store KillEvery later, with the second it restarts Redis, with the next
// ones it SIGKILLs and restarts notify and then ingest (crashedServices),
// and then it closes scheduled. Like a process supervisor it also restarts a worker
// that ended by itself. It runs until ctx ends, and restarts the NATS node
// on its way out if it is still down, so the checks meet a whole cluster.
func runFaults(ctx context.Context, rng *rand.Rand, o Options, cl *cluster, rs *child.Redis, sys *services, ws *workerSetup,
	workers []*child.WorkerProcess, rep *Report, scheduled chan<- struct{}, logf func(string, ...any)) (err error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	nextKill := time.Now().Add(o.KillEvery)
	var natsBack time.Time // when the killed NATS node is restarted
	down := -1             // the killed NATS node
	step := 0
	defer func() {
		if down >= 0 && err == nil {
			if err = cl.start(down); err == nil {
				rep.NATSRestarts++
				logf("NATS node %s restarted on its store", cl.nodes[down].spec.Name)
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for i, w := range workers {
			if !w.Exited() {
				continue
			}
			rep.WorkerExits++
			logf("worker %s ended by itself (%v): %s; restarted", w.ID, w.Cmd.ProcessState, lastLine(w.LogTail(512)))
			nw, err := ws.startWorker(w.ID)
			if err != nil {
				return err
			}
			workers[i] = nw
		}
		if down >= 0 && time.Now().After(natsBack) {
			if err := cl.start(down); err != nil {
				return err
			}
			rep.NATSRestarts++
			logf("NATS node %s restarted on its store", cl.nodes[down].spec.Name)
			down = -1
		}
		if step >= len(crashedServices())+2 && down < 0 && scheduled != nil {
			close(scheduled) // the NATS node, Redis and the services went down and came back
			scheduled = nil
		}
		if time.Now().Before(nextKill) {
			continue
		}
		nextKill = time.Now().Add(o.KillEvery)
		step++
		i := rng.IntN(len(workers))
		workers[i].Kill()
		rep.WorkerKills++
		w, err := ws.startWorker(workers[i].ID)
		if err != nil {
			return err
		}
		workers[i] = w
		logf("SIGKILL worker %s, restarted", w.ID)

		switch step {
		case 1:
			down = rng.IntN(len(cl.nodes))
			cl.kill(down)
			natsBack = time.Now().Add(o.KillEvery)
			logf("SIGKILL NATS node %s", cl.nodes[down].spec.Name)
		case 2:
			if err := rs.Restart(context.WithoutCancel(ctx)); err != nil {
				return err
			}
			rep.RedisRestarts++
			logf("redis-server restarted (append-only file kept)")
		default:
			if crash := crashedServices(); step-3 < len(crash) {
				if err := sys.crash(crash[step-3]); err != nil {
					return err
				}
				rep.ServiceCrashes = append(rep.ServiceCrashes, crash[step-3])
				logf("SIGKILL %s, restarted", crash[step-3])
			}
		}
	}
}

// crashedServices are the services the fault loop SIGKILLs and restarts,
// one at each kill after the NATS node's and Redis's.
func crashedServices() []string { return []string{"notify", "ingest"} }

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// waitTerminal polls ingest until every job is terminal or ctx ends.
func waitTerminal(ctx context.Context, c *client.Client, jobs []*job.Job, logf func(string, ...any)) (map[string]client.JobView, error) {
	states := map[string]client.JobView{}
	last := time.Now()
	for {
		done := 0
		for _, j := range jobs {
			if v, ok := states[j.ID]; ok && v.State.Terminal() {
				done++
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			v, err := c.Get(rctx, j.ID)
			cancel()
			if err == nil {
				states[j.ID] = v
				if v.State.Terminal() {
					done++
				}
			}
		}
		if done == len(jobs) {
			return states, nil
		}
		if time.Since(last) > 10*time.Second {
			logf("%d of %d jobs terminal", done, len(jobs))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return states, fmt.Errorf("%d of %d jobs not terminal when the run's time was up", len(jobs)-done, len(jobs))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitWebhooks waits until the receiver has a job.completed and a
// vod.file_uploaded for every completed job, a redelivery after that is
// still counted by check. It waits at most 60 s, or longer (up to
// callbackWait) while vodsim is still retrying the callback of a missing
// vod.file_uploaded, so check never reports a callback that had attempts
// left.
func waitWebhooks(ctx context.Context, s *services, states map[string]client.JobView) {
	ctx, cancel := context.WithTimeout(ctx, callbackWait)
	defer cancel()
	soft := time.Now().Add(60 * time.Second)
	attempts := s.callbackAttempts
	for {
		missing, retrying := 0, 0
		var events []vodsim.EventRecord // read once per round, when a job lacks its VOD event
		fetched := false
		for id, v := range states {
			if v.State != job.StateCompleted {
				continue
			}
			n, _ := s.recv.completed(id)
			uploaded := s.recv.fileUploaded(id) > 0
			if n > 0 && uploaded {
				continue
			}
			missing++
			if !uploaded {
				if !fetched {
					events, fetched = s.simEvents(), true
				}
				if e := newFileUpload(events, v.FileID); e != nil && !e.Delivered && len(e.Attempts) < attempts {
					retrying++
				}
			}
		}
		if missing == 0 || retrying == 0 && time.Now().After(soft) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// callbackWait bounds waitWebhooks: vodsim's 11 callback attempts from
// 200 ms span about 3.5 minutes, each POST bounded by 10 s.
const callbackWait = 5 * time.Minute

// newFileUpload is vodsim's NewFileUpload event of a FileId, or nil.
func newFileUpload(events []vodsim.EventRecord, fileID string) *vodsim.EventRecord {
	for i := range events {
		if events[i].FileID == fileID && events[i].Event.EventType == vod.EventTypeNewFileUpload {
			return &events[i]
		}
	}
	return nil
}

// callbackState says what vodsim did with the NewFileUpload event of a
// FileId: whether notify accepted its callback, and after how many attempts.
func callbackState(events []vodsim.EventRecord, fileID string, attempts int) string {
	e := newFileUpload(events, fileID)
	switch {
	case e == nil:
		return "does not exist for FileId " + fileID
	case e.Delivered:
		return fmt.Sprintf("was accepted by notify after %d attempts", len(e.Attempts))
	}
	last := ""
	if n := len(e.Attempts); n > 0 {
		a := e.Attempts[n-1]
		last = fmt.Sprintf(", last status %d %s", a.Status, a.Error)
	}
	if len(e.Attempts) < attempts {
		return fmt.Sprintf("is still being retried (%d of %d attempts%s)", len(e.Attempts), attempts, last)
	}
	return fmt.Sprintf("was not accepted in %d attempts%s", len(e.Attempts), last)
}

// check fills the report's figures and violations.
func check(rep *Report, o Options, jobs []*job.Job, states map[string]client.JobView, s *services) {
	viol := func(format string, args ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
	}
	sim, err := s.simState()
	if err != nil {
		viol("read vodsim's state: %v", err)
		return
	}
	simFiles, simObjects, events := sim.files, sim.objects, sim.events
	if m, err := s.vodEvents(); err == nil {
		s.mu.Lock()
		for k, v := range s.vodEventsBefore {
			m[k] += v
		}
		s.mu.Unlock()
		rep.VODEvents = m
	} else {
		viol("read notify's metrics: %v", err)
	}
	files := map[string][]string{} // media name (job id) → FileIds
	for _, f := range simFiles {
		files[f.Name] = append(files[f.Name], f.FileID)
	}
	var notDone []string
	for _, j := range jobs {
		v := states[j.ID]
		switch v.State {
		case job.StateCompleted:
			rep.Committed++
		case job.StateFailed:
			rep.Failed++
			msg := ""
			if v.Error != nil {
				b, _ := json.Marshal(v.Error)
				msg = string(b)
			}
			viol("job %s failed: %s", j.ID, msg)
			rep.suspects = append(rep.suspects, j.ID)
		default:
			notDone = append(notDone, j.ID+"="+string(v.State))
		}
		if ids := files[j.ID]; len(ids) != 1 {
			rep.suspects = append(rep.suspects, j.ID)
			viol("job %s has %d FileIds in vodsim %v, want 1", j.ID, len(ids), ids)
		} else if v.State == job.StateCompleted && v.FileID != ids[0] {
			viol("job %s reports FileId %s, vodsim has %s", j.ID, v.FileID, ids[0])
		}
		if n, d := s.recv.completed(j.ID); n != 1 {
			rep.suspects = append(rep.suspects, j.ID)
			if n == 0 {
				viol("job %s: no job.completed at the receiver; the event is %s", j.ID, s.inEventsStream(j.ID))
			} else {
				viol("job %s: %d job.completed events at the receiver (%d deliveries), want 1: %s", j.ID, n, d, strings.Join(s.recv.events(j.ID), " | "))
			}
		}
		// VOD's event exists only for a committed upload; a failed or
		// unfinished job is a violation of its own above.
		if n := s.recv.fileUploaded(j.ID); v.State == job.StateCompleted && n != 1 {
			rep.suspects = append(rep.suspects, j.ID)
			viol("job %s: %d vod.file_uploaded events naming it at the receiver, want 1 (%d arrived naming no job); vodsim's callback %s",
				j.ID, n, s.recv.orphaned(), callbackState(events, v.FileID, s.callbackAttempts))
		}
	}
	if len(notDone) > 0 {
		sort.Strings(notDone)
		viol("%d jobs not terminal: %s", len(notDone), strings.Join(notDone[:min(len(notDone), 10)], ", "))
	}
	if rep.Committed != rep.Jobs {
		viol("%d of %d jobs committed", rep.Committed, rep.Jobs)
	}
	if ups := sim.uploads; len(ups) > 0 {
		viol("%d multipart uploads left open (first: %s %s)", len(ups), ups[0].Key, ups[0].ID)
	}
	s.recv.mu.Lock()
	if s.recv.bad > 0 {
		viol("%d webhook deliveries failed verification (last: %s)", s.recv.bad, s.recv.lastError)
	}
	s.recv.mu.Unlock()
	refused, notAgain := s.recv.redeliveries()
	rep.Redelivered = refused - len(notAgain)
	switch {
	case refused == 0 && rep.Committed > 0:
		viol("the receiver refused no job.completed delivery: redeliveries went untested")
	case len(notAgain) > 0:
		rep.suspects = append(rep.suspects, notAgain...)
		viol("%d refused job.completed deliveries never came again under the same webhook id (jobs %s)",
			len(notAgain), strings.Join(notAgain[:min(len(notAgain), 10)], ", "))
	}
	rep.FaultKinds = sim.faultKinds
	for _, n := range sim.faultKinds {
		rep.InjectedFaults += n
	}
	checkFaults(rep, o, s, viol)

	for _, ob := range simObjects {
		rep.Bytes += ob.Size
	}
	rep.Received = sim.received
	rep.Resent = rep.Received - rep.Bytes
	perDisruption := int64(o.JobsPerWorker*o.Concurrency) * o.PartSize
	rep.ResentBound = int64(rep.WorkerKills+rep.NATSRestarts+rep.RedisRestarts)*perDisruption + int64(rep.InjectedFaults)*o.PartSize
	if rep.Resent > rep.ResentBound {
		viol("%s re-sent, more than the %s that %d disruptions and %d injected faults may cost", mib(rep.Resent), mib(rep.ResentBound),
			rep.WorkerKills+rep.NATSRestarts+rep.RedisRestarts, rep.InjectedFaults)
	}
	checkResentPerJob(rep, o, jobs, states, sim.traffic, simFiles, simObjects, viol)
}

// checkFaults fails a run whose faults did not all happen (it proved
// nothing about them), in which a worker or a service ended by itself, or whose streams
// and buckets are not all at 3 replicas.
func checkFaults(rep *Report, o Options, s *services, viol func(string, ...any)) {
	if rep.WorkerKills == 0 {
		viol("no worker was killed")
	}
	if rep.NATSRestarts != 1 || rep.RedisRestarts != 1 {
		viol("%d NATS node restarts and %d Redis restarts, want 1 of each", rep.NATSRestarts, rep.RedisRestarts)
	}
	if want := crashedServices(); !slices.Equal(rep.ServiceCrashes, want) {
		viol("services crashed: %v, want %v", rep.ServiceCrashes, want)
	}
	if rep.InjectedFaults == 0 && o.FaultRate > 0 {
		viol("vodsim injected no fault")
	}
	if rep.WorkerExits > 0 {
		viol("%d worker processes ended by themselves (restarted; their logs are in the run's folder)", rep.WorkerExits)
	}
	if gone := s.exited(); len(gone) > 0 {
		viol("services ended by themselves: %s", strings.Join(gone, "; "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	byReplicas, err := s.streamReplicas(ctx)
	if err != nil {
		viol("read the streams back: %v", err)
	}
	for n, names := range byReplicas {
		if n == 3 {
			rep.Replicated = len(names)
			continue
		}
		sort.Strings(names)
		viol("%d streams or buckets at %d replicas, want 3: %s", len(names), n, strings.Join(names, ", "))
	}
	if rep.Replicated == 0 && err == nil {
		viol("no stream at 3 replicas")
	}
}

// checkResentPerJob holds every job to what its own interruptions may cost.
// A kill (or a NATS or Redis failure that ended an attempt) interrupts one
// attempt of each job its worker ran, and the job's next delivery resumes
// from the recorded parts: at most its parts in flight (Concurrency parts)
// are sent again per extra run (status' runs: the workers that started it;
// a delivery that started nothing sent nothing). An injected fault costs
// the one part it hit; vodsim counts both bytes and faults per object key.
func checkResentPerJob(rep *Report, o Options, jobs []*job.Job, states map[string]client.JobView,
	traffic []vodsim.ObjectTraffic, simFiles []vodsim.File, simObjects []vodsim.Object, viol func(string, ...any)) {
	type usage struct {
		received int64
		faults   int
	}
	byJob := map[string]*usage{}
	for _, t := range traffic {
		u := byJob[t.Media]
		if u == nil {
			u = &usage{}
			byJob[t.Media] = u
		}
		u.received += t.Received
		u.faults += t.Faults
	}
	stored := map[string]int64{} // bucket/key → size
	for _, ob := range simObjects {
		stored[ob.Bucket+"/"+ob.Key] = ob.Size
	}
	size := map[string]int64{} // job id → bytes of its committed objects
	for _, f := range simFiles {
		size[f.Name] = stored[f.Bucket+"/"+f.VideoKey]
		if f.CoverKey != "" {
			size[f.Name] += stored[f.Bucket+"/"+f.CoverKey]
		}
	}
	perAttempt := int64(o.Concurrency) * o.PartSize
	for _, j := range jobs {
		u := byJob[j.ID]
		if u == nil {
			continue
		}
		resent := u.received - size[j.ID]
		extra := max(states[j.ID].Runs-1, 0)
		bound := int64(extra)*perAttempt + int64(u.faults)*o.PartSize
		if resent > 0 && extra > 0 {
			rep.Interrupted++
			rep.MaxResentPerInterruption = max(rep.MaxResentPerInterruption, (resent-int64(u.faults)*o.PartSize)/int64(extra))
		}
		if resent > bound {
			rep.suspects = append(rep.suspects, j.ID)
			viol("job %s re-sent %s over %d extra runs and %d injected faults, more than their bound %s",
				j.ID, mib(resent), extra, u.faults, mib(bound))
		}
	}
	rep.PerInterruptionBound = perAttempt
}

// metricFamilies reads a service's Prometheus page (GET url).
func metricFamilies(url string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return fams, nil
}

// sumByLabel sums the values of a family's series by the value of one
// label (every series under "" when the label is ""); a family with no
// series (a labelled counter nothing has counted yet) sums to nothing.
func sumByLabel(f *dto.MetricFamily, label string) map[string]int {
	out := map[string]int{}
	for _, m := range f.GetMetric() {
		key := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				key = l.GetValue()
			}
		}
		out[key] += int(m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue())
	}
	return out
}
