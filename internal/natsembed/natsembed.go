// Package natsembed runs a NATS server with JetStream inside the process, for
// the all-in-one mode and for tests.
package natsembed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/vodpipe/vodpipe/internal/natsperm"
)

// Option adjusts the embedded server.
type Option func(*settings) error

// settings are what Options adjust.
type settings struct {
	opts   *natsserver.Options
	logger natsserver.Logger
}

// Start starts an embedded NATS server with JetStream, its store in dir.
// Without options anyone may connect and do anything; WithUsers guards it.
func Start(dir, host string, port int, opts ...Option) (*natsserver.Server, error) {
	o := &natsserver.Options{
		ServerName: "vodpipe-embedded", Host: host, Port: port, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true, MaxPayload: 8 << 20, JetStreamMaxMemory: 256 << 20, JetStreamMaxStore: 8 << 30,
	}
	st := &settings{opts: o}
	for _, opt := range opts {
		if err := opt(st); err != nil {
			return nil, err
		}
	}
	ns, err := natsserver.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("natsembed: NATS: %w", err)
	}
	if st.logger != nil {
		ns.SetLogger(st.logger, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("natsembed: embedded NATS did not become ready")
	}
	return ns, nil
}

// AdminUser is the user with every right that Users adds for inspection:
// tests and the stack's own checks read streams with it. No service connects
// with it.
const AdminUser = "admin"

// Users are the passwords of a guarded server's users: one per natsperm
// role, named after it, and AdminUser.
type Users struct {
	Passwords     map[natsperm.Role]string
	AdminPassword string
}

// NewUsers returns Users with a random password each, for one server's life.
func NewUsers() Users {
	u := Users{Passwords: map[natsperm.Role]string{}, AdminPassword: randomPassword()}
	for _, r := range natsperm.Roles() {
		u.Passwords[r] = randomPassword()
	}
	return u
}

// WithUsers runs the server with users in natsperm's accounts: each role's
// user in its account with natsperm's permissions, the admin with every
// right in the shared account; nobody else may connect. It loads the very
// configuration `vodpipe nats-config` prints, the passwords given as its
// variables.
func WithUsers(u Users) Option {
	return func(st *settings) error {
		if u.AdminPassword == "" {
			return errors.New("natsembed: the admin user has no password")
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s: %q\n", adminPasswordVar, u.AdminPassword)
		for _, r := range natsperm.Roles() {
			pw := u.Passwords[r]
			if pw == "" {
				return fmt.Errorf("natsembed: user %s has no password", r)
			}
			fmt.Fprintf(&b, "%s: %q\n", natsperm.PasswordVar(r), pw)
		}
		if err := natsperm.WriteServerConfig(&b, natsperm.ConfigUser{Name: AdminUser, PasswordVar: adminPasswordVar}); err != nil {
			return err
		}
		if err := st.opts.ProcessConfigString(b.String()); err != nil {
			return fmt.Errorf("natsembed: accounts: %w", err)
		}
		return nil
	}
}

const adminPasswordVar = "VODPIPE_NATS_ADMIN_PASSWORD"

// WithOptions lets f adjust the server's options (tests: a token, TLS).
func WithOptions(f func(*natsserver.Options)) Option {
	return func(st *settings) error { f(st.opts); return nil }
}

// WithLogger logs the server's notices, warnings and errors (such as
// permission violations) to l.
func WithLogger(l natsserver.Logger) Option {
	return func(st *settings) error { st.opts.NoLog, st.logger = false, l; return nil }
}

func randomPassword() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	return hex.EncodeToString(b)
}
