package config

import (
	"path/filepath"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/vodpipe/vodpipe/pkg/natsembed"
)

// Every service connects with its name (as the server lists it), endless
// reconnects, and the credentials file when one is set; options passed
// last win.
func TestNATSOptions(t *testing.T) {
	ns, err := natsembed.Start(filepath.Join(t.TempDir(), "nats"), "127.0.0.1", natsserver.RANDOM_PORT)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	cfg := NATS{URL: ns.ClientURL()}

	for _, tc := range []struct {
		extra []nats.Option
		want  string
	}{
		{nil, "vodpipe-test"},
		{[]nats.Option{nats.Name("vodpipe-other")}, "vodpipe-other"},
	} {
		nc, err := nats.Connect(cfg.URL, cfg.Options("vodpipe-test", tc.extra...)...)
		if err != nil {
			t.Fatal(err)
		}
		if nc.Opts.MaxReconnect != -1 {
			t.Errorf("MaxReconnect = %d, want -1 (endless)", nc.Opts.MaxReconnect)
		}
		cid, err := nc.GetClientID()
		if err != nil {
			t.Fatal(err)
		}
		cz, err := ns.Connz(&natsserver.ConnzOptions{CID: cid})
		if err != nil {
			t.Fatal(err)
		}
		if len(cz.Conns) != 1 || cz.Conns[0].Name != tc.want {
			t.Errorf("server lists %+v, want the connection named %q", cz.Conns, tc.want)
		}
		nc.Close()
	}

	withCreds := NATS{URL: cfg.URL, CredsFile: filepath.Join(t.TempDir(), "missing.creds")}
	if _, err := nats.Connect(cfg.URL, withCreds.Options("vodpipe-test")...); err == nil {
		t.Fatal("connected with a credentials file that does not exist: the file was not used")
	}
}
