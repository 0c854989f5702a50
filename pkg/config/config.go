// Package config holds one envconfig struct per service. Every variable has the
// prefix VODPIPE_; the README's configuration table is generated from these structs.
package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"
)

// Prefix is the environment prefix of every variable.
const Prefix = "VODPIPE"

// Credentials are the Tencent Cloud API keys. Only the signature service reads
// them; no other service's config embeds this struct.
type Credentials struct {
	SecretID      string `envconfig:"SECRET_ID" desc:"Tencent Cloud SecretId used to sign upload signatures"`
	SecretKey     string `envconfig:"SECRET_KEY" desc:"Tencent Cloud SecretKey (prefer SECRET_KEY_FILE)"`
	SecretKeyFile string `envconfig:"SECRET_KEY_FILE" desc:"file holding the SecretKey, e.g. a mounted Kubernetes secret"`
}

// Key returns the SecretKey, read from SecretKeyFile when that is set.
func (c Credentials) Key() (string, error) {
	if c.SecretKeyFile != "" {
		b, err := os.ReadFile(c.SecretKeyFile)
		if err != nil {
			return "", fmt.Errorf("config: read SECRET_KEY_FILE: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return c.SecretKey, nil
}

// Load fills spec from the environment with the VODPIPE_ prefix.
func Load(spec any) error { return LoadPrefix(Prefix, spec) }

// LoadPrefix fills spec from the environment with prefix. An error names the
// variable and what is wrong, never the value: values hold secrets, and an
// error is logged. A decoder's error is shown only when it is a [Reasoner].
func LoadPrefix(prefix string, spec any) error {
	err := envconfig.Process(prefix, spec)
	var pe *envconfig.ParseError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		reason := "is not a valid " + pe.TypeName
		var r Reasoner
		if errors.As(pe.Err, &r) {
			reason = r.Reason()
		}
		return &VarError{Var: pe.KeyName, Reason: reason}
	}
	return fmt.Errorf("config: %w", err)
}

// Reasoner is an error from a variable's Decode method that can say what is
// wrong without quoting any part of the value.
type Reasoner interface {
	error
	Reason() string
}

// VarError is an environment variable that could not be read.
type VarError struct {
	Var    string // e.g. VODPIPE_API_KEYS
	Reason string // what is wrong, without the value
}

func (e *VarError) Error() string { return "config: " + e.Var + ": " + e.Reason }

// NATS is how every service reaches NATS.
type NATS struct {
	URL string `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222" desc:"NATS server URL(s), comma-separated"`
	// CredsFile is a NATS credentials file (JWT + NKey); empty for none.
	CredsFile string `envconfig:"NATS_CREDS" desc:"NATS credentials file (optional)"`
}

// Options are the connection options every service uses: name, endless
// reconnects and credentials. Options given in extra come last and win.
func (n NATS) Options(name string, extra ...nats.Option) []nats.Option {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1)}
	if n.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(n.CredsFile))
	}
	return append(opts, extra...)
}

// Redis is how workers reach Redis. One address: a single node; several: a
// cluster; with MasterName: Sentinel.
type Redis struct {
	URL        string   `envconfig:"REDIS_URL" desc:"redis://[:password@]host:port/db; empty: resume state in a JetStream key-value bucket"`
	Addrs      []string `envconfig:"REDIS_ADDRS" desc:"Redis Cluster or Sentinel addresses, comma-separated (instead of REDIS_URL)"`
	MasterName string   `envconfig:"REDIS_MASTER_NAME" desc:"Sentinel master name"`
	Password   string   `envconfig:"REDIS_PASSWORD" desc:"Redis password (with REDIS_ADDRS)"`
	TLS        bool     `envconfig:"REDIS_TLS" desc:"use TLS to Redis (with REDIS_ADDRS)"`
}

// Enabled reports whether Redis is configured.
func (r Redis) Enabled() bool { return r.URL != "" || len(r.Addrs) > 0 }
