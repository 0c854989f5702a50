// Package worker runs vodpipe's upload workers: it pulls jobs from the shared
// JetStream consumer, holds a Redis lease per job, runs internal/upload, records
// status and events, and acks only after the outcome is durable.
package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/defaults"
	"github.com/vodpipe/vodpipe/internal/httpserve"
	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/natsperm"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/resume"
	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/internal/tracing"
	"github.com/vodpipe/vodpipe/internal/upload"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// Config is the worker's whole configuration (prefix VODPIPE_). It has no
// Tencent SecretId/SecretKey: workers get signatures from the signature service.
type Config struct {
	natsconf.NATS
	config.Redis
	QueueConfig
	UploadConfig
	upload.SourcesConfig
	httpserve.Config

	// VODEndpoint is VOD's client-upload endpoint.
	VODEndpoint string `envconfig:"VOD_ENDPOINT" default:"https://vod2.qcloud.com" desc:"VOD client-upload endpoint"`
	// COSDialAddr, when set, sends every VOD and COS connection to this address
	// (vodsim), keeping production URLs and Host headers.
	COSDialAddr string `envconfig:"COS_DIAL_ADDR" desc:"host:port every VOD/COS connection dials (vodsim); empty: real DNS"`
	// HTTPAddr serves /healthz, /readyz and /metrics.
	HTTPAddr string `envconfig:"WORKER_HTTP_ADDR" default:":8082" desc:"listen address of the worker's health and metrics endpoints"`
	// Jobs is how many jobs one worker process runs at once.
	Jobs int `envconfig:"WORKER_JOBS" default:"2" desc:"jobs one worker process runs at once"`
	// LeaseTTL is the lifetime of a job lease, renewed while the job runs.
	LeaseTTL time.Duration `envconfig:"LEASE_TTL" default:"30s" desc:"job lease lifetime (renewed while working)"`
	// ShutdownGrace is how long parts in flight may finish after SIGTERM.
	ShutdownGrace time.Duration `envconfig:"SHUTDOWN_GRACE" default:"25s" desc:"time parts in flight get to finish after SIGTERM"`
	// StorageFullWait is how long a job waits when the storage answered it
	// is full (or Redis had no replica for its commit), before it tries
	// again (± half); waits use up no run.
	StorageFullWait time.Duration `envconfig:"STORAGE_FULL_WAIT" default:"30s" desc:"wait before a job the storage refused for want of space (or Redis without a replica held back) tries again (± half; uses up no run)"`
	// SignTimeout bounds one request to the signature service.
	SignTimeout time.Duration `envconfig:"SIGN_TIMEOUT" default:"5s" desc:"timeout of one signature request"`
	// ID names this worker in leases and status; default hostname-pid.
	ID string `envconfig:"WORKER_ID" desc:"worker name in leases and status (default hostname-pid)"`
	// TracerProvider takes the spans (tests, the stack); nil: the one the
	// OTEL_* environment asks for (off by default; see internal/tracing).
	TracerProvider trace.TracerProvider `ignored:"true"`
}

// QueueConfig and UploadConfig are aliases so both embed (flat variable names) without a name clash.
type (
	QueueConfig  = queue.Config
	UploadConfig = upload.Config
)

// Worker is one worker process.
type Worker struct {
	cfg      Config
	log      *slog.Logger
	tracer   trace.Tracer
	q        *queue.Queue
	leaser   upload.Leaser
	uploader *upload.Uploader
	metrics  *metrics
	checks   []func(context.Context) error
	closers  []func()

	controlMu sync.Mutex
	controls  map[string]job.Control

	drainMu sync.Mutex
	drain   bool

	runningMu sync.Mutex
	running   map[string]bool
	crashed   atomic.Bool
	crashStop context.CancelFunc
}

// Store is where a worker keeps leases and resume state: resume.Redis,
// resume.KV or resume.Memory.
type Store interface {
	upload.Leaser
	upload.ResumeStore
}

// Deps are what a worker works with. New builds them from the
// environment's Config; Compose takes them as given (tests, one process).
type Deps struct {
	Queue   *queue.Queue
	Store   Store
	Signer  upload.Signer
	VOD     *vod.Client
	Sources upload.SourceOpener
	// COSTransport carries COS requests; default http.DefaultTransport.
	COSTransport http.RoundTripper
	// Checks are what /readyz asks besides the queue (the NATS connection, Redis).
	Checks []func(context.Context) error
	// Closers are run by Close, in order (connections New opened).
	Closers []func()
	// Collectors are metrics of the parts that the worker's /metrics exports too.
	Collectors []prometheus.Collector
}

// New connects to NATS (and Redis when configured), builds the worker's
// Deps from cfg and composes it.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Worker, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The worker writes finished statuses with this retention's TTL.
	if err := cfg.QueueConfig.CheckStatusRetention(); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	opts, err := cfg.NATS.Options("vodpipe-worker "+cfg.ID, nats.CustomInboxPrefix(natsperm.Worker.Inbox()))
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	nc, err := nats.Connect(cfg.NATS.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("worker: connect NATS: %w", err)
	}
	d := Deps{Checks: []func(context.Context) error{func(context.Context) error {
		if !nc.IsConnected() {
			return errors.New("NATS not connected")
		}
		return nil
	}}}
	fail := func(err error) (*Worker, error) {
		for _, c := range d.Closers {
			c()
		}
		nc.Close()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	// A NATS cluster that is forming or electing leaders (a node just
	// restarted) answers with timeouts for a while, and a worker started
	// before ingest finds no layout yet: both are waited for. Without Redis
	// the resume state is in the layout's resume bucket.
	if err := queue.WhenReady(ctx, queue.ReadyPolicy{}, log.With("worker", cfg.ID), func(ctx context.Context) (err error) {
		d.Queue, err = queue.Attach(ctx, js, cfg.QueueConfig)
		return err
	}); err != nil {
		return fail(err)
	}
	if !cfg.Redis.Enabled() {
		d.Store = resume.WrapKV(d.Queue.Resume)
	}
	if cfg.Redis.Enabled() {
		// go-redis logs what it does on its own (a Sentinel failover
		// followed, a pool's dial failing) through a process-wide logger:
		// into the worker's JSON log, not plain lines on stderr.
		redis.SetLogger(redisLogger{log})
		rdb, err := redisClient(cfg.Redis)
		if err != nil {
			return fail(err)
		}
		replicas, err := cfg.Redis.Replicas()
		if err != nil {
			_ = rdb.Close()
			return fail(err)
		}
		d.Closers = append(d.Closers, func() { _ = rdb.Close() })
		d.Checks = append(d.Checks, func(ctx context.Context) error {
			if err := rdb.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			return nil
		})
		d.Store = resume.NewRedis(rdb, resume.WithReplicas(replicas, 0))
	}
	sources, err := upload.NewSources(cfg.SourcesConfig)
	if err != nil {
		return fail(err)
	}
	d.Sources = sources
	d.Closers = append(d.Closers, func() { _ = sources.Close() })
	// Every part in flight may hold a connection to the bucket, every job one to VOD.
	perHost := cfg.Jobs * max(cfg.Concurrency, 4)
	t := vod.NewTransport(perHost)
	if cfg.COSDialAddr != "" {
		t = vod.DialOverride(cfg.COSDialAddr, perHost)
	}
	// Both timed by VOD action and COS operation (requests.go).
	timed := newRequestMetrics()
	d.Collectors = append(d.Collectors, timed)
	d.COSTransport = timed.wrap(t)
	d.VOD = vod.NewClient(vod.WithEndpoint(cfg.VODEndpoint), vod.WithHTTPClient(&http.Client{Transport: d.COSTransport}), vod.WithBackoff(retry.VOD.Delay))
	d.Signer = signer.NewClient(nc, cfg.SignTimeout)
	d.Closers = append(d.Closers, nc.Close)
	if cfg.TracerProvider == nil {
		tp, stop, err := tracing.Setup(ctx, "worker")
		if err != nil {
			return fail(err)
		}
		cfg.TracerProvider = tp
		d.Closers = append(d.Closers, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = stop(ctx) // flushes the spans still buffered
			cancel()
		})
	}
	return Compose(cfg, log, d), nil
}

// Compose makes a worker of cfg (its defaults applied) and the Deps given.
// Close runs d.Closers.
func Compose(cfg Config, log *slog.Logger, d Deps) *Worker {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("worker", cfg.ID)
	w := &Worker{cfg: cfg, log: log, q: d.Queue, leaser: d.Store, checks: d.Checks, closers: d.Closers,
		controls: map[string]job.Control{}, metrics: newMetrics(), running: map[string]bool{}}
	w.metrics.reg.MustRegister(d.Collectors...)
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	w.tracer = tp.Tracer(tracing.Name)
	w.uploader = upload.New(cfg.UploadConfig, upload.Deps{
		VOD: d.VOD, Signer: d.Signer, Sources: d.Sources, Store: d.Store,
		COSTransport: d.COSTransport, Observer: w.metrics, Commits: uploadRecorder{d.Queue.Files}, Log: log,
	})
	return w
}

// withDefaults fills cfg's zero fields.
func (cfg Config) withDefaults() Config {
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	defaults.Fill(&cfg)
	return cfg
}

func redisClient(c config.Redis) (redis.UniversalClient, error) {
	if c.URL != "" {
		o, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, fmt.Errorf("worker: REDIS_URL: %w", err)
		}
		return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{o.Addr}, DB: o.DB,
			Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig}), nil
	}
	o := &redis.UniversalOptions{Addrs: c.Addrs, MasterName: c.MasterName, Password: c.Password}
	if c.TLS {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return redis.NewUniversalClient(o), nil
}

// redisLogger writes go-redis's own log lines as warnings of log.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "msg_redis", fmt.Sprintf(format, v...))
}

// Close releases what New opened (Deps.Closers).
func (w *Worker) Close() {
	for _, c := range w.closers {
		c()
	}
}

// Queue exposes the opened queue (for tests and the all-in-one binary).
func (w *Worker) Queue() *queue.Queue { return w.q }

// Handler serves /healthz, /readyz and /metrics.
func (w *Worker) Handler() http.Handler {
	mux := http.NewServeMux()
	httpserve.Probes(mux, w.log, w.ready, w.metrics.reg)
	return mux
}

func (w *Worker) ready(ctx context.Context) error {
	for _, check := range w.checks {
		if err := check(ctx); err != nil {
			return err
		}
	}
	if err := w.q.Ready(ctx); err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	return nil
}

// Registry exposes the worker's Prometheus registry.
func (w *Worker) Registry() *prometheus.Registry { return w.metrics.reg }

// Run pulls and runs jobs until ctx ends, then drains: no new jobs, parts in
// flight get ShutdownGrace to finish, unfinished jobs go back to the queue at once.
func (w *Worker) Run(ctx context.Context) error {
	// The consumer's lookup waits out a cluster electing leaders, as New's
	// setup does: a worker started while a NATS node is down is not lost.
	var cons jetstream.Consumer
	if err := queue.WhenReady(ctx, queue.ReadyPolicy{}, w.log, func(ctx context.Context) (err error) {
		cons, err = w.q.Jobs.Consumer(ctx)
		return err
	}); err != nil {
		return err
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	if err := w.watchControl(ctx, bg); err != nil || ctx.Err() != nil {
		return err
	}
	go w.flushProgress(bg)

	// Jobs keep running past ctx's end, until drained or the grace period ends.
	jobCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	ctx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	w.runningMu.Lock()
	w.crashStop = func() { stopFetch(); hardStop() }
	w.runningMu.Unlock()
	// One fetcher pulls as many jobs as there are free slots, in one pull
	// request, and hands each to a slot: with many small jobs a pull serves
	// several, and an idle worker keeps one pull open rather than one per slot.
	free := make(chan struct{}, w.cfg.Jobs)
	for range w.cfg.Jobs {
		free <- struct{}{}
	}
	jobs := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for range w.cfg.Jobs {
		wg.Go(func() {
			for msg := range jobs {
				w.handle(jobCtx, msg)
				free <- struct{}{}
			}
		})
	}
	wg.Go(func() {
		defer close(jobs)
		for {
			select {
			case <-free:
			case <-ctx.Done():
				return
			}
			n := 1
			for more := true; more; {
				select {
				case <-free:
					n++
				default:
					more = false
				}
			}
			got := 0
			batch, err := cons.Fetch(n, jetstream.FetchMaxWait(time.Second))
			if err == nil {
				for msg := range batch.Messages() {
					jobs <- msg // a slot is free for each: n were taken
					got++
				}
			}
			for range n - got {
				free <- struct{}{}
			}
			if err != nil && ctx.Err() == nil {
				w.log.Warn("fetch failed", "err", err)
				retry.Sleep(ctx, retry.Restart.Delay(1))
			}
		}
	})
	<-ctx.Done()
	w.setDrain()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(w.cfg.ShutdownGrace):
		w.log.Warn("shutdown grace over: stopping parts in flight")
		hardStop()
		<-done
	}
	w.log.Info("worker stopped")
	return nil
}

// Crash stops the worker the way a crash would, for demos and tests: uploads
// in flight are cut, and nothing is acked, handed back or released; JetStream
// redelivers the jobs after their ack wait and the leases expire.
func (w *Worker) Crash() {
	w.crashed.Store(true)
	w.runningMu.Lock()
	stop := w.crashStop
	w.runningMu.Unlock()
	if stop != nil {
		stop()
	}
}

// Running lists the ids of the jobs this worker runs now.
func (w *Worker) Running() []string {
	w.runningMu.Lock()
	defer w.runningMu.Unlock()
	out := make([]string, 0, len(w.running))
	for id := range w.running {
		out = append(out, id)
	}
	return out
}

func (w *Worker) setRunning(id string, on bool) {
	w.runningMu.Lock()
	defer w.runningMu.Unlock()
	if on {
		w.running[id] = true
	} else {
		delete(w.running, id)
	}
}

func (w *Worker) setDrain() {
	w.drainMu.Lock()
	w.drain = true
	w.drainMu.Unlock()
}

func (w *Worker) draining() bool {
	w.drainMu.Lock()
	defer w.drainMu.Unlock()
	return w.drain
}

// watchControl keeps this worker's view of the control bucket until bg
// ends, and returns once the view holds every pause and cancel accepted so
// far (or ctx ends first): no job is taken before that, so a request
// accepted while no worker ran is carried out like one accepted after.
func (w *Worker) watchControl(ctx, bg context.Context) error {
	loaded, watchErr := make(chan struct{}), make(chan error, 1)
	go func() {
		err := w.q.Control.Watch(bg, w.setControl, sync.OnceFunc(func() { close(loaded) }))
		if err != nil {
			w.log.Error("control watch stopped", "err", err)
		}
		watchErr <- err
	}()
	select {
	case <-loaded:
		return nil
	case err := <-watchErr:
		if err == nil {
			err = errors.New("the watch ended before the current values were in")
		}
		return fmt.Errorf("worker: watch the control bucket: %w", err)
	case <-ctx.Done():
		return nil
	}
}

func (w *Worker) setControl(jobID string, c job.Control) {
	w.controlMu.Lock()
	defer w.controlMu.Unlock()
	if c == job.ControlNone {
		delete(w.controls, jobID)
	} else {
		w.controls[jobID] = c
	}
}

// control is what internal/upload checks at part boundaries: the operator's
// instruction, or a drain when the worker shuts down.
func (w *Worker) control(jobID string) job.Control {
	w.controlMu.Lock()
	c := w.controls[jobID]
	w.controlMu.Unlock()
	if c != job.ControlNone {
		return c
	}
	if w.draining() {
		return upload.ControlDrain
	}
	return job.ControlNone
}

// uploadRecorder is the queue's storage-path record as the uploader's
// CommitRecorder. A closed or draining connection cannot come back, so its
// error is marked permanent and the uploader commits at once instead of
// trying for seconds. A connection that is reconnecting (the server is
// down, a cluster is electing) is not closed: its errors are tried again.
type uploadRecorder struct{ files *queue.Files }

func (u uploadRecorder) RecordUpload(ctx context.Context, storagePath, jobID string) error {
	err := u.files.RecordUpload(ctx, storagePath, jobID)
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining) {
		return &upload.PermanentError{Code: "record_refused", Err: err}
	}
	return err
}

// Serve runs the worker and its HTTP endpoints until ctx ends.
func (w *Worker) Serve(ctx context.Context) error {
	l, err := net.Listen("tcp", w.cfg.HTTPAddr)
	if err != nil {
		return err
	}
	srv := httpserve.New(w.cfg.Config, w.Handler())
	go func() { _ = srv.Serve(l) }()
	w.log.Info("worker started", "http", l.Addr().String(), "jobs", w.cfg.Jobs)
	err = w.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return err
}
