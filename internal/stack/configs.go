package stack

import (
	"net"
	"time"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/ingest"
	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/internal/upload"
	"github.com/vodpipe/vodpipe/internal/worker"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// Configs are the services' whole configurations. Given as Options.Configs,
// the stack runs each service as configured and owns only what one process
// must (see Start): the NATS connection of every service, the worker's IDs,
// and the values left empty below, which it fills.
//
//   - Ingest.SecretID and its key: when unset, a pair made at start.
//   - Ingest.APIKeys, Notify.APIKeys: when both unset, one key made at start
//     (Stack.APIKey); notify takes ingest's when only those are set.
//   - Ingest.UploadTokenKeys(File): when unset, a key made at start.
//   - Notify.CallbackToken: when unset, a token made at start.
//   - Notify.WebhookSecretKeys(File): when unset, a key made at start.
//   - Worker.VODEndpoint: when empty, the embedded vodsim is VOD and COS
//     (COSDialAddr its address, COSScheme http), and it knows ingest's pair.
//   - Vodsim.CallbackURL: when empty and notify is not in pull mode, notify's.
//   - Vodsim.DataDir: when empty, a folder of Options.DataDir.
type Configs struct {
	Ingest ingest.Config
	Worker worker.Config
	Notify notify.Config
	Vodsim vodsim.Config
}

// LoadConfigs reads every service's configuration from the environment as
// `vodpipe ingest|worker|notify|vodsim` do: the same structs, variables and
// defaults (vodsim's under VODPIPE_VODSIM_).
func LoadConfigs() (*Configs, error) {
	var c Configs
	for _, l := range []struct {
		prefix string
		spec   any
	}{{config.Prefix, &c.Ingest}, {config.Prefix, &c.Worker}, {config.Prefix, &c.Notify}, {vodsim.EnvPrefix, &c.Vodsim}} {
		if err := config.LoadPrefix(l.prefix, l.spec); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// localConfigs are the configurations of a stack given no Configs: a local
// system for the demo, tests and benchmarks, tuned by Options.
func localConfigs(o Options) Configs {
	policy := signer.Policy{MaxValidity: 2 * time.Hour, Procedures: signer.Allow{signer.Any},
		StorageRegions: signer.Allow{signer.Any}, ClassIDs: signer.Allow{signer.Any}, SubAppIDs: signer.Allow{signer.Any}}
	if o.Policy != nil {
		policy = *o.Policy
	}
	c := Configs{
		Ingest: ingest.Config{
			QueueConfig: o.Queue,
			Credentials: config.Credentials{SecretID: o.SecretID, SecretKey: o.SecretKey},
			Policy:      policy,
			BatchMax:    1000, MaxBody: 64 << 20, SignRate: 50, SignBurst: 100,
			UploadTokenConfig: ingest.UploadTokenConfig{UploadTokenMaxTTL: 12 * time.Hour},
			PageConfig:        ingest.PageConfig{UploadPage: true, WebDir: "web"},
			HTTPAddr:          "127.0.0.1:0",
		},
		Worker: worker.Config{
			QueueConfig:   o.Queue,
			UploadConfig:  upload.Config{PartSize: o.PartSize, Concurrency: o.Concurrency},
			SourcesConfig: upload.SourcesConfig{Root: o.SourceRoot, AllowPrivate: !o.RefusePrivateSources},
			Jobs:          o.JobsPerWorker, LeaseTTL: o.LeaseTTL, ShutdownGrace: 10 * time.Second,
		},
		Notify: notify.Config{
			QueueConfig: o.Queue,
			FanoutConfig: fanout.Config{WebhookConfig: fanout.WebhookConfig{WebhookAllowPrivate: true, WebhookTimeout: 5 * time.Second,
				WebhookSchedule: fanout.Schedule{500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second, 15 * time.Second}}},
			HTTPAddr: "127.0.0.1:0",
		},
		Vodsim: vodsim.Config{Addr: "127.0.0.1:0"},
	}
	if c.Ingest.SecretID == "" || c.Ingest.SecretKey == "" {
		c.Ingest.Credentials = config.Credentials{}
	}
	if o.RedisURL != "" {
		c.Worker.Redis = config.Redis{URL: o.RedisURL}
	}
	return c
}

// dialable is addr with an unspecified host (":8080", "[::]:8080") made
// 127.0.0.1, so that it can be dialled and put in a link.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
