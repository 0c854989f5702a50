// Package fanout is notify's second job: every event out to subscribers.
// It keeps the webhook subscriptions (a key-value bucket every replica
// shares), delivers each event to the subscriptions that asked for it,
// signed per Standard Webhooks, with retries on one durable JetStream
// consumer per subscription, logs the attempts, and serves the events as a
// server-sent event stream resumable by stream sequence. VOD's events come
// in through package intake.
package fanout

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/vodpipe/vodpipe/internal/apikey"
	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/defaults"
	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/netguard"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/internal/secretbox"
)

// Config is the fan-out's part of notify's configuration (prefix VODPIPE_).
type Config struct {
	WebhookConfig

	// MaxBody bounds a subscription API request body.
	MaxBody int64 `envconfig:"NOTIFY_MAX_BODY" default:"65536" desc:"largest subscription API request body in bytes"`
	// SSEHeartbeat is the interval of comment lines on idle event streams.
	SSEHeartbeat time.Duration `envconfig:"SSE_HEARTBEAT" default:"15s" desc:"interval of heartbeats on idle server-sent event streams"`
	// BacklogInterval is how often the backlog gauges are refreshed.
	BacklogInterval time.Duration `envconfig:"NOTIFY_BACKLOG_INTERVAL" default:"15s" desc:"refresh interval of the per-subscription backlog gauges"`
	// RePublishRetry is how often notify asks ingest's layout broker again
	// for the subscriptions bucket's RePublish after an older ingest
	// refused it (an upgrade under way: ingest of 0.9, notify of 0.10).
	RePublishRetry time.Duration `envconfig:"NOTIFY_REPUBLISH_RETRY" default:"5m" desc:"interval of asking ingest again for the subscriptions bucket's RePublish after an older ingest refused it"`
}

// WebhookConfig tunes webhook delivery.
type WebhookConfig struct {
	// WebhookAllowCIDRs are non-public addresses webhooks may reach
	// (receivers inside the cluster).
	WebhookAllowCIDRs netguard.CIDRs `envconfig:"WEBHOOK_ALLOW_CIDRS" desc:"CIDRs beyond the public internet that webhook URLs may reach, comma-separated (link-local and cloud metadata addresses never)"`
	// WebhookAllowPrivate adds loopback and private ranges to WebhookAllowCIDRs.
	WebhookAllowPrivate bool `envconfig:"WEBHOOK_ALLOW_PRIVATE" desc:"shorthand: add loopback and private ranges (127.0.0.0/8, ::1, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7) to WEBHOOK_ALLOW_CIDRS"`
	// WebhookTimeout bounds one delivery attempt.
	WebhookTimeout time.Duration `envconfig:"WEBHOOK_TIMEOUT" default:"15s" desc:"timeout of one webhook delivery attempt"`
	// WebhookSchedule are the delays before the 2nd, 3rd, … attempt; its
	// length + 1 is the number of attempts. The default spans about a day.
	WebhookSchedule Schedule `envconfig:"WEBHOOK_RETRY_SCHEDULE" default:"5s,5m,30m,2h,5h,10h,10h" desc:"delays before each retry of a webhook delivery, comma-separated (each ± 10 % at random)"`
	// WebhookDisableAfter disables a subscription after this many events in
	// a row exhausted every attempt.
	WebhookDisableAfter int `envconfig:"WEBHOOK_DISABLE_AFTER" default:"5" desc:"consecutive events that exhausted every attempt before a subscription is disabled"`
	// WebhookConcurrency bounds the deliveries one notify process runs at once per subscription.
	WebhookConcurrency int `envconfig:"WEBHOOK_CONCURRENCY" default:"16" desc:"deliveries in flight per subscription and notify process (a replay running has as many again)"`
	// WebhookMaxInFlight bounds the events of one subscription being
	// delivered or waiting for a retry, across all notify processes.
	WebhookMaxInFlight int `envconfig:"WEBHOOK_MAX_IN_FLIGHT" default:"1000" desc:"events per subscription being delivered or waiting for a retry, across replicas (a replay running has as many again)"`
	// WebhookMaxSubscriptions bounds the subscriptions (each is a JetStream consumer).
	WebhookMaxSubscriptions int `envconfig:"WEBHOOK_MAX_SUBSCRIPTIONS" default:"1000" desc:"most webhook subscriptions"`
	// AttemptsMaxAge and AttemptsPerSubscription bound the delivery-attempt log.
	AttemptsMaxAge          time.Duration `envconfig:"WEBHOOK_ATTEMPTS_MAX_AGE" default:"168h" desc:"how long delivery attempts are kept"`
	AttemptsPerSubscription int64         `envconfig:"WEBHOOK_ATTEMPTS_PER_SUBSCRIPTION" default:"1000" desc:"delivery attempts kept per subscription"`
	AttemptsMaxBytes        int64         `envconfig:"WEBHOOK_ATTEMPTS_MAX_BYTES" default:"268435456" desc:"bytes the delivery-attempt log may hold; when full, the oldest attempts go"`
	// WebhookSecretKeys encrypt the signing secrets in the subscriptions
	// bucket, so that NATS never holds them in clear: the first seals, every
	// one opens, so a key is rotated by putting a new one first.
	WebhookSecretKeys     []string `envconfig:"WEBHOOK_SECRET_KEYS" desc:"keys that encrypt webhook signing secrets at rest (AES-256-GCM), comma-separated, each 32 bytes in base64 or hex (openssl rand -base64 32): the first seals, all open, records sealed under another are re-sealed at start; required (prefer WEBHOOK_SECRET_KEYS_FILE)"`
	WebhookSecretKeysFile string   `envconfig:"WEBHOOK_SECRET_KEYS_FILE" desc:"file holding the webhook secret keys, one per line or comma-separated, e.g. a mounted Kubernetes secret"`
	// MigrateClearSecrets accepts secrets stored in clear, as versions
	// before sealing wrote them, and seals them at start. Off, such a
	// record is one whose secret does not open: whoever may write the
	// subscriptions bucket could otherwise plant a subscription with a
	// secret of their own and have every event signed for them.
	MigrateClearSecrets bool `envconfig:"WEBHOOK_MIGRATE_CLEAR_SECRETS" desc:"accept webhook signing secrets stored in clear by a version before sealing, and seal them at start: on for the first start after such an upgrade only (off, such a subscription delivers nothing)"`
}

// SecretBox is the box of WebhookSecretKeys or WebhookSecretKeysFile. Its
// errors name the variable, never a key.
func (c *WebhookConfig) SecretBox() (*secretbox.Box, error) {
	entries, from, err := config.KeyList("WEBHOOK_SECRET_KEYS", c.WebhookSecretKeys, c.WebhookSecretKeysFile)
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("notify: %s_WEBHOOK_SECRET_KEYS_FILE is not set (or %[1]s_WEBHOOK_SECRET_KEYS): webhook signing secrets are "+
			"encrypted at rest with it; make a key with: openssl rand -base64 32", config.Prefix)
	}
	keys, err := secretbox.ParseKeys(strings.Join(entries, ","))
	if err != nil {
		return nil, fmt.Errorf("notify: %s: %w", from, err)
	}
	return secretbox.New(keys...)
}

// ackWait is how long a delivered event may go unacknowledged before
// JetStream hands it to another replica: one attempt plus a margin.
func (c *Config) ackWait() time.Duration {
	return c.WebhookTimeout + max(2*time.Second, c.WebhookTimeout/2)
}

// maxDeliver is the number of attempts per event.
func (c *Config) maxDeliver() int { return len(c.WebhookSchedule) + 1 }

// Schedule is a retry schedule: the delays before the 2nd, 3rd, … attempt.
type Schedule []time.Duration

// DefaultSchedule spans about 28 hours over 8 attempts: at once, then after
// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h.
// It is the default of WebhookSchedule's tag.
func DefaultSchedule() Schedule {
	var c Config
	defaults.Fill(&c)
	return c.WebhookSchedule
}

// Decode implements envconfig.Decoder: comma-separated Go durations.
func (s *Schedule) Decode(v string) error {
	var out Schedule
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		d, err := time.ParseDuration(part)
		if err != nil || d <= 0 {
			return fmt.Errorf("retry schedule: %q is not a positive duration", part)
		}
		out = append(out, d)
	}
	if len(out) > 50 {
		return fmt.Errorf("retry schedule: %d delays, at most 50", len(out))
	}
	*s = out
	return nil
}

// delay is the wait after failed attempt n (1-based).
func (s Schedule) delay(n int) time.Duration {
	if n < 1 || len(s) == 0 {
		return 0
	}
	return s[min(n, len(s))-1]
}

// Scopes the fan-out checks: read for GET requests and the event stream,
// control for creating, deleting and replaying subscriptions.
const (
	ScopeRead    = apikey.ScopeRead
	ScopeControl = apikey.ScopeControl
)

// Fanout delivers events to subscribers. Several notify replicas may run
// one each against the same NATS: they share the subscriptions and the
// delivery work (one durable consumer per subscription).
type Fanout struct {
	cfg      Config
	log      *slog.Logger
	nc       *nats.Conn
	js       jetstream.JetStream
	layout   *queue.Layout // ingest's broker: notify's consumers and streams
	tracer   trace.Tracer
	events   *queue.Events
	replicas int
	subs     jetstream.KeyValue
	// subsAsked is the subscriptions bucket as asked of the broker, with
	// its RePublish; lacksRePublish: an older broker refused that, and
	// the bucket was made without (Run asks again).
	subsAsked      jetstream.KeyValueConfig
	lacksRePublish bool
	attempts       jetstream.Stream
	keys           apikey.Keys
	box            *secretbox.Box // seals the webhook signing secrets in subs
	metrics        *metrics
	client         *http.Client
	guard          *netguard.Guard
	resolver       netguard.Resolver
	disp           *dispatcher
	// backlogs are the subscriptions' backlogs as refreshBacklog last read them.
	backlogs sync.Map // subscription id → *Backlog
}

// New checks cfg and returns a fan-out, not yet open: its configuration
// errors (the keys that seal webhook secrets) come before any connection.
// keys authorize its API; its metrics are registered with reg.
func New(cfg Config, keys apikey.Keys, reg prometheus.Registerer, log *slog.Logger) (*Fanout, error) {
	box, err := cfg.SecretBox()
	if err != nil {
		return nil, err
	}
	guard := netguard.New(cfg.WebhookAllowCIDRs.Or(cfg.WebhookAllowPrivate))
	f := &Fanout{cfg: cfg, log: log, keys: keys, box: box,
		metrics: newMetrics(reg), client: newWebhookClient(guard), guard: guard, resolver: net.DefaultResolver}
	f.disp = newDispatcher(f)
	return f, nil
}

// Trace makes the fan-out's deliveries spans of tracer (each a child of
// the span that published its event).
func (f *Fanout) Trace(tracer trace.Tracer) { f.tracer = tracer }

// Open points the fan-out at the queue's events, has ingest's layout broker
// create its subscriptions bucket and attempts stream (notify's NATS user
// may create neither), and re-seals secrets stored under an older key.
func (f *Fanout) Open(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, q *queue.Queue) error {
	f.nc, f.js, f.events, f.replicas = nc, js, q.Events, q.Config().Replicas
	f.layout = queue.NewLayout(js)
	subs := jetstream.KeyValueConfig{
		Bucket: SubscriptionsBucket, Description: "vodpipe webhook subscriptions", History: 1,
		Storage: jetstream.FileStorage, Replicas: f.replicas, RePublish: queue.SubscriptionsRePublish(),
	}
	f.subsAsked, f.lacksRePublish = subs, false // Open may be tried again
	var err error
	f.subs, err = f.layout.Bucket(ctx, subs)
	if refusedRePublish(err) {
		// An ingest older than 0.10 makes no RePublish: the dispatchers
		// then apply the bucket's writes as published (queue.FollowRepublished)
		// until an ingest that makes it is asked again (askRePublish).
		f.log.Warn("ingest's layout broker makes no RePublish of the subscriptions bucket (an ingest older than notify?); following the bucket's own writes, asking again later", "err", err)
		subs.RePublish = nil
		if f.subs, err = f.layout.Bucket(ctx, subs); err == nil {
			f.lacksRePublish = true
		}
	}
	if err != nil {
		return fmt.Errorf("notify: bucket %s: %w", SubscriptionsBucket, err)
	}
	if f.attempts, err = f.layout.Stream(ctx, jetstream.StreamConfig{
		Name: AttemptsStream, Description: "vodpipe webhook delivery attempts", Subjects: []string{attemptsPrefix + ".>"},
		Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Replicas: f.replicas,
		MaxAge: f.cfg.AttemptsMaxAge, MaxMsgsPerSubject: f.cfg.AttemptsPerSubscription, MaxBytes: f.cfg.AttemptsMaxBytes,
		Discard: jetstream.DiscardOld, AllowDirect: true,
	}); err != nil {
		return fmt.Errorf("notify: stream %s: %w", AttemptsStream, err)
	}
	return f.resealSecrets(ctx)
}

// Routes registers the subscription API and the event stream on mux:
//
//	POST   /v1/subscriptions                  create a webhook subscription (control)
//	GET    /v1/subscriptions                  list (read)
//	GET    /v1/subscriptions/{id}             one (read)
//	DELETE /v1/subscriptions/{id}             delete (control)
//	GET    /v1/subscriptions/{id}/attempts    delivery attempts, newest first (read)
//	POST   /v1/subscriptions/{id}/replay      re-send events from a time range (control)
//	POST   /v1/subscriptions/{id}/enable      re-enable a disabled subscription (control)
//	GET    /v1/events                         server-sent events (read)
func (f *Fanout) Routes(mux *http.ServeMux) {
	for _, r := range f.routes() {
		mux.Handle(r.pattern, httpapi.Authorize(f.keys, r.scope, r.handle))
	}
}

// RouteList is what Routes serves, as "METHOD /path" (docs/notify-openapi.json
// describes exactly these, with the VOD callback).
func (f *Fanout) RouteList() []string {
	var out []string
	for _, r := range f.routes() {
		out = append(out, r.pattern)
	}
	return out
}

type route struct {
	pattern string
	scope   string
	handle  http.HandlerFunc
}

func (f *Fanout) routes() []route {
	return []route{
		{"POST /v1/subscriptions", ScopeControl, f.handleCreate},
		{"GET /v1/subscriptions", ScopeRead, f.handleList},
		{"GET /v1/subscriptions/{id}", ScopeRead, f.handleGet},
		{"DELETE /v1/subscriptions/{id}", ScopeControl, f.handleDelete},
		{"GET /v1/subscriptions/{id}/attempts", ScopeRead, f.handleAttempts},
		{"POST /v1/subscriptions/{id}/replay", ScopeControl, f.handleReplay},
		{"POST /v1/subscriptions/{id}/enable", ScopeControl, f.handleEnable},
		{"POST /v1/subscriptions/{id}/disable", ScopeControl, f.handleDisable},
		{"GET /v1/events", ScopeRead, f.handleEvents},
	}
}

// Ready checks that the subscriptions bucket answers, for /readyz.
func (f *Fanout) Ready(ctx context.Context) error {
	if _, err := f.subs.Status(ctx); err != nil {
		return fmt.Errorf("subscriptions bucket: %w", err)
	}
	return nil
}

// Run delivers webhooks until ctx ends. Deliveries in flight are then handed
// back to JetStream at once, so another replica, or this one restarted,
// takes them over without waiting for their ack deadline.
func (f *Fanout) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { f.refreshBacklog(ctx) })
	wg.Go(func() { f.sweepSubscriptions(ctx, sweepInterval) })
	if f.lacksRePublish {
		wg.Go(func() { f.askRePublish(ctx) })
	}
	err := f.disp.run(ctx)
	wg.Wait()
	return err
}

// refusedRePublish tells whether err is a layout broker's refusal of a
// RePublish (an ingest older than 0.10).
func refusedRePublish(err error) bool {
	return err != nil && strings.Contains(err.Error(), "republish")
}

// askRePublish asks the layout broker for the subscriptions bucket's
// RePublish every cfg.RePublishRetry until one makes it (ingest upgraded)
// or ctx ends. The dispatchers take to the republishes as they come.
func (f *Fanout) askRePublish(ctx context.Context) {
	for retry.Sleep(ctx, f.cfg.RePublishRetry) {
		_, err := f.layout.Bucket(ctx, f.subsAsked)
		switch {
		case err == nil:
			f.log.Info("the subscriptions bucket republishes its writes now (ingest made the RePublish); dispatchers follow those")
			return
		case !refusedRePublish(err) && ctx.Err() == nil:
			f.log.Warn("asking ingest again for the subscriptions bucket's RePublish failed; next try in an interval", "err", err)
		}
	}
}

// sweepInterval is how often notify purges the subscriptions bucket's
// deletion markers older than sweepAge, at most sweepBudget a time: the
// bucket keeps a marker of every subscription ever deleted (a subscription
// per job, deleted as the job ends, leaves one a job), and every create
// (which counts the subscriptions), listing and start reads them all.
const (
	sweepInterval = 10 * time.Minute
	sweepAge      = time.Hour
	sweepBudget   = 5000
)

// sweepSubscriptions purges old deletion markers of the subscriptions
// bucket now and every interval after, until ctx ends (every replica
// sweeps; a second sweep finds nothing left).
func (f *Fanout) sweepSubscriptions(ctx context.Context, interval time.Duration) {
	retry.Every(ctx, interval, func() {
		n, err := queue.SweepBucket(ctx, f.nc, SubscriptionsBucket, sweepAge, sweepBudget)
		switch {
		case err != nil && ctx.Err() == nil:
			f.log.Warn("sweep of deleted subscriptions' markers failed; next try in an interval", "err", err)
		case n > 0:
			f.log.Info("sweep: markers of deleted subscriptions purged", "purged", n)
		}
	})
}

// Delivery outcomes, the label values of vodpipe_notify_deliveries_total
// and of attempt records.
const (
	OutcomeDelivered = "delivered" // 2xx
	OutcomeRetry     = "retry"     // failed, another attempt is scheduled
	OutcomeExhausted = "exhausted" // failed, no attempt left
	OutcomeGone      = "gone"      // 410 Gone: the subscription is disabled
)

// metrics are the fan-out's Prometheus metrics.
type metrics struct {
	deliveries *prometheus.CounterVec
	attempt    prometheus.Histogram
	lag        prometheus.Histogram
	backlog    *prometheus.GaugeVec
	inFlight   *prometheus.GaugeVec
	sseClients prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vodpipe_notify_deliveries_total",
			Help: "Webhook delivery attempts, by outcome (delivered, retry, exhausted, gone)."}, []string{"outcome"}),
		attempt: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vodpipe_notify_delivery_attempt_seconds",
			Help: "Duration of one webhook delivery attempt.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vodpipe_notify_delivery_lag_seconds",
			Help: "Time from an event's publication to its successful delivery.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vodpipe_notify_subscription_backlog",
			Help: "Events not yet delivered to a subscription (its consumer's NumPending)."}, []string{"subscription"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vodpipe_notify_subscription_in_flight",
			Help: "Events being delivered or waiting for a retry (its consumer's NumAckPending)."}, []string{"subscription"}),
		sseClients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vodpipe_notify_sse_clients",
			Help: "Open server-sent event streams."}),
	}
	// Every outcome is exported from the start at 0, so rate() and
	// increase() see the first one (a series born at 1 has no rise).
	for _, o := range []string{OutcomeDelivered, OutcomeRetry, OutcomeExhausted, OutcomeGone} {
		m.deliveries.WithLabelValues(o)
	}
	reg.MustRegister(m.deliveries, m.attempt, m.lag, m.backlog, m.inFlight, m.sseClients)
	return m
}
