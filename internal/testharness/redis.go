package testharness

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/vodpipe/vodpipe/internal/child"
)

// RedisInstallHint says how to get redis-server when it is missing.
const RedisInstallHint = child.RedisInstallHint

// Redis is a redis-server process owned by one test (see child.Redis).
type Redis struct{ *child.Redis }

// StartRedis starts redis-server on a free loopback port, persistence off, and
// stops it by its PID at cleanup. A missing redis-server fails the test.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r, err := RunRedis(t.TempDir(), "--save", "", "--appendonly", "no")
	if err != nil {
		t.Fatalf("testharness: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("testharness: stop redis: %v", err)
		}
	})
	return r
}

// RunRedis starts redis-server in dir with extra arguments. The caller stops it.
func RunRedis(dir string, extra ...string) (*Redis, error) {
	r, err := child.StartRedis(context.Background(), dir, extra...)
	if err != nil {
		return nil, err
	}
	return &Redis{r}, nil
}

// Client returns a go-redis client closed at cleanup.
func (r *Redis) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) { return child.FreePort() }
