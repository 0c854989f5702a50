package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	cos "github.com/tencentyun/cos-go-sdk-v5"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/natsembed"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// lab is the system one measurement runs against, its own in every way: an
// embedded NATS server with JetStream, vodsim in discard mode, the signature
// service ingest would run, the job queue, and the worker processes started
// on it. Resume state lives in JetStream's key-value store, as in the
// single-process mode (no Redis to install).
type lab struct {
	dir     string
	root    string // the workers' source root
	worker  []string
	qcfg    queue.Config
	ns      *natsserver.Server
	nc      *nats.Conn
	q       *queue.Queue
	sim     *vodsim.Server
	simAddr string
	srv     *http.Server
	signer  *signer.Signer
	svc     micro.Service

	mu    sync.Mutex
	procs []*child.WorkerProcess
}

// labConfig shapes a lab.
type labConfig struct {
	// requestBandwidth limits every request body to this many bytes per second, each on its own; 0: none.
	requestBandwidth int64
	// queue is the JetStream layout; its ack wait also bounds a killed worker's redelivery.
	queue queue.Config
}

// newLab starts a lab in a fresh folder under the run's; Close stops it.
func (r *runner) newLab(ctx context.Context, name string, c labConfig) (l *lab, err error) {
	dir, err := os.MkdirTemp(r.dir, name+"-")
	if err != nil {
		return nil, err
	}
	l = &lab{dir: dir, root: r.src.root, worker: r.o.Worker, qcfg: c.queue}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if l.ns, err = natsembed.Start(filepath.Join(dir, "nats"), "127.0.0.1", natsserver.RANDOM_PORT); err != nil {
		return nil, err
	}
	if l.nc, err = nats.Connect(l.ns.ClientURL(), nats.Name("vodpipe-bench")); err != nil {
		return nil, err
	}
	js, err := jetstream.New(l.nc)
	if err != nil {
		return nil, err
	}
	if l.q, err = queue.Open(ctx, js, c.queue); err != nil {
		return nil, err
	}

	secretID, secretKey := "AKIDbench"+randomHex(12), randomHex(24)
	if l.signer, err = signer.New(secretID, secretKey, signer.Policy{MaxValidity: 2 * time.Hour, Procedures: signer.Allow{signer.Any}, StorageRegions: signer.Allow{signer.Any}}); err != nil {
		return nil, err
	}
	if l.svc, err = l.signer.Serve(l.nc, l.q.Statuses, nil); err != nil {
		return nil, err
	}
	if l.sim, err = vodsim.New(vodsim.Config{Apps: vodsim.Apps{secretID: secretKey}, Discard: true}, slog.New(slog.DiscardHandler)); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l.simAddr = ln.Addr().String()
	h := l.sim.Handler()
	if c.requestBandwidth > 0 {
		h = limitEachRequest(h, c.requestBandwidth)
	}
	l.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = l.srv.Serve(ln) }()
	return l, nil
}

// fileLab starts a lab for one upload of a random file of size bytes.
func (r *runner) fileLab(ctx context.Context, name string, size int64) (*lab, string, error) {
	path, err := r.src.file(size, 0)
	if err != nil {
		return nil, "", err
	}
	l, err := r.newLab(ctx, name, labConfig{queue: labQueue})
	return l, path, err
}

// Close kills the lab's worker processes and stops everything it started.
func (l *lab) Close() {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	for _, p := range procs {
		p.Kill()
	}
	if l.svc != nil {
		_ = l.svc.Stop()
	}
	if l.nc != nil {
		l.nc.Close()
	}
	if l.srv != nil {
		_ = l.srv.Close()
	}
	if l.sim != nil {
		_ = l.sim.Close()
	}
	if l.ns != nil {
		l.ns.Shutdown()
		l.ns.WaitForShutdown()
	}
	_ = os.RemoveAll(l.dir)
}

// submit does what ingest does for each job: status first, then the message.
func (l *lab) submit(ctx context.Context, jobs ...*job.Job) error {
	for _, j := range jobs {
		j.V = 1
		j.Normalize()
		if _, _, err := l.q.Statuses.Create(ctx, j); err != nil {
			return err
		}
		if _, err := l.q.Jobs.Publish(ctx, j); err != nil {
			return err
		}
	}
	return nil
}

// fileJob is a job uploading the file at path (under the source root).
func fileJob(id, path string) *job.Job {
	return &job.Job{ID: id, Source: "file://" + path}
}

// apply calls ApplyUploadUGC the way an uploader with its own signature would.
func (l *lab) apply(ctx context.Context, size int64) (*vod.ApplyResponse, error) {
	c := vod.NewClient(vod.WithEndpoint("http://"+l.simAddr), vod.WithHTTPClient(&http.Client{Transport: vod.DialOverride(l.simAddr)}))
	sign := func(context.Context) (string, error) {
		resp, err := l.signer.Sign(signer.Request{})
		return resp.Signature, err
	}
	return c.Apply(ctx, sign, vod.ApplyRequest{VideoName: "bench", VideoType: "mp4", VideoSize: &size})
}

// cosClient is an unmodified cos-go-sdk-v5 client for an apply answer's
// bucket, with its temporary credentials, dialing vodsim.
func (l *lab) cosClient(a *vod.ApplyResponse) (*cos.Client, error) {
	u, err := cos.NewBucketURL(a.Bucket(), a.StorageRegionV5, false)
	if err != nil {
		return nil, err
	}
	return cos.NewClient(&cos.BaseURL{BucketURL: u}, &http.Client{Transport: &cos.AuthorizationTransport{
		SecretID: a.TempCertificate.SecretID, SecretKey: a.TempCertificate.SecretKey,
		SessionToken: a.TempCertificate.Token, Transport: vod.DialOverride(l.simAddr),
	}}), nil
}

// tracker records job outcomes as their events are published (job.completed,
// job.failed), so a measurement learns of an end the moment it happens.
type tracker struct {
	*arrivalLog
	subs []*nats.Subscription
}

// track subscribes before anything is submitted; stop it when done.
func track(nc *nats.Conn) (*tracker, error) {
	t := &tracker{arrivalLog: newArrivalLog()}
	for _, typ := range []string{job.EventCompleted, job.EventFailed} {
		sub, err := nc.Subscribe(queue.EventFilterSubject(typ, ""), t.onEvent)
		if err != nil {
			t.stop()
			return nil, err
		}
		_ = sub.SetPendingLimits(-1, -1)
		t.subs = append(t.subs, sub)
	}
	return t, nc.Flush()
}

func (t *tracker) onEvent(m *nats.Msg) {
	at := time.Now()
	e, err := job.DecodeEvent(m.Data)
	if err != nil {
		return
	}
	switch e.Type {
	case job.EventCompleted:
		t.arrived(e.JobID, at)
	case job.EventFailed:
		t.failed(e.JobID, string(e.Data))
	}
}

func (t *tracker) stop() {
	for _, s := range t.subs {
		_ = s.Unsubscribe()
	}
}

// arrivalLog keeps, per job id, when the job reached some end, and lets a
// measurement wait for a set of jobs.
type arrivalLog struct {
	mu      sync.Mutex
	at      map[string]time.Time
	why     map[string]string // job id → why it failed
	changed chan struct{}
}

func newArrivalLog() *arrivalLog {
	return &arrivalLog{at: map[string]time.Time{}, why: map[string]string{}, changed: make(chan struct{}, 1)}
}

// arrived records the first arrival of id (a redelivery may repeat it).
func (a *arrivalLog) arrived(id string, at time.Time) {
	a.mu.Lock()
	if _, seen := a.at[id]; !seen {
		a.at[id] = at
	}
	a.mu.Unlock()
	a.signal()
}

func (a *arrivalLog) failed(id, why string) {
	a.mu.Lock()
	a.why[id] = why
	a.mu.Unlock()
	a.signal()
}

func (a *arrivalLog) signal() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// times is the first arrival of each of ids (zero for one not arrived).
func (a *arrivalLog) times(ids []string) map[string]time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.timesLocked(ids)
}

func (a *arrivalLog) timesLocked(ids []string) map[string]time.Time {
	out := make(map[string]time.Time, len(ids))
	for _, id := range ids {
		out[id] = a.at[id]
	}
	return out
}

// wait returns when every job of ids arrived, with the time each did; a
// failed job or the end of ctx ends it with an error.
func (a *arrivalLog) wait(ctx context.Context, ids []string) (map[string]time.Time, error) {
	// Each wake-up looks only at the jobs still missing: a measurement's own
	// bookkeeping stays small beside what it measures.
	missing := slices.Clone(ids)
	for {
		a.mu.Lock()
		still := missing[:0]
		for _, id := range missing {
			if why, bad := a.why[id]; bad {
				a.mu.Unlock()
				return nil, fmt.Errorf("job %s failed: %s", id, why)
			}
			if _, ok := a.at[id]; !ok {
				still = append(still, id)
			}
		}
		missing = still
		if len(missing) == 0 {
			out := a.timesLocked(ids)
			a.mu.Unlock()
			return out, nil
		}
		a.mu.Unlock()
		select {
		case <-a.changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of %d jobs did not arrive: %w (first: %s)", len(missing), len(ids), ctx.Err(), missing[0])
		}
	}
}

// runJobs submits jobs and waits until all completed, returning the time from
// the first submit to the last completion.
func (l *lab) runJobs(ctx context.Context, jobs ...*job.Job) (time.Duration, error) {
	t, err := track(l.nc)
	if err != nil {
		return 0, err
	}
	defer t.stop()
	start := time.Now()
	if err := l.submit(ctx, jobs...); err != nil {
		return 0, err
	}
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	done, err := t.wait(ctx, ids)
	if err != nil {
		return 0, l.withLogs(err)
	}
	var last time.Time
	for _, at := range done {
		if at.After(last) {
			last = at
		}
	}
	return last.Sub(start), nil
}

// withLogs adds the tail of every worker process's log to err.
func (l *lab) withLogs(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, p := range l.procs {
		fmt.Fprintf(&b, "\n--- worker %s log (tail) ---\n%s", p.ID, p.LogTail(2048))
	}
	if b.Len() == 0 {
		return err
	}
	return errors.Join(err, errors.New(b.String()))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
