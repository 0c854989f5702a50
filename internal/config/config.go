// Package config holds one envconfig struct per service. Every variable has the
// prefix VODPIPE_; the README's configuration table is generated from these structs.
package config

import (
	"crypto/tls"
	"crypto/x509"
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
		return ReadSecretFile("SECRET_KEY_FILE", c.SecretKeyFile)
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

// NATS is how every service reaches NATS: its URL, at most one way to
// authenticate (credentials file, nkey seed, user and password, or token,
// each read from a file) and optionally TLS with a client certificate.
type NATS struct {
	URL string `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222" desc:"NATS server URL(s), comma-separated"`
	// CredsFile is a NATS credentials file (JWT + NKey); empty for none.
	CredsFile    string `envconfig:"NATS_CREDS" desc:"NATS credentials file (JWT + nkey, decentralized auth; optional)"`
	NkeySeedFile string `envconfig:"NATS_NKEY_SEED_FILE" desc:"file holding the NATS user's nkey seed (optional)"`
	User         string `envconfig:"NATS_USER" desc:"NATS user name, with NATS_PASSWORD_FILE (optional)"`
	PasswordFile string `envconfig:"NATS_PASSWORD_FILE" desc:"file holding the NATS user's password"`
	TokenFile    string `envconfig:"NATS_TOKEN_FILE" desc:"file holding a NATS token (optional)"`
	TLSCA        string `envconfig:"NATS_TLS_CA" desc:"CA certificates (PEM) that verify the NATS server (optional)"`
	TLSCert      string `envconfig:"NATS_TLS_CERT" desc:"client certificate (PEM) presented to NATS, with NATS_TLS_KEY (optional)"`
	TLSKey       string `envconfig:"NATS_TLS_KEY" desc:"private key (PEM) of NATS_TLS_CERT"`
	// InboxPrefix is where replies to this connection land, when its user
	// may subscribe only to inboxes of its own (natsperm.Role.Inbox).
	InboxPrefix string `ignored:"true"`
}

// Options are the connection options every service uses: name, endless
// reconnects, authentication and TLS. Options given in extra come last and
// win. A file that cannot be read, or two ways to authenticate at once, is
// an error naming the variable, never the file's content.
func (n NATS) Options(name string, extra ...nats.Option) ([]nats.Option, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1)}
	if n.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(n.InboxPrefix))
	}
	auth, err := n.auth()
	if err != nil {
		return nil, err
	}
	if auth != nil {
		opts = append(opts, auth)
	}
	tlsOpt, err := n.tls()
	if err != nil {
		return nil, err
	}
	if tlsOpt != nil {
		opts = append(opts, tlsOpt)
	}
	return append(opts, extra...), nil
}

// auth is the one authentication option set, or nil for none.
func (n NATS) auth() (nats.Option, error) {
	var set []string
	for _, v := range []struct{ name, val string }{
		{"NATS_CREDS", n.CredsFile}, {"NATS_NKEY_SEED_FILE", n.NkeySeedFile},
		{"NATS_USER", n.User}, {"NATS_TOKEN_FILE", n.TokenFile},
	} {
		if v.val != "" {
			set = append(set, Prefix+"_"+v.name)
		}
	}
	if len(set) > 1 {
		return nil, fmt.Errorf("config: %s are set: NATS takes one way to authenticate, set only one", strings.Join(set, " and "))
	}
	if n.PasswordFile != "" && n.User == "" {
		return nil, fmt.Errorf("config: %s_NATS_PASSWORD_FILE is set without %s_NATS_USER", Prefix, Prefix)
	}
	switch {
	case n.CredsFile != "":
		if _, err := os.Stat(n.CredsFile); err != nil {
			return nil, fmt.Errorf("config: %s_NATS_CREDS: %w", Prefix, err)
		}
		return nats.UserCredentials(n.CredsFile), nil
	case n.NkeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(n.NkeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("config: %s_NATS_NKEY_SEED_FILE: %w", Prefix, err)
		}
		return o, nil
	case n.User != "":
		if n.PasswordFile == "" {
			return nil, fmt.Errorf("config: %s_NATS_USER is set without %s_NATS_PASSWORD_FILE", Prefix, Prefix)
		}
		pw, err := ReadSecretFile("NATS_PASSWORD_FILE", n.PasswordFile)
		if err != nil {
			return nil, err
		}
		return nats.UserInfo(n.User, pw), nil
	case n.TokenFile != "":
		tok, err := ReadSecretFile("NATS_TOKEN_FILE", n.TokenFile)
		if err != nil {
			return nil, err
		}
		return nats.Token(tok), nil
	}
	return nil, nil
}

// tls is the TLS option (server verification and client certificate), or
// nil when no TLS variable is set.
func (n NATS) tls() (nats.Option, error) {
	if n.TLSCA == "" && n.TLSCert == "" && n.TLSKey == "" {
		return nil, nil
	}
	if (n.TLSCert == "") != (n.TLSKey == "") {
		return nil, fmt.Errorf("config: %s_NATS_TLS_CERT and %s_NATS_TLS_KEY go together: set both or neither", Prefix, Prefix)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if n.TLSCA != "" {
		pem, err := os.ReadFile(n.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("config: %s_NATS_TLS_CA: %w", Prefix, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("config: %s_NATS_TLS_CA holds no PEM certificate", Prefix)
		}
	}
	if n.TLSCert != "" {
		for _, f := range []struct{ name, path string }{{"NATS_TLS_CERT", n.TLSCert}, {"NATS_TLS_KEY", n.TLSKey}} {
			if _, err := os.Stat(f.path); err != nil {
				return nil, fmt.Errorf("config: %s_%s: %w", Prefix, f.name, err)
			}
		}
		cert, err := tls.LoadX509KeyPair(n.TLSCert, n.TLSKey)
		if err != nil {
			// crypto/tls names what is wrong, never the key's bytes.
			return nil, fmt.Errorf("config: %s_NATS_TLS_CERT / %s_NATS_TLS_KEY: %w", Prefix, Prefix, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return nats.Secure(tc), nil
}

// ReadSecretFile reads a one-line secret from the file of the variable
// VODPIPE_<variable>; an empty one is an error. Its errors name the
// variable and the file, never the content.
func ReadSecretFile(variable, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("config: %s_%s: %w", Prefix, variable, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("config: %s_%s: %s is empty", Prefix, variable, path)
	}
	return s, nil
}

// KeyList returns the keys of a list variable (VODPIPE_<variable>) or of
// its file (VODPIPE_<variable>_FILE: comma- or newline-separated), never
// both, blanks dropped, and the variable they came from for the caller's
// errors. None is an empty list; a file without a key is an error. Errors
// name the variables, never a key.
func KeyList(variable string, list []string, file string) (keys []string, from string, err error) {
	name, fileName := Prefix+"_"+variable, Prefix+"_"+variable+"_FILE"
	text := strings.Join(list, ",")
	switch {
	case file != "" && len(list) > 0:
		return nil, "", fmt.Errorf("config: %s and %s are both set: set one", name, fileName)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, "", fmt.Errorf("config: read %s: %w", fileName, err)
		}
		name, text = fileName, string(b)
	}
	for _, k := range strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	if file != "" && len(keys) == 0 {
		return nil, "", fmt.Errorf("config: %s holds no key", fileName)
	}
	return keys, name, nil
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
