package natsperm_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/vodpipe/vodpipe/internal/natsperm"
)

// nats-server loads the printed configuration, with the passwords from its
// environment, and gives every role exactly natsperm's permissions. The
// file itself holds no password.
func TestServerConfigLoads(t *testing.T) {
	var b bytes.Buffer
	if err := natsperm.WriteServerConfig(&b); err != nil {
		t.Fatal(err)
	}
	for _, r := range natsperm.Roles() {
		t.Setenv(natsperm.PasswordVar(r), "pw-of-"+string(r))
	}
	if strings.Contains(b.String(), "pw-of-") {
		t.Fatal("the configuration holds a password")
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := natsserver.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server refuses the configuration: %v\n%s", err, b.String())
	}
	if len(opts.Users) != len(natsperm.Roles()) {
		t.Fatalf("%d users, want %d", len(opts.Users), len(natsperm.Roles()))
	}
	for _, u := range opts.Users {
		r := natsperm.Role(u.Username)
		want, err := natsperm.For(r)
		if err != nil {
			t.Fatal(err)
		}
		p := u.Permissions
		if u.Password != "pw-of-"+string(r) || p == nil || !slices.Equal(p.Publish.Allow, want.Publish) ||
			!slices.Equal(p.Subscribe.Allow, want.Subscribe) || p.Response != nil {
			t.Errorf("user %s: password %t, permissions %+v, want %+v", r, u.Password == "pw-of-"+string(r), p, want)
		}
	}
}
