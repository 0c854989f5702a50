// Package notify is vodpipe's event service. It receives VOD's NewFileUpload
// and ProcedureStateChanged events (normal callbacks on POST
// /v1/vod/callback, or pulled with PullEvents/ConfirmEvents), correlates
// them to jobs by FileId and publishes them on the EVENTS stream; and it fans
// every event out to subscribers: Standard Webhooks signed webhooks with
// retries (one durable JetStream consumer per subscription), a server-sent
// event stream resumable by stream sequence, and the NATS subjects the
// events already live on.
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

	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/httpserve"
	"github.com/vodpipe/vodpipe/internal/natsperm"
	"github.com/vodpipe/vodpipe/internal/netguard"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/secretbox"
)

// Service is one notify process. Several may run against the same NATS:
// they share subscriptions (a key-value bucket) and delivery work (one
// durable consumer per subscription).
type Service struct {
	cfg      Config
	log      *slog.Logger
	nc       *nats.Conn
	js       jetstream.JetStream
	q        *queue.Queue
	files    *queue.FileWatch
	stopBG   context.CancelFunc
	subs     jetstream.KeyValue
	vodSeen  jetstream.KeyValue
	attempts jetstream.Stream
	keys     APIKeys
	box      *secretbox.Box // seals the webhook signing secrets in subs
	metrics  *metrics
	client   *http.Client
	guard    *netguard.Guard
	resolver netguard.Resolver
	puller   *puller
	disp     *dispatcher

	runMu   sync.Mutex
	running bool
}

// New connects to NATS and opens the streams and buckets notify uses.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.withDefaults()
	if err := cfg.checkCallbackAuth(); err != nil {
		return nil, err
	}
	box, err := cfg.secretBox()
	if err != nil {
		return nil, err
	}
	guard := netguard.New(cfg.WebhookAllowCIDRs.Or(cfg.WebhookAllowPrivate))
	s := &Service{cfg: cfg, log: log, keys: cfg.APIKeys, box: box, metrics: newMetrics(),
		client: newWebhookClient(guard), guard: guard, resolver: net.DefaultResolver}
	if len(s.keys) == 0 {
		log.Warn("no API keys configured (VODPIPE_API_KEYS): the subscription and event APIs refuse every request")
	}
	if cfg.CallbackAuth == CallbackAuthNone {
		log.Warn("VODPIPE_CALLBACK_AUTH=none: anyone who can reach /v1/vod/callback can publish VOD events")
	}
	if cfg.PullAPIID != "" {
		p, err := newPuller(cfg.PullConfig)
		if err != nil {
			return nil, err
		}
		s.puller = p
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
	if err := queue.WhenReady(ctx, queue.ReadyPolicy{}, s.log, s.open); err != nil {
		nc.Close()
		return nil, err
	}
	if err := s.resealSecrets(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	s.disp = newDispatcher(s)
	// One watcher of the FileId → job mappings serves every VOD callback that
	// arrives before its worker recorded the mapping.
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stopBG = stop
	s.files = s.q.Files.Watch(bg, s.log.Warn)
	return s, nil
}

func (s *Service) open(ctx context.Context) error {
	var err error
	if s.js, err = jetstream.New(s.nc); err != nil {
		return err
	}
	// The shared layout is ingest's; notify attaches to it and creates its own buckets and stream.
	if s.q, err = queue.Attach(ctx, s.js, s.cfg.QueueConfig); err != nil {
		return err
	}
	replicas := s.q.Config().Replicas
	if s.subs, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: SubscriptionsBucket, Description: "vodpipe webhook subscriptions", History: 1,
		Storage: jetstream.FileStorage, Replicas: replicas,
	}); err != nil {
		return fmt.Errorf("notify: bucket %s: %w", SubscriptionsBucket, err)
	}
	if s.vodSeen, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: VODEventsBucket, Description: "VOD events already published (dedupe of VOD's repeated deliveries)",
		History: 1, TTL: s.cfg.VODDedupeTTL, Storage: jetstream.FileStorage, Replicas: replicas,
	}); err != nil {
		return fmt.Errorf("notify: bucket %s: %w", VODEventsBucket, err)
	}
	if s.attempts, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: AttemptsStream, Description: "vodpipe webhook delivery attempts", Subjects: []string{attemptsPrefix + ".>"},
		Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Replicas: replicas,
		MaxAge: s.cfg.AttemptsMaxAge, MaxMsgsPerSubject: s.cfg.AttemptsPerSubscription, Discard: jetstream.DiscardOld,
	}); err != nil {
		return fmt.Errorf("notify: stream %s: %w", AttemptsStream, err)
	}
	return nil
}

// Close releases the NATS connection. Stop Run first.
func (s *Service) Close() {
	s.stopBG()
	s.nc.Close()
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
func (s *Service) Registry() *prometheus.Registry { return s.metrics.reg }

// Handler serves notify's HTTP API:
//
//	POST   /v1/vod/callback                   VOD normal callback (optional ?token=)
//	POST   /v1/subscriptions                  create a webhook subscription (control)
//	GET    /v1/subscriptions                  list (read)
//	GET    /v1/subscriptions/{id}             one (read)
//	DELETE /v1/subscriptions/{id}             delete (control)
//	GET    /v1/subscriptions/{id}/attempts    delivery attempts, newest first (read)
//	POST   /v1/subscriptions/{id}/replay      re-send events from a time range (control)
//	POST   /v1/subscriptions/{id}/enable      re-enable a disabled subscription (control)
//	GET    /v1/events                         server-sent events (read)
//	GET    /healthz, /readyz, /metrics
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/vod/callback", s.handleCallback)
	mux.Handle("POST /v1/subscriptions", httpapi.Authorize(s.keys, ScopeControl, s.handleCreate))
	mux.Handle("GET /v1/subscriptions", httpapi.Authorize(s.keys, ScopeRead, s.handleList))
	mux.Handle("GET /v1/subscriptions/{id}", httpapi.Authorize(s.keys, ScopeRead, s.handleGet))
	mux.Handle("DELETE /v1/subscriptions/{id}", httpapi.Authorize(s.keys, ScopeControl, s.handleDelete))
	mux.Handle("GET /v1/subscriptions/{id}/attempts", httpapi.Authorize(s.keys, ScopeRead, s.handleAttempts))
	mux.Handle("POST /v1/subscriptions/{id}/replay", httpapi.Authorize(s.keys, ScopeControl, s.handleReplay))
	mux.Handle("POST /v1/subscriptions/{id}/enable", httpapi.Authorize(s.keys, ScopeControl, s.handleEnable))
	mux.Handle("GET /v1/events", httpapi.Authorize(s.keys, ScopeRead, s.handleEvents))
	httpserve.Probes(mux, s.log, s.ready, s.metrics.reg)
	mux.HandleFunc("/", httpapi.NoRoute)
	return mux
}

func (s *Service) ready(ctx context.Context) error {
	if !s.nc.IsConnected() {
		return errors.New("NATS not connected")
	}
	if err := s.q.Ready(ctx); err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	if _, err := s.subs.Status(ctx); err != nil {
		return fmt.Errorf("subscriptions bucket: %w", err)
	}
	return nil
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
	if s.puller != nil {
		wg.Go(func() { s.runPull(ctx) })
	}
	wg.Go(func() { s.refreshBacklog(ctx) })
	err := s.disp.run(ctx)
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
	s.log.Info("notify started", "http", l.Addr().String(), "pull", s.puller != nil)
	err := s.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if serr := <-serveErr; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
