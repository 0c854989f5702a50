// Package testharness starts the real infrastructure that integration tests talk
// to: an embedded NATS server with JetStream, a redis-server process and vodsim.
// Every server gets a free port and a temporary directory and is stopped by
// t.Cleanup, so tests never touch the machine's shared services.
package testharness

import (
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/natsembed"
)

// NATS is an embedded NATS server with JetStream.
type NATS struct {
	Server   *natsserver.Server
	URL      string
	StoreDir string
}

// StartNATS starts an in-process NATS server with JetStream on a random port,
// its store in a fresh temporary directory; it is shut down at cleanup.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	dir := t.TempDir()
	n, err := RunNATS(dir)
	if err != nil {
		t.Fatalf("testharness: start NATS: %v", err)
	}
	t.Cleanup(n.Shutdown)
	return n
}

// RunNATS starts an embedded JetStream server with its store in dir. The caller shuts it down.
func RunNATS(dir string) (*NATS, error) {
	s, err := natsembed.Start(dir, "127.0.0.1", natsserver.RANDOM_PORT)
	if err != nil {
		return nil, err
	}
	return &NATS{Server: s, URL: s.ClientURL(), StoreDir: dir}, nil
}

// Shutdown stops the server and waits for it.
func (n *NATS) Shutdown() {
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
}

// Connect returns a client connection closed at cleanup.
func (n *NATS) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(n.URL, nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("testharness: connect NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a fresh connection.
func (n *NATS) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(n.Connect(t))
	if err != nil {
		t.Fatalf("testharness: jetstream: %v", err)
	}
	return js
}

func (n *NATS) connectOnce() (*nats.Conn, error) {
	return nats.Connect(n.URL, nats.NoReconnect(), nats.Timeout(time.Second))
}

// CountMessages counts the messages published on subject (wildcards allowed)
// from now on, e.g. a KV bucket's direct gets on "$JS.API.DIRECT.GET.KV_<bucket>.>".
// The returned func reports the count of everything published before it was called
// (up to 65536 messages, the subscription's channel: enough for counting a test's calls).
func (n *NATS) CountMessages(t testing.TB, subject string) func() int64 {
	t.Helper()
	spy := n.Connect(t)
	// A synchronous subscription: its client queues each message as it
	// reads it, in order with the PONG that ends a Flush, where a callback
	// could still be on its way after the Flush returned.
	sub, err := spy.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() int64 {
		t.Helper()
		// A round trip on the spy's connection: the server has handed it
		// everything routed to it before, and the client has queued it.
		if err := spy.Flush(); err != nil {
			t.Fatal(err)
		}
		msgs, _, err := sub.Pending()
		if err != nil {
			t.Fatal(err)
		}
		return int64(msgs)
	}
}

// WaitFor polls cond until it holds, failing the test when d passes first.
// For conditions nothing can signal (another process's state, a server's
// counters); it never stands in for a condition that could be waited on.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ConnectWith connects as a service would with cfg (its user, its TLS),
// plus extra options; the connection is closed at cleanup.
func ConnectWith(t testing.TB, cfg natsconf.NATS, extra ...nats.Option) *nats.Conn {
	t.Helper()
	opts, err := cfg.Options(t.Name(), extra...)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
