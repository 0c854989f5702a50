// Package intake is notify's first job: VOD's events in. It receives VOD's
// NewFileUpload and ProcedureStateChanged events (normal callbacks on POST
// /v1/vod/callback, or pulled with PullEvents/ConfirmEvents), correlates
// them to jobs by FileId (or by the media file's storage path) and
// publishes each once on the EVENTS stream. Fan-out to subscribers is
// package fanout's.
package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vodpipe/vodpipe/internal/queue"
)

// VODEventsBucket remembers VOD events already published, to drop VOD's repeats.
// (ingest's layout broker creates it: see queue.Layout).
const VODEventsBucket = queue.VODEventsBucket

// Config is the intake's part of notify's configuration (prefix VODPIPE_).
type Config struct {
	PullConfig

	// CallbackToken must be given as ?token= on /v1/vod/callback: VOD does
	// not sign its normal callbacks, so a secret in the configured callback
	// URL is the only way to tell VOD's calls from anyone's.
	CallbackToken string `envconfig:"CALLBACK_TOKEN" desc:"shared secret VOD's callback URL carries as ?token=; required unless CALLBACK_AUTH=none"`
	// CallbackAuth is CallbackAuthToken (the default) or CallbackAuthNone.
	CallbackAuth string `envconfig:"CALLBACK_AUTH" default:"token" desc:"token: /v1/vod/callback requires CALLBACK_TOKEN, and notify refuses to start without one (except in pull mode, where the callback then refuses every call); none: the callback is open to whoever reaches it"`
	// CorrelationWait bounds how long a VOD event waits for its FileId → job
	// mapping, which the worker records right after its commit and so may
	// land after VOD's callback. Negative: no wait.
	CorrelationWait time.Duration `envconfig:"CALLBACK_CORRELATION_WAIT" default:"3s" desc:"how long a VOD event waits for its FileId to be mapped to a job"`
	// VODDedupeTTL is how long a VOD event is remembered to drop VOD's repeated deliveries.
	VODDedupeTTL time.Duration `envconfig:"VOD_EVENT_DEDUPE_TTL" default:"168h" desc:"how long a VOD event is remembered to drop repeated deliveries"`
}

// PullConfig is the reliable-callback (pull) mode, for deployments VOD
// cannot call back: notify polls PullEvents and confirms what it published.
// It is on when PullAPIID is set.
type PullConfig struct {
	// PullAPIID is the SecretId of a CAM sub-account allowed only
	// vod:PullEvents and vod:ConfirmEvents; never the upload key.
	PullAPIID string `envconfig:"PULL_API_ID" desc:"SecretId of a sub-account key allowed only vod:PullEvents/ConfirmEvents; set to enable pull mode"`
	// PullAPIKeyFile holds that key pair's SecretKey.
	PullAPIKeyFile string `envconfig:"PULL_API_KEY_FILE" desc:"file holding the pull key pair's SecretKey, e.g. a mounted Kubernetes secret"`
	// PullEndpoint is VOD's Cloud API endpoint.
	PullEndpoint string `envconfig:"PULL_ENDPOINT" default:"https://vod.tencentcloudapi.com" desc:"VOD Cloud API endpoint for PullEvents/ConfirmEvents"`
	// PullRegion is the Cloud API region parameter (VOD needs none).
	PullRegion string `envconfig:"PULL_REGION" desc:"Cloud API region of the pull calls (optional for VOD)"`
	// PullSubAppID pulls the events of a VOD sub-application.
	PullSubAppID uint64 `envconfig:"PULL_SUB_APP_ID" desc:"VOD sub-application whose events are pulled (optional)"`
	// PullInterval is the pause after a pull that returned nothing.
	PullInterval time.Duration `envconfig:"PULL_INTERVAL" default:"1s" desc:"pause after an empty PullEvents answer"`
	// PullDialAddr, when set, sends every pull connection to this address
	// (vodsim), keeping the endpoint's URL and Host header.
	PullDialAddr string `envconfig:"PULL_DIAL_ADDR" desc:"host:port every pull connection dials (vodsim); empty: real DNS"`
}

// Values of CallbackAuth.
const (
	CallbackAuthToken = "token" // ?token= must match CallbackToken
	CallbackAuthNone  = "none"  // the operator authenticates VOD's calls some other way, or accepts anyone's
)

// CheckCallbackAuth refuses a configuration that would leave the callback
// open without an operator saying so.
func (c *Config) CheckCallbackAuth() error {
	switch c.CallbackAuth {
	case CallbackAuthNone:
		return nil
	case CallbackAuthToken:
		if c.CallbackToken == "" && c.PullAPIID == "" {
			return errors.New("notify: VODPIPE_CALLBACK_TOKEN is not set: set it and put ?token=<it> on VOD's callback URL, " +
				"or set VODPIPE_CALLBACK_AUTH=none to accept callbacks from anyone who reaches /v1/vod/callback")
		}
		return nil
	}
	return errors.New("notify: VODPIPE_CALLBACK_AUTH must be token or none")
}

// Intake takes VOD's events in. Several notify replicas may run one each:
// a VOD event is published once whichever receives it.
type Intake struct {
	cfg     Config
	log     *slog.Logger
	events  *queue.Events
	files   *queue.Files
	watch   *queue.FileWatch
	seen    jetstream.KeyValue
	puller  *puller
	metrics *metrics
}

// New checks cfg and returns an intake, not yet open: its configuration
// errors come before any connection. Pull mode is on when cfg.PullAPIID is
// set. Its metrics are registered with reg.
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Intake, error) {
	if err := cfg.CheckCallbackAuth(); err != nil {
		return nil, err
	}
	in := &Intake{cfg: cfg, log: log, metrics: newMetrics(reg)}
	if cfg.PullAPIID != "" {
		p, err := newPuller(cfg.PullConfig)
		if err != nil {
			return nil, err
		}
		in.puller = p
	}
	return in, nil
}

// Open points the intake at the queue's events and files and creates its
// dedupe bucket; watch is the shared watcher of FileId → job mappings.
func (in *Intake) Open(ctx context.Context, js jetstream.JetStream, q *queue.Queue, watch *queue.FileWatch) error {
	in.events, in.files, in.watch = q.Events, q.Files, watch
	var err error
	if in.seen, err = queue.NewLayout(js).Bucket(ctx, jetstream.KeyValueConfig{
		Bucket: VODEventsBucket, Description: "VOD events already published (dedupe of VOD's repeated deliveries)",
		History: 1, TTL: in.cfg.VODDedupeTTL, Storage: jetstream.FileStorage, Replicas: q.Config().Replicas,
	}); err != nil {
		return fmt.Errorf("notify: bucket %s: %w", VODEventsBucket, err)
	}
	return nil
}

// Pulls reports whether the intake pulls VOD's events (RunPull has work).
func (in *Intake) Pulls() bool { return in.puller != nil }

// metrics are the intake's Prometheus metrics.
type metrics struct {
	vodEvents *prometheus.CounterVec
	pulls     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		vodEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vodpipe_notify_vod_events_total",
			Help: "VOD events received, by source (callback, pull) and outcome (published, published_by_media_url, duplicate, uncorrelated, ignored, invalid, error)."},
			[]string{"source", "outcome"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vodpipe_notify_pull_requests_total",
			Help: "PullEvents and ConfirmEvents calls, by action and outcome."}, []string{"action", "outcome"}),
	}
	// Every outcome is exported from the start at 0, so rate() and
	// increase() see the first one (a series born at 1 has no rise).
	for _, src := range []string{"callback", "pull"} {
		for _, o := range []string{vodPublished, vodByMediaURL, vodUncorrelated, vodDuplicate, vodIgnored, vodInvalid, vodError} {
			m.vodEvents.WithLabelValues(src, o)
		}
	}
	reg.MustRegister(m.vodEvents, m.pulls)
	return m
}

// ProcedureChangedData is the data of vod.procedure_changed, from VOD's
// ProcedureStateChanged event. Event is VOD's ProcedureStateChangeEvent as
// received, for the fields vodpipe does not lift out.
type ProcedureChangedData struct {
	TaskID         string          `json:"taskId"`
	Status         string          `json:"status,omitempty"`
	FileID         string          `json:"fileId,omitempty"`
	ErrCode        int64           `json:"errCode,omitempty"`
	Message        string          `json:"message,omitempty"`
	SessionContext string          `json:"sessionContext,omitempty"`
	Event          json.RawMessage `json:"event"`
}
