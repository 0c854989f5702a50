// Package ingest is vodpipe's front door: the job HTTP API (submit one or a
// batch, status, list, pause, resume, cancel), the signature service for
// workers (NATS) and for end-user clients (HTTP), with API-key auth. It is the
// only service that holds the Tencent SecretKey.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"golang.org/x/time/rate"

	"github.com/vodpipe/vodpipe/internal/ingest/console"
	"github.com/vodpipe/vodpipe/internal/tracing"
	"github.com/vodpipe/vodpipe/internal/version"

	"github.com/vodpipe/vodpipe/internal/apikey"
	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/defaults"
	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/httpserve"
	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/natsperm"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/internal/signer"
)

// QueueConfig is an alias so the queue's variables embed flat.
type QueueConfig = queue.Config

// ConsoleConfig is an alias so the console's variables embed flat.
type ConsoleConfig = console.Config

// Config is ingest's configuration (prefix VODPIPE_).
type Config struct {
	natsconf.NATS
	QueueConfig
	config.Credentials
	signer.Policy
	UploadTokenConfig
	PageConfig
	ConsoleConfig
	httpserve.Config
	httpserve.StreamConfig

	HTTPAddr string `envconfig:"INGEST_HTTP_ADDR" default:":8080" desc:"listen address of the ingest HTTP API"`
	// AdminAddr, when set, serves /metrics (and the probes) on a listener of
	// its own, and the API's address serves no /metrics.
	AdminAddr string `envconfig:"INGEST_ADMIN_ADDR" desc:"listen address of an admin listener for /metrics and the probes (empty: /metrics on the API's address)"`
	// APIKeys are "key" or "name:key[:scope+scope]" entries (see internal/apikey);
	// scopes: submit, read, control, sign (default: all).
	APIKeys APIKeys `envconfig:"API_KEYS" desc:"API keys, key or name:key[:scope+scope],... (scopes submit, read, control, sign; default all)"`
	// BatchMax bounds the jobs of one batch request.
	BatchMax int `envconfig:"BATCH_MAX" default:"1000" desc:"most jobs in one POST /v1/jobs:batch"`
	// MaxBody bounds a request body.
	MaxBody int64 `envconfig:"MAX_BODY" default:"16777216" desc:"largest request body in bytes"`
	// SignRate and SignBurst limit POST /v1/signatures per API key.
	SignRate  float64 `envconfig:"SIGN_RATE" default:"10" desc:"signatures per second per API key over HTTP"`
	SignBurst int     `envconfig:"SIGN_BURST" default:"20" desc:"burst of signatures per API key over HTTP"`
	// SignGlobalRate and SignGlobalBurst limit POST /v1/signatures for all callers together.
	SignGlobalRate  float64 `envconfig:"SIGN_GLOBAL_RATE" default:"200" desc:"signatures per second over HTTP, all callers together"`
	SignGlobalBurst int     `envconfig:"SIGN_GLOBAL_BURST" default:"400" desc:"burst of signatures over HTTP, all callers together"`
	// CORSOrigins may call POST /v1/signatures from a browser.
	CORSOrigins []string `envconfig:"CORS_ORIGINS" desc:"browser origins allowed to call the signature endpoint"`
	// TracerProvider takes the spans (tests, the stack); nil: the one the
	// OTEL_* environment asks for (off by default; see internal/tracing).
	TracerProvider trace.TracerProvider `ignored:"true"`
}

// Service is a running ingest.
type Service struct {
	cfg Config
	log *slog.Logger
	nc  *nats.Conn
	q   *queue.Queue
	// draining: the API is stopping (httpserve.Drain), readiness fails.
	draining atomic.Bool
	// stopBG ends the background work on the job index (reindex, sweep).
	stopBG  context.CancelFunc
	idem    jetstream.KeyValue
	signer  *signer.Signer
	sigSvc  micro.Service
	keys    APIKeys
	metrics *metrics

	keyLimits   *limiters // per API key
	tokenLimits *limiters // per upload token
	globalLimit *rate.Limiter
	tokenKeys   [][]byte
	page        *pageEvents
	live        *live
	tracer      trace.Tracer
	stopTracing func(context.Context) error
	// console is the operations console (nil when VODPIPE_CONSOLE is off).
	console *console.Console
	// api is the API handler the console calls in process.
	api     http.Handler
	apiOnce sync.Once
}

// New connects to NATS, opens the queue and starts the signature micro service.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// A Config built by hand (tests, the stack) gets the tags' defaults.
	defaults.Fill(&cfg)
	if err := cfg.QueueConfig.CheckStatusRetention(); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	tokenKeys, err := cfg.UploadTokenConfig.keys()
	if err != nil {
		return nil, err
	}
	tp, stopTracing := cfg.TracerProvider, func(context.Context) error { return nil }
	if tp == nil {
		if tp, stopTracing, err = tracing.Setup(ctx, "ingest"); err != nil {
			return nil, err
		}
	}
	if cfg.UploadPage && len(tokenKeys) == 0 {
		return nil, errors.New("ingest: VODPIPE_UPLOAD_PAGE needs VODPIPE_UPLOAD_TOKEN_KEYS (or _FILE): the page signs only with upload tokens")
	}
	key, err := cfg.Credentials.Key()
	if err != nil {
		return nil, err
	}
	sg, err := signer.New(cfg.SecretID, key, cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("ingest: set VODPIPE_SECRET_ID and VODPIPE_SECRET_KEY (or _FILE): %w", err)
	}
	s := &Service{cfg: cfg, log: log, signer: sg, keys: cfg.APIKeys, metrics: newMetrics(), tokenKeys: tokenKeys,
		tracer: tp.Tracer(tracing.Name), stopTracing: stopTracing,
		keyLimits:   newLimiters(cfg.SignRate, cfg.SignBurst, maxTrackedCallers),
		tokenLimits: newLimiters(cfg.UploadTokenSignRate, cfg.UploadTokenSignBurst, maxTrackedCallers),
		globalLimit: rate.NewLimiter(rate.Limit(cfg.SignGlobalRate), cfg.SignGlobalBurst)}
	opts, err := cfg.NATS.Options("vodpipe-ingest", nats.CustomInboxPrefix(natsperm.Ingest.Inbox()))
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	if s.nc, err = nats.Connect(cfg.NATS.URL, opts...); err != nil {
		return nil, fmt.Errorf("ingest: connect NATS: %w", err)
	}
	js, err := jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		s.nc.Close()
		return nil, err
	}
	if err := queue.WhenReady(ctx, queue.ReadyPolicy{}, log, func(ctx context.Context) (err error) {
		if s.q, err = queue.Open(ctx, js, cfg.QueueConfig); err != nil {
			return err
		}
		if s.idem, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "vodpipe_idempotency",
			Description: "Idempotency-Key to job id", TTL: queue.IdempotencyKeyTTL, Replicas: cfg.Replicas, Storage: jetstream.FileStorage}); err != nil {
			return fmt.Errorf("ingest: bucket vodpipe_idempotency: %w", err)
		}
		return nil
	}); err != nil {
		s.nc.Close()
		return nil, err
	}
	// notify's consumers and streams: made here, after a check, because
	// notify's NATS user may create none (see queue.Layout).
	if _, err := queue.ServeLayout(s.nc, js, log); err != nil {
		s.nc.Close()
		return nil, err
	}
	s.metrics.reg.MustRegister(queue.NewCollector(s.q))
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stopBG = stop
	if s.q.NeedsReindex() {
		go s.reindex(bg)
	}
	go s.sweepIndex(bg, indexSweepInterval)
	go s.sweepStrays(bg, time.Minute, strayBudget)
	go s.sweep(bg, controlSweepInterval, "the control bucket's old deletion markers and finished jobs' controls", func(ctx context.Context) (int, error) {
		return s.q.Control.Sweep(ctx, controlSweepAge, controlSweepBudget)
	})
	go s.republish(bg, 5*time.Second)
	log.Info("signing policy", cfg.Policy.LogAttrs()...)
	if cfg.UploadPage {
		if s.page, err = startPageEvents(s.nc, max(cfg.UploadTokenMaxStreams, 1), s.metrics.pageEvts, log); err != nil {
			s.nc.Close()
			return nil, err
		}
	}
	if s.live, err = startLive(bg, s.nc, log); err != nil {
		s.nc.Close()
		return nil, err
	}
	if cfg.Console {
		api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.apiOnce.Do(func() { s.api = s.apiMux() })
			s.api.ServeHTTP(w, r)
		})
		// Sessions are sealed under a key derived from the SecretKey, which
		// every ingest replica holds.
		if s.console, err = console.New(cfg.ConsoleConfig, cfg.APIKeys, []byte(key), api, s.live, log.With("component", "console")); err != nil {
			s.nc.Close()
			return nil, err
		}
	}
	if s.sigSvc, err = sg.Serve(s.nc, s.q.Statuses, log); err != nil {
		s.nc.Close()
		return nil, err
	}
	return s, nil
}

// reindex gives the statuses of a deployment older than the job index
// their entries (run in the background: listings show them as they are done).
func (s *Service) reindex(ctx context.Context) {
	s.log.Info("indexing the statuses stored before the job index existed")
	n, err := s.q.Statuses.Reindex(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Error("job index: reindex stopped (restart ingest to finish it)", "indexed", n, "err", err)
		return
	}
	s.log.Info("job index: statuses indexed", "indexed", n)
}

// indexSweepInterval is how often ingest deletes the index entries of
// expired jobs: the entries by creation of the jobs expired since the last
// sweep are the ones a listing from the start must read past (it deletes
// some as it goes, see queue.Statuses.Page), a few thousand at a million
// jobs a day.
const indexSweepInterval = 5 * time.Minute

// sweepIndex deletes the index entries of expired jobs now and every
// interval after, until ctx ends (every replica sweeps; a second sweep
// finds nothing left).
func (s *Service) sweepIndex(ctx context.Context, interval time.Duration) {
	s.sweep(ctx, interval, "expired jobs", s.q.Statuses.SweepIndex)
}

// controlSweepInterval is how often ingest sweeps the control bucket,
// controlSweepAge how old a deletion marker must be before it goes, and
// controlSweepBudget how many a sweep removes at most (queue.Control.Sweep;
// the backlog a 0.9 deployment left goes over several sweeps): a worker
// reads every key of the bucket at its start, which would otherwise grow
// with every pause and cancel ever made.
const (
	controlSweepInterval = 10 * time.Minute
	controlSweepAge      = time.Hour
	controlSweepBudget   = 5000
)

// sweep runs f now and every interval after until ctx ends, logging what
// it deleted (what names the entries) or why it failed.
func (s *Service) sweep(ctx context.Context, interval time.Duration, what string, f func(context.Context) (int, error)) {
	retry.Every(ctx, interval, func() {
		if n, err := f(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sweep of "+what+" failed; next try in an interval", "err", err)
		} else if n > 0 {
			s.log.Info("sweep: entries of "+what+" deleted", "deleted", n)
		}
	})
}

// strayBudget is how many index entries sweepStrays reads a round: about
// a thousand a subject, a few milliseconds of work.
const strayBudget = 7000

// sweepStrays deletes, now and every interval after, the index entries a
// crash left (see queue.Statuses.SweepStrays), reading at most budget
// entries a round and going on where the last round stopped, so that the
// per-state counts of `vodpipe jobs`, the metrics and the console come back
// to the truth within rounds, whatever the number of jobs.
func (s *Service) sweepStrays(ctx context.Context, interval time.Duration, budget int) {
	var cur queue.StrayCursor
	s.sweep(ctx, interval, "crash strays", func(ctx context.Context) (int, error) {
		return s.q.Statuses.SweepStrays(ctx, &cur, budget, queue.StrayGrace)
	})
}

// republish publishes again, now and every interval after, the jobs whose
// status was created but whose message JetStream did not confirm (a NATS
// election, a full store): a job answered with an error may have a status
// that says queued, and it is queued for real as soon as JetStream takes it.
func (s *Service) republish(ctx context.Context, interval time.Duration) {
	retry.Every(ctx, interval, func() {
		if n, err := s.q.Jobs.RepublishUnconfirmed(ctx); n > 0 {
			s.log.Info("jobs published again after a failed submit", "published", n)
		} else if err != nil && ctx.Err() == nil {
			s.log.Warn("jobs not yet published again after a failed submit", "err", err)
		}
	})
}

// Close stops the signature service and the NATS connection.
func (s *Service) Close() {
	if s.stopBG != nil {
		s.stopBG()
	}
	if s.stopTracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.stopTracing(ctx) // flushes the spans still buffered
		cancel()
	}
	if s.sigSvc != nil {
		_ = s.sigSvc.Stop()
	}
	if s.page != nil {
		s.page.close()
	}
	if s.live != nil {
		s.live.close()
	}
	_ = s.nc.Drain()
}

// Queue returns the opened queue.
func (s *Service) Queue() *queue.Queue { return s.q }

// Serve runs the HTTP API on cfg.HTTPAddr until ctx ends, then shuts down gracefully.
func (s *Service) Serve(ctx context.Context) error {
	l, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, l)
}

// ServeListener runs the HTTP API on l (and the admin listener, when
// configured) until ctx ends.
func (s *Service) ServeListener(ctx context.Context, l net.Listener) error {
	srv := httpserve.New(s.cfg.Config, httpserve.Streams(s.cfg.StreamConfig, s.Handler(), "/upload/events", "/console/events"))
	s.log.Info("ingest listening", "addr", l.Addr().String())
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	admin := make(chan error, 1)
	go func() {
		err := httpserve.ServeAdmin(ctx, s.cfg.Config, s.cfg.AdminAddr, httpserve.AdminHandler(s.log, s.ready, s.metrics.reg), s.log)
		if err != nil {
			stop() // no admin listener (its address taken): the service stops, its error said
		}
		admin <- err
	}()
	sctx, stopDrain := httpserve.Drain(ctx, s.cfg.DrainDelay, &s.draining)
	err := httpserve.Serve(sctx, srv, l, 15*time.Second)
	stopDrain()
	stop()
	return errors.Join(err, <-admin)
}

func (s *Service) ready(ctx context.Context) error {
	if s.draining.Load() {
		return errors.New("shutting down")
	}
	if !s.nc.IsConnected() {
		return errors.New("NATS not connected")
	}
	return s.q.Ready(ctx)
}

// Handler is the HTTP API, with the console when it is on.
func (s *Service) Handler() http.Handler {
	mux := s.apiMux()
	if s.console != nil {
		s.console.Register(mux)
	}
	return mux
}

// apiMux is the HTTP API alone.
func (s *Service) apiMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, r := range s.routes() {
		h := r.handler
		if r.scope != "" {
			h = s.authorize(r.scope, r.tokens, h)
		}
		mux.Handle(r.method+" "+r.path, s.instrument(r.method+" "+r.path, h))
	}
	httpserve.APIProbes(mux, s.log, s.ready, s.metrics.reg, s.cfg.AdminAddr != "")
	mux.HandleFunc("/", httpapi.NoRoute)
	return mux
}

// route is one API route; Routes lists them for the OpenAPI check.
type route struct {
	method, path, scope string
	handler             http.Handler
	// tokens lets an end user's upload token in (besides keys with the scope).
	tokens bool
}

// Routes returns "METHOD path" of every API route (what the OpenAPI document must describe).
func (s *Service) Routes() []string {
	var out []string
	for _, r := range s.routes() {
		out = append(out, r.method+" "+r.path)
	}
	return out
}

func (s *Service) routes() []route {
	return []route{
		{"POST", "/v1/jobs", ScopeSubmit, http.HandlerFunc(s.createJob), false},
		{"POST", "/v1/jobs:batch", ScopeSubmit, http.HandlerFunc(s.createBatch), false},
		{"GET", "/v1/jobs", ScopeRead, http.HandlerFunc(s.listJobs), false},
		{"GET", "/v1/jobs:counts", ScopeRead, http.HandlerFunc(s.countJobs), false},
		{"GET", "/v1/jobs/{id}", ScopeRead, http.HandlerFunc(s.getJob), false},
		{"POST", "/v1/jobs/{id}/pause", ScopeControl, http.HandlerFunc(s.pauseJob), false},
		{"POST", "/v1/jobs/{id}/resume", ScopeControl, http.HandlerFunc(s.resumeJob), false},
		{"POST", "/v1/jobs/{id}/cancel", ScopeControl, http.HandlerFunc(s.cancelJob), false},
		{"POST", "/v1/jobs/{id}/retry", ScopeControl, http.HandlerFunc(s.retryJob), false},
		{"GET", "/v1/jobs/{id}/events", ScopeRead, http.HandlerFunc(s.jobEvents), false},
		{"GET", "/v1/stats", ScopeRead, http.HandlerFunc(s.stats), false},
		{"GET", "/v1/dead-letters", ScopeRead, http.HandlerFunc(s.listDeadLetters), false},
		// The whole message is the publisher's, refused as it was (a source
		// URL with credentials, say): control scope, not read.
		{"GET", "/v1/dead-letters/{seq}", ScopeControl, http.HandlerFunc(s.getDeadLetter), false},
		{"POST", "/v1/dead-letters/{seq}/requeue", ScopeControl, http.HandlerFunc(s.requeueDeadLetter), false},
		{"POST", "/v1/signatures", ScopeSign, s.cors(http.HandlerFunc(s.createSignature)), true},
		{"POST", "/v1/upload-tokens", ScopeSign, http.HandlerFunc(s.createUploadToken), false},
		{"GET", "/upload", "", s.pageOnly(http.HandlerFunc(s.uploadPage)), false},
		{"GET", "/upload/vod-js-sdk-v6.js", "", s.pageOnly(http.HandlerFunc(s.uploadSDK)), false},
		{"GET", "/upload/events", ScopeSign, s.pageOnly(http.HandlerFunc(s.uploadEvents)), true},
		{"OPTIONS", "/v1/signatures", "", s.cors(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })), false},
	}
}

// API scopes (see internal/apikey).
const (
	ScopeSubmit  = apikey.ScopeSubmit
	ScopeRead    = apikey.ScopeRead
	ScopeControl = apikey.ScopeControl
	ScopeSign    = apikey.ScopeSign
)

// APIKeys are ingest's bearer keys (VODPIPE_API_KEYS, see internal/apikey).
type APIKeys = apikey.Keys

// caller is who made a request: an API key, or an end user holding an
// upload token (allowed to sign only, with the token's policy).
type caller struct {
	apikey.Key
	// Upload is set for an upload token: its user and policy.
	Upload *uploadClaims
}

type ctxKey struct{}

// authorize requires a bearer API key with the scope or, where tokens is
// set, an end user's upload token.
func (s *Service) authorize(scope string, tokens bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		token, ok := httpapi.Bearer(w, r)
		if !ok {
			return
		}
		var key *caller
		if k, found := s.keys.Lookup(token); found {
			key = &caller{Key: *k}
		} else if c, err := s.verifyUploadToken(token, time.Now()); err == nil {
			key = &caller{Key: apikey.Key{Name: "upload-token"}, Upload: c}
		}
		if key == nil {
			httpapi.RefuseToken(w, "API key or upload token")
			return
		}
		if key.Upload != nil && !tokens {
			httpapi.Refuse(w, http.StatusForbidden, httpapi.CodeForbidden, "an upload token may only get signatures and its user's events", nil)
			return
		}
		if key.Upload == nil && !key.Allows(scope) {
			httpapi.Write(w, httpapi.LacksScope(&key.Key, scope))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, key)))
	})
}

func keyFrom(r *http.Request) *caller {
	k, _ := r.Context().Value(ctxKey{}).(*caller)
	return k
}

// cors answers browsers from the configured origins.
func (s *Service) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && (slices.Contains(s.cfg.CORSOrigins, origin) || slices.Contains(s.cfg.CORSOrigins, "*")) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Vary", "Origin")
			h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			h.Set("Access-Control-Max-Age", "600")
		}
		next.ServeHTTP(w, r)
	})
}

// metrics of ingest.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	jobs     *prometheus.CounterVec
	sigs     *prometheus.CounterVec
	pageEvts prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vodpipe_ingest_requests_total",
			Help: "HTTP requests by route and status."}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vodpipe_ingest_request_duration_seconds",
			Help: "HTTP request latency by route.", Buckets: prometheus.DefBuckets}, []string{"route"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vodpipe_ingest_jobs_total",
			Help: "Jobs submitted, by outcome (queued, duplicate, invalid)."}, []string{"outcome"}),
		sigs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vodpipe_ingest_signatures_total",
			Help: "Signatures over HTTP, by outcome."}, []string{"outcome"}),
	}
	m.pageEvts = prometheus.NewCounter(prometheus.CounterOpts{Name: "vodpipe_ingest_page_events_total",
		Help: "vod.file_uploaded events received for the upload page's streams."})
	m.reg.MustRegister(m.requests, m.latency, m.jobs, m.sigs, m.pageEvts, version.Collector("ingest"), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (an event
// stream lifts its deadlines through it).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Service) instrument(name string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		// The request's span, a child of the caller's traceparent: the jobs
		// it submits carry it on (tracing.Inject in the queue).
		ctx, span := s.tracer.Start(tracing.ExtractHTTP(r.Context(), r.Header), name, trace.WithSpanKind(trace.SpanKindServer))
		next.ServeHTTP(rec, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", rec.status))
		if rec.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(rec.status))
		}
		span.End()
		s.metrics.requests.WithLabelValues(name, fmt.Sprint(rec.status)).Inc()
		s.metrics.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
	})
}
