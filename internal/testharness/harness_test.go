package testharness

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestNATSAndRedisTogether(t *testing.T) {
	n := StartNATS(t)
	r := StartRedis(t)
	ctx := t.Context()

	js := n.JetStream(t)
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.one", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, "t.one")
	if err != nil {
		t.Fatal(err)
	}
	rc := r.Client(t)
	if err := rc.Set(ctx, "k", msg.Data, 0).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := rc.Get(ctx, "k").Result()
	if err != nil || got != "hello" {
		t.Fatalf("redis get = %q, %v", got, err)
	}
	// JetStream wrote its store into our temp dir, not a shared one.
	if _, err := os.Stat(n.StoreDir + "/jetstream"); err != nil {
		t.Fatalf("store dir: %v", err)
	}
	// Never the machine's shared services.
	if r.Addr == "127.0.0.1:6379" || n.URL == "nats://127.0.0.1:4222" {
		t.Fatalf("harness used a shared port: %s %s", r.Addr, n.URL)
	}
}

func TestStopLeavesNothingRunning(t *testing.T) {
	var pid int
	var natsURL string
	t.Run("inner", func(t *testing.T) {
		pid = StartRedis(t).PID()
		natsURL = StartNATS(t).URL
	})
	// The inner test's cleanups have run: the redis process is gone...
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server pid %d still running after cleanup", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// ...and nothing listens on the NATS port any more.
	if nc, err := (&NATS{URL: natsURL}).connectOnce(); err == nil {
		nc.Close()
		t.Fatal("NATS still accepting connections after cleanup")
	}
}

func TestTwoRedisInstancesAreIsolated(t *testing.T) {
	a, b := StartRedis(t), StartRedis(t)
	if a.Addr == b.Addr {
		t.Fatal("same address")
	}
	ctx := t.Context()
	if err := a.Client(t).Set(ctx, "x", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Client(t).Exists(ctx, "x").Result(); err != nil || n != 0 {
		t.Fatalf("key leaked between instances: %d %v", n, err)
	}
}

func TestRedisMissingFailsWithInstallHint(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := RunRedis(t.TempDir())
	if err == nil || err.Error() != RedisInstallHint {
		t.Fatalf("err = %v", err)
	}
}

func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}
