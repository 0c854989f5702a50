//go:build unix

package child

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// The chaos run restarts Redis with its append-only file on: what was
// written before the restart must be there after it, on the same address.
func TestRedisRestartKeepsAppendOnlyData(t *testing.T) {
	ctx := context.Background()
	r, err := StartRedis(ctx, t.TempDir(), "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	before := r.PID()
	if err := r.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if r.PID() == before {
		t.Fatalf("restart kept pid %d", before)
	}
	if err := syscall.Kill(before, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the first redis-server (pid %d) still runs: %v", before, err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("after restart: %q, %v; want v", got, err)
	}
	r.Kill()
	if err := syscall.Kill(r.PID(), 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("killed redis-server (pid %d) still runs: %v", r.PID(), err)
	}
}

func TestStartRedisSaysHowToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := StartRedis(context.Background(), t.TempDir())
	if err == nil || err.Error() != RedisInstallHint {
		t.Fatalf("err %v, want the install hint", err)
	}
}

// FreePort hands out ports below the kernel's ephemeral range (where no
// outgoing connection takes them), never the same one twice in a process,
// each free to listen on.
func TestFreePortAvoidsEphemeralPortsAndRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		// A kernel whose ephemeral range starts too low to leave room below
		// it gets ports from anywhere: only the range's own check is skipped.
		if ephemeralStart()-portFloor > 1000 && (p < portFloor || p >= ephemeralStart()) {
			t.Fatalf("port %d outside [%d, %d)", p, portFloor, ephemeralStart())
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", Loopback(p))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		l.Close()
	}
}
