// Package natsembed runs a NATS server with JetStream inside the process, for
// the all-in-one mode and for tests.
package natsembed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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

// WithUsers runs the server with users: each role's user holds natsperm's
// permissions for it, the admin every right; nobody else may connect.
func WithUsers(u Users) Option {
	return func(st *settings) error {
		o := st.opts
		if u.AdminPassword == "" {
			return errors.New("natsembed: the admin user has no password")
		}
		o.Users = []*natsserver.User{{Username: AdminUser, Password: u.AdminPassword}}
		for _, r := range natsperm.Roles() {
			pw := u.Passwords[r]
			if pw == "" {
				return fmt.Errorf("natsembed: user %s has no password", r)
			}
			p, err := natsperm.For(r)
			if err != nil {
				return err
			}
			o.Users = append(o.Users, &natsserver.User{Username: string(r), Password: pw, Permissions: serverPermissions(p)})
		}
		return nil
	}
}

// WithOptions lets f adjust the server's options (tests: a token, TLS).
func WithOptions(f func(*natsserver.Options)) Option {
	return func(st *settings) error { f(st.opts); return nil }
}

// WithLogger logs the server's notices, warnings and errors (such as
// permission violations) to l.
func WithLogger(l natsserver.Logger) Option {
	return func(st *settings) error { st.opts.NoLog, st.logger = false, l; return nil }
}

// serverPermissions is p in the server's terms.
func serverPermissions(p natsperm.Permissions) *natsserver.Permissions {
	return &natsserver.Permissions{
		Publish:   &natsserver.SubjectPermission{Allow: p.Publish},
		Subscribe: &natsserver.SubjectPermission{Allow: p.Subscribe},
	}
}

func randomPassword() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	return hex.EncodeToString(b)
}
