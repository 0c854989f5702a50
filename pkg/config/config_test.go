package config

import (
	"path/filepath"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/vodpipe/vodpipe/pkg/natsembed"
)

// An in-process connection reaches the embedded server although the URL
// leads nowhere; without it the same config cannot connect.
func TestNATSOptionsConnectInProcess(t *testing.T) {
	ns, err := natsembed.Start(filepath.Join(t.TempDir(), "nats"), "127.0.0.1", natsserver.RANDOM_PORT)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nowhere := "nats://127.0.0.1:1"

	if nc, err := nats.Connect(nowhere, NATS{URL: nowhere}.Options("test", nats.MaxReconnects(0))...); err == nil {
		nc.Close()
		t.Fatal("connected to nowhere without an in-process server")
	}
	nc, err := nats.Connect(nowhere, NATS{URL: nowhere, InProcess: ns}.Options("test")...)
	if err != nil {
		t.Fatalf("in-process connect: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("ping")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("ping", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("no message over the in-process connection: %v", err)
	}
	if got := ns.NumClients(); got != 1 {
		t.Errorf("server has %d clients, want 1", got)
	}
}
