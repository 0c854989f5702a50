// Package natsconf is how every service reaches NATS: its URL, one way to
// authenticate, TLS, and the connection options vodpipe's services share.
// It is apart from internal/config so that what reads configuration
// without NATS (vodsim) does not pull in the NATS client.
package natsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vodpipe/vodpipe/internal/config"
)

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
	// PingInterval is how often the client asks the server for a pong; two
	// unanswered and the connection counts as lost, and the client moves to
	// another server of the URL list. A server gone silent (a partition, a
	// half-open connection) is left in about three intervals (NATS's own
	// default, 2 minutes, would take six).
	PingInterval time.Duration `envconfig:"NATS_PING_INTERVAL" default:"10s" desc:"how often the NATS client checks that the server answers (a silent server is left after about three)"`
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
	if n.PingInterval > 0 {
		opts = append(opts, nats.PingInterval(n.PingInterval), nats.MaxPingsOutstanding(2))
	}
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
			set = append(set, config.Prefix+"_"+v.name)
		}
	}
	if len(set) > 1 {
		return nil, fmt.Errorf("natsconf: %s are set: NATS takes one way to authenticate, set only one", strings.Join(set, " and "))
	}
	if n.PasswordFile != "" && n.User == "" {
		return nil, fmt.Errorf("natsconf: %s_NATS_PASSWORD_FILE is set without %s_NATS_USER", config.Prefix, config.Prefix)
	}
	switch {
	case n.CredsFile != "":
		if _, err := os.Stat(n.CredsFile); err != nil {
			return nil, fmt.Errorf("natsconf: %s_NATS_CREDS: %w", config.Prefix, err)
		}
		return nats.UserCredentials(n.CredsFile), nil
	case n.NkeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(n.NkeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("natsconf: %s_NATS_NKEY_SEED_FILE: %w", config.Prefix, err)
		}
		return o, nil
	case n.User != "":
		if n.PasswordFile == "" {
			return nil, fmt.Errorf("natsconf: %s_NATS_USER is set without %s_NATS_PASSWORD_FILE", config.Prefix, config.Prefix)
		}
		pw, err := config.ReadSecretFile("NATS_PASSWORD_FILE", n.PasswordFile)
		if err != nil {
			return nil, err
		}
		return nats.UserInfo(n.User, pw), nil
	case n.TokenFile != "":
		tok, err := config.ReadSecretFile("NATS_TOKEN_FILE", n.TokenFile)
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
		return nil, fmt.Errorf("natsconf: %s_NATS_TLS_CERT and %s_NATS_TLS_KEY go together: set both or neither", config.Prefix, config.Prefix)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if n.TLSCA != "" {
		pem, err := os.ReadFile(n.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("natsconf: %s_NATS_TLS_CA: %w", config.Prefix, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("natsconf: %s_NATS_TLS_CA holds no PEM certificate", config.Prefix)
		}
	}
	if n.TLSCert != "" {
		for _, f := range []struct{ name, path string }{{"NATS_TLS_CERT", n.TLSCert}, {"NATS_TLS_KEY", n.TLSKey}} {
			if _, err := os.Stat(f.path); err != nil {
				return nil, fmt.Errorf("natsconf: %s_%s: %w", config.Prefix, f.name, err)
			}
		}
		cert, err := tls.LoadX509KeyPair(n.TLSCert, n.TLSKey)
		if err != nil {
			// crypto/tls names what is wrong, never the key's bytes.
			return nil, fmt.Errorf("natsconf: %s_NATS_TLS_CERT / %s_NATS_TLS_KEY: %w", config.Prefix, config.Prefix, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return nats.Secure(tc), nil
}
