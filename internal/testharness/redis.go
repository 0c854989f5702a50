package testharness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vodpipe/vodpipe/internal/child"
)

// RedisInstallHint says how to get redis-server when it is missing.
const RedisInstallHint = "redis-server is not on PATH: install it with `apt-get install -y redis-server` (.ci/run does this on a clean machine)"

// Redis is a redis-server process owned by one test.
type Redis struct {
	Addr string
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

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
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New(RedisInstallHint)
	}
	var lastErr error
	// A free port can be taken between our probe and redis binding it: retry a few times.
	for range 5 {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		r, err := startRedis(bin, dir, port, extra)
		if err == nil {
			return r, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startRedis(bin, dir string, port int, extra []string) (*Redis, error) {
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--daemonize", "no", "--loglevel", "warning"}, extra...)
	cmd := exec.Command(bin, args...)
	log := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, so a test's Ctrl-C does not race our orderly
	// stop, and (on Linux) killed with its parent, so a killed test or
	// bench leaves no redis-server behind.
	cmd.SysProcAttr = child.SysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir, cmd: cmd, done: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); close(r.done) }()

	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-r.done:
			return nil, fmt.Errorf("redis-server exited at start: %s", log.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return r, nil
		}
		if time.Now().After(deadline) {
			_ = r.Stop()
			return nil, fmt.Errorf("redis-server on %s not ready: %w", r.Addr, err)
		}
		select {
		case <-r.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PID is the redis-server process id.
func (r *Redis) PID() int { return r.cmd.Process.Pid }

// Stop terminates redis-server and waits for it to exit.
func (r *Redis) Stop() error {
	select {
	case <-r.done:
		return nil
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	return nil
}

// Kill stops redis-server at once with SIGKILL, as a crash would.
func (r *Redis) Kill() {
	_ = r.cmd.Process.Kill()
	<-r.done
}

// Client returns a go-redis client closed at cleanup.
func (r *Redis) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
