package vodsim

import (
	"fmt"
	"strings"
	"time"
)

// Config configures the emulator. cmd/vodsim fills it from the environment
// (prefix VODPIPE_VODSIM_); tests build it directly.
type Config struct {
	// Addr is the listen address of cmd/vodsim.
	Addr string `envconfig:"ADDR" default:"127.0.0.1:8190" desc:"listen address of the VOD and COS APIs"`
	// TLSAddr, when set, also serves every API over TLS there (browsers reach VOD over https).
	TLSAddr string `envconfig:"TLS_ADDR" desc:"listen address of the same APIs over TLS (empty: none)"`
	// TLSCert and TLSKey are PEM files; empty: a self-signed certificate made at start.
	TLSCert string `envconfig:"TLS_CERT" desc:"TLS certificate file (PEM); empty: self-signed at start"`
	TLSKey  string `envconfig:"TLS_KEY" desc:"TLS key file (PEM)"`
	// Apps maps SecretId to SecretKey, written "id:key,id2:key2".
	Apps Apps `envconfig:"APPS" default:"AKIDvodsimdemo:vodsim-demo-secret-key" desc:"accepted API keys, secretId:secretKey,..."`
	// AppID is the VOD application id (also the storage app id of the buckets).
	AppID int64 `envconfig:"APP_ID" default:"1250000000" desc:"VOD application id"`
	// DataDir holds uploaded objects; empty means a temporary directory.
	DataDir string `envconfig:"DATA_DIR" desc:"where uploaded objects are stored (default: a temporary directory)"`
	// Discard keeps only sizes and checksums of uploads, for benchmarks.
	Discard bool `envconfig:"DISCARD" desc:"keep no object bytes, only sizes and checksums (benchmarks)"`
	// CallbackURL receives NewFileUpload events (normal callback mode). Empty: events
	// wait for the pull API (reliable callback mode).
	CallbackURL string `envconfig:"CALLBACK_URL" desc:"URL that receives NewFileUpload callbacks; empty = pull mode"`
	// CallbackAttempts bounds deliveries of one event.
	CallbackAttempts int `envconfig:"CALLBACK_ATTEMPTS" default:"8" desc:"delivery attempts per callback"`
	// CallbackBackoff is the first retry delay, doubled per attempt.
	CallbackBackoff time.Duration `envconfig:"CALLBACK_BACKOFF" default:"200ms" desc:"first callback retry delay (doubles)"`
	// CredentialLifetime is the validity of temporary COS credentials.
	CredentialLifetime time.Duration `envconfig:"CREDENTIAL_LIFETIME" default:"30m" desc:"validity of temporary COS credentials"`
	// SessionLifetime is how long a vodSessionKey can be resumed.
	SessionLifetime time.Duration `envconfig:"SESSION_LIFETIME" default:"24h" desc:"how long an upload session can be resumed"`
	// Regions are the storage regions the app may use; the first is the default.
	Regions []string `envconfig:"REGIONS" default:"ap-guangzhou,ap-chongqing,ap-shanghai" desc:"storage regions; the first is the default"`
	// SubApps are the app's sub-applications: a signature's vodSubAppId must
	// be one (0, the main app, always is), as VOD refuses another.
	SubApps []uint64 `envconfig:"SUB_APPS" desc:"sub-application ids of the app (a signature's vodSubAppId); empty: the main app only"`
	// Procedures are the task flows that exist.
	Procedures []string `envconfig:"PROCEDURES" default:"LongVideoPreset,SimpleAesEncryptPreset" desc:"task flows that exist"`
	// ClockOffset shifts vodsim's clock, to test clock skew.
	ClockOffset time.Duration `envconfig:"CLOCK_OFFSET" desc:"shift of vodsim's clock against the machine's"`
	// MediaDomain is the host of media URLs.
	MediaDomain string `envconfig:"MEDIA_DOMAIN" desc:"host of media URLs (default <appid>.vod2.myqcloud.com)"`
	// Faults are injected from the start; the admin endpoint changes them at run time.
	Faults FaultConfig `ignored:"true"`
	// Clock replaces time.Now (tests move it forward); ClockOffset still applies.
	Clock func() time.Time `ignored:"true"`
	// FaultsJSON is Faults as JSON, for the environment.
	FaultsJSON string `envconfig:"FAULTS" desc:"fault injection as JSON, same shape as PUT /vodsim/faults"`
}

// Apps maps SecretId to SecretKey.
type Apps map[string]string

// Decode implements envconfig.Decoder for "id:key,id2:key2".
func (a *Apps) Decode(s string) error {
	m := Apps{}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		id, key, ok := strings.Cut(pair, ":")
		if !ok || id == "" || key == "" {
			return fmt.Errorf("vodsim: app %q is not secretId:secretKey", redactPair(pair))
		}
		m[id] = key
	}
	*a = m
	return nil
}

// SecretKey implements vod.SecretKeys.
func (a Apps) SecretKey(id string) (string, bool) {
	k, ok := a[id]
	return k, ok
}

func redactPair(p string) string {
	id, _, _ := strings.Cut(p, ":")
	return id + ":***"
}

func (c *Config) withDefaults() {
	if c.AppID == 0 {
		c.AppID = 1250000000
	}
	if c.CallbackAttempts == 0 {
		c.CallbackAttempts = 8
	}
	if c.CallbackBackoff == 0 {
		c.CallbackBackoff = 200 * time.Millisecond
	}
	if c.CredentialLifetime == 0 {
		c.CredentialLifetime = 30 * time.Minute
	}
	if c.SessionLifetime == 0 {
		c.SessionLifetime = 24 * time.Hour
	}
	if len(c.Regions) == 0 {
		c.Regions = []string{"ap-guangzhou", "ap-chongqing", "ap-shanghai"}
	}
	if c.Procedures == nil {
		c.Procedures = []string{"LongVideoPreset", "SimpleAesEncryptPreset"}
	}
	if c.MediaDomain == "" {
		c.MediaDomain = fmt.Sprintf("%d.vod2.myqcloud.com", c.AppID)
	}
}

// regionShort is the short region code VOD answers in storageRegion.
func regionShort(region string) string {
	switch region {
	case "ap-guangzhou":
		return "gzp"
	case "ap-chongqing":
		return "cq"
	case "ap-shanghai":
		return "sh"
	case "ap-beijing":
		return "bj"
	}
	return strings.ReplaceAll(strings.TrimPrefix(region, "ap-"), "-", "")
}
