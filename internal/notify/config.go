package notify

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vodpipe/vodpipe/internal/apikey"
	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/defaults"
	"github.com/vodpipe/vodpipe/internal/httpserve"
	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/netguard"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/secretbox"
)

// QueueConfig is an alias so the queue's variables embed flat.
type QueueConfig = queue.Config

// Config is notify's whole configuration (prefix VODPIPE_). It has no
// Tencent SecretId/SecretKey: notify never signs uploads. Pull mode uses a
// separate key pair of its own (PullConfig), meant to be a sub-account key
// that may call only vod:PullEvents and vod:ConfirmEvents.
type Config struct {
	natsconf.NATS
	QueueConfig
	PullConfig
	WebhookConfig
	httpserve.Config
	httpserve.StreamConfig

	// HTTPAddr serves the callback, subscription, SSE, health and metrics endpoints.
	HTTPAddr string `envconfig:"NOTIFY_HTTP_ADDR" default:":8081" desc:"listen address of notify's HTTP API"`
	// APIKeys protect the subscription and event APIs (not the VOD callback).
	APIKeys APIKeys `envconfig:"API_KEYS" desc:"API keys, key or name:key[:scope+scope],...; notify needs read (GET) or control (changes)"`
	// MaxBody bounds a subscription API request body.
	MaxBody int64 `envconfig:"NOTIFY_MAX_BODY" default:"65536" desc:"largest subscription API request body in bytes"`

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

	// SSEHeartbeat is the interval of comment lines on idle event streams.
	SSEHeartbeat time.Duration `envconfig:"SSE_HEARTBEAT" default:"15s" desc:"interval of heartbeats on idle server-sent event streams"`
	// BacklogInterval is how often the backlog gauges are refreshed.
	BacklogInterval time.Duration `envconfig:"NOTIFY_BACKLOG_INTERVAL" default:"15s" desc:"refresh interval of the per-subscription backlog gauges"`
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
	WebhookSchedule Schedule `envconfig:"WEBHOOK_RETRY_SCHEDULE" default:"5s,5m,30m,2h,5h,10h,10h" desc:"delays before each retry of a webhook delivery, comma-separated"`
	// WebhookDisableAfter disables a subscription after this many events in
	// a row exhausted every attempt.
	WebhookDisableAfter int `envconfig:"WEBHOOK_DISABLE_AFTER" default:"5" desc:"consecutive events that exhausted every attempt before a subscription is disabled"`
	// WebhookConcurrency bounds the deliveries one notify process runs at once per subscription.
	WebhookConcurrency int `envconfig:"WEBHOOK_CONCURRENCY" default:"16" desc:"deliveries in flight per subscription and notify process"`
	// WebhookMaxInFlight bounds the events of one subscription being
	// delivered or waiting for a retry, across all notify processes.
	WebhookMaxInFlight int `envconfig:"WEBHOOK_MAX_IN_FLIGHT" default:"1000" desc:"events per subscription being delivered or waiting for a retry, across replicas"`
	// WebhookMaxSubscriptions bounds the subscriptions (each is a JetStream consumer).
	WebhookMaxSubscriptions int `envconfig:"WEBHOOK_MAX_SUBSCRIPTIONS" default:"1000" desc:"most webhook subscriptions"`
	// AttemptsMaxAge and AttemptsPerSubscription bound the delivery-attempt log.
	AttemptsMaxAge          time.Duration `envconfig:"WEBHOOK_ATTEMPTS_MAX_AGE" default:"168h" desc:"how long delivery attempts are kept"`
	AttemptsPerSubscription int64         `envconfig:"WEBHOOK_ATTEMPTS_PER_SUBSCRIPTION" default:"1000" desc:"delivery attempts kept per subscription"`
	// WebhookSecretKeys encrypt the signing secrets in the subscriptions
	// bucket, so that NATS never holds them in clear: the first seals, every
	// one opens, so a key is rotated by putting a new one first.
	WebhookSecretKeys     []string `envconfig:"WEBHOOK_SECRET_KEYS" desc:"keys that encrypt webhook signing secrets at rest (AES-256-GCM), comma-separated, each 32 bytes in base64 or hex (openssl rand -base64 32): the first seals, all open, records sealed under another are re-sealed at start; required (prefer WEBHOOK_SECRET_KEYS_FILE)"`
	WebhookSecretKeysFile string   `envconfig:"WEBHOOK_SECRET_KEYS_FILE" desc:"file holding the webhook secret keys, one per line or comma-separated, e.g. a mounted Kubernetes secret"`
}

// Values of CallbackAuth.
const (
	CallbackAuthToken = "token" // ?token= must match CallbackToken
	CallbackAuthNone  = "none"  // the operator authenticates VOD's calls some other way, or accepts anyone's
)

// checkCallbackAuth refuses a configuration that would leave the callback
// open without an operator saying so.
func (c *Config) checkCallbackAuth() error {
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

// secretBox is the box of WebhookSecretKeys or WebhookSecretKeysFile. Its
// errors name the variable, never a key.
func (c *WebhookConfig) secretBox() (*secretbox.Box, error) {
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

// withDefaults fills c's unset fields (zero or negative) from their default
// tags; a negative correlation wait means none.
func (c *Config) withDefaults() {
	noWait := c.CorrelationWait < 0
	defaults.Fill(c, defaults.NegativeUnset)
	if noWait {
		c.CorrelationWait = 0
	}
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

// Scopes notify checks: read for GET requests and the event stream,
// control for creating, deleting and replaying subscriptions. The other
// scopes are ingest's; a key may carry them (one API_KEYS serves both).
const (
	ScopeRead    = apikey.ScopeRead
	ScopeControl = apikey.ScopeControl
)

// APIKeys are bearer keys, kept as SHA-256 hashes only (see internal/apikey).
type APIKeys = apikey.Keys
