package notify

import (
	"go.opentelemetry.io/otel/trace"

	"github.com/vodpipe/vodpipe/internal/apikey"
	"github.com/vodpipe/vodpipe/internal/defaults"
	"github.com/vodpipe/vodpipe/internal/httpserve"
	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/internal/notify/intake"
	"github.com/vodpipe/vodpipe/internal/queue"
)

// The parts of notify's configuration, aliased so they embed flat.
type (
	QueueConfig  = queue.Config
	IntakeConfig = intake.Config
	FanoutConfig = fanout.Config
)

// Config is notify's whole configuration (prefix VODPIPE_). It has no
// Tencent SecretId/SecretKey: notify never signs uploads. Pull mode uses a
// separate key pair of its own (intake.PullConfig), meant to be a
// sub-account key that may call only vod:PullEvents and vod:ConfirmEvents.
type Config struct {
	natsconf.NATS
	QueueConfig
	IntakeConfig
	FanoutConfig
	httpserve.Config
	httpserve.StreamConfig

	// HTTPAddr serves the callback, subscription, SSE, health and metrics endpoints.
	HTTPAddr string `envconfig:"NOTIFY_HTTP_ADDR" default:":8081" desc:"listen address of notify's HTTP API"`
	// AdminAddr, when set, serves /metrics (and the probes) on a listener of
	// its own, and the API's address serves no /metrics.
	AdminAddr string `envconfig:"NOTIFY_ADMIN_ADDR" desc:"listen address of an admin listener for /metrics and the probes (empty: /metrics on the API's address)"`
	// APIKeys protect the subscription and event APIs (not the VOD callback).
	APIKeys APIKeys `envconfig:"API_KEYS" desc:"API keys, key or name:key[:scope+scope],...; notify needs read (GET) or control (changes)"`
	// TracerProvider takes the spans (tests, the stack); nil: the one the
	// OTEL_* environment asks for (off by default; see internal/tracing).
	TracerProvider trace.TracerProvider `ignored:"true"`
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

// APIKeys are bearer keys, kept as SHA-256 hashes only (see internal/apikey).
type APIKeys = apikey.Keys
