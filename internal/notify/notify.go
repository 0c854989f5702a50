// Package notify is vodpipe's event service, composed of its two jobs: the
// intake (package intake) receives VOD's NewFileUpload and
// ProcedureStateChanged events, by callback or by pull, correlates them to
// jobs and publishes them on the EVENTS stream; the fan-out (package
// fanout) delivers every event to subscribers: signed webhooks with
// retries, a server-sent event stream, and the NATS subjects the events
// already live on. This package connects them to NATS, serves their HTTP
// API with the probes, and runs them.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/httpserve"
	"github.com/vodpipe/vodpipe/internal/natsperm"
	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/internal/notify/intake"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/tracing"
)

// Service is one notify process: the intake and the fan-out on one NATS
// connection and one HTTP server. Several may run against the same NATS.
type Service struct {
	cfg         Config
	log         *slog.Logger
	nc          *nats.Conn
	js          jetstream.JetStream
	q           *queue.Queue
	files       *queue.FileWatch
	stopBG      context.CancelFunc
	reg         *prometheus.Registry
	intake      *intake.Intake
	fanout      *fanout.Fanout
	tracer      trace.Tracer
	stopTracing func(context.Context) error

	runMu   sync.Mutex
	running bool
}

// New connects to NATS, attaches to the queue and opens the streams and
// buckets notify uses.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.withDefaults()
	s := &Service{cfg: cfg, log: log, reg: newRegistry(), stopTracing: func(context.Context) error { return nil }}
	var err error
	tp := cfg.TracerProvider
	if tp == nil {
		if tp, s.stopTracing, err = tracing.Setup(ctx, "notify"); err != nil {
			return nil, err
		}
	}
	s.tracer = tp.Tracer(tracing.Name)
	if s.intake, err = intake.New(cfg.IntakeConfig, s.reg, log); err != nil {
		return nil, err
	}
	if s.fanout, err = fanout.New(cfg.FanoutConfig, cfg.APIKeys, s.reg, log); err != nil {
		return nil, err
	}
	s.fanout.Trace(s.tracer)
	if len(cfg.APIKeys) == 0 {
		log.Warn("no API keys configured (VODPIPE_API_KEYS): the subscription and event APIs refuse every request")
	}
	if cfg.CallbackAuth == intake.CallbackAuthNone {
		log.Warn("VODPIPE_CALLBACK_AUTH=none: anyone who can reach /v1/vod/callback can publish VOD events")
	}
	opts, err := cfg.NATS.Options("vodpipe-notify", nats.CustomInboxPrefix(natsperm.Notify.Inbox()))
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	nc, err := nats.Connect(cfg.NATS.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("notify: connect NATS: %w", err)
	}
	s.nc = nc
	if err := queue.WhenReady(ctx, queue.ReadyPolicy{}, s.log, s.attach); err != nil {
		nc.Close()
		return nil, err
	}
	// One watcher of the FileId → job mappings serves every VOD callback that
	// arrives before its worker recorded the mapping.
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stopBG = stop
	s.files = s.q.Files.Watch(bg, s.log.Warn)
	// Their streams come from ingest's layout broker, which may not answer
	// yet (ingest starting): waited for like the layout.
	err = queue.WhenReady(ctx, queue.ReadyPolicy{}, s.log, func(ctx context.Context) error {
		if err := s.intake.Open(ctx, s.js, s.q, s.files); err != nil {
			return err
		}
		return s.fanout.Open(ctx, nc, s.js, s.q)
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// attach attaches to the shared layout, which is ingest's.
func (s *Service) attach(ctx context.Context) error {
	var err error
	if s.js, err = jetstream.New(s.nc); err != nil {
		return err
	}
	s.q, err = queue.Attach(ctx, s.js, s.cfg.QueueConfig)
	return err
}

// Close releases the NATS connection. Stop Run first.
func (s *Service) Close() {
	s.stopBG()
	s.nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = s.stopTracing(ctx) // flushes the spans still buffered
	cancel()
	// The files watcher ends with its subscription; bounded, so a wedged
	// watcher cannot hold up a shutdown.
	select {
	case <-s.files.Done():
	case <-time.After(5 * time.Second):
		s.log.Warn("files watcher did not stop within 5s")
	}
}

// Queue exposes the opened queue (for tests and the all-in-one binary).
func (s *Service) Queue() *queue.Queue { return s.q }

// Registry exposes notify's Prometheus registry.
func (s *Service) Registry() *prometheus.Registry { return s.reg }

// Handler serves notify's HTTP API: VOD's callback (the intake's), the
// subscription API and the event stream (the fan-out's, see
// fanout.Fanout.Routes), and the probes:
//
//	POST   /v1/vod/callback                   VOD normal callback (optional ?token=)
//	…      /v1/subscriptions…, /v1/events     see fanout.Fanout.Routes
//	GET    /healthz, /readyz, /metrics
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(callbackRoute, func(w http.ResponseWriter, r *http.Request) {
		// VOD's callback: its span is the parent of the events published from it.
		ctx, span := s.tracer.Start(tracing.ExtractHTTP(r.Context(), r.Header), "vod callback", trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		s.intake.HandleCallback(w, r.WithContext(ctx))
	})
	s.fanout.Routes(mux)
	httpserve.APIProbes(mux, s.log, s.ready, s.reg, s.cfg.AdminAddr != "")
	mux.HandleFunc("/", httpapi.NoRoute)
	return mux
}

const callbackRoute = "POST /v1/vod/callback"

// Routes lists the API routes Handler serves, as "METHOD /path" (the
// probes aside): what docs/notify-openapi.json describes.
func (s *Service) Routes() []string { return append([]string{callbackRoute}, s.fanout.RouteList()...) }

func (s *Service) ready(ctx context.Context) error {
	if !s.nc.IsConnected() {
		return errors.New("NATS not connected")
	}
	if err := s.q.Ready(ctx); err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	return s.fanout.Ready(ctx)
}

// Run delivers webhooks (and pulls VOD events in pull mode) until ctx ends.
// Deliveries in flight are then handed back to JetStream at once, so another
// replica, or this one restarted, takes them over without waiting for their
// ack deadline.
func (s *Service) Run(ctx context.Context) error {
	s.runMu.Lock()
	if s.running {
		s.runMu.Unlock()
		return errors.New("notify: Run called twice")
	}
	s.running = true
	s.runMu.Unlock()

	var wg sync.WaitGroup
	if s.intake.Pulls() {
		wg.Go(func() { s.intake.RunPull(ctx) })
	}
	err := s.fanout.Run(ctx)
	wg.Wait()
	s.log.Info("notify stopped")
	return err
}

// Serve runs notify and its HTTP API on cfg.HTTPAddr until ctx ends.
func (s *Service) Serve(ctx context.Context) error {
	l, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, l)
}

// ServeListener is Serve on a listener the caller opened.
func (s *Service) ServeListener(ctx context.Context, l net.Listener) error {
	// Event streams end with the server: their requests' context is cancelled at shutdown.
	base, stopStreams := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStreams()
	srv := httpserve.New(s.cfg.Config, httpserve.Streams(s.cfg.StreamConfig, s.Handler(), "/v1/events"))
	srv.BaseContext = func(net.Listener) context.Context { return base }
	srv.RegisterOnShutdown(stopStreams)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()
	ctx, stopAdmin := context.WithCancel(ctx)
	defer stopAdmin()
	admin := make(chan error, 1)
	go func() {
		err := httpserve.ServeAdmin(ctx, s.cfg.Config, s.cfg.AdminAddr, httpserve.AdminHandler(s.log, s.ready, s.reg), s.log)
		if err != nil {
			stopAdmin() // no admin listener (its address taken): the service stops, its error said
		}
		admin <- err
	}()
	s.log.Info("notify started", "http", l.Addr().String(), "pull", s.intake.Pulls())
	err := s.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if serr := <-serveErr; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	stopAdmin()
	return errors.Join(err, <-admin)
}
