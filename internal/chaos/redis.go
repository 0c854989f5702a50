package chaos

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/testharness"
)

// redisServer is a redis-server process with its append-only file on, so a
// restart keeps the resume state.
type redisServer struct {
	bin, dir string
	port     int
	proc     *child.Process
}

func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server is not on PATH: install it with `apt-get install -y redis-server`")
	}
	var lastErr error
	for range 5 { // the free port can be taken before redis binds it
		port, err := testharness.FreePort()
		if err != nil {
			return nil, err
		}
		r := &redisServer{bin: bin, dir: dir, port: port}
		if lastErr = r.start(ctx); lastErr == nil {
			return r, nil
		}
	}
	return nil, lastErr
}

// Addr is host:port.
func (r *redisServer) Addr() string { return loopback(r.port) }

// start (re)starts redis-server on its port and folder and waits for PING.
func (r *redisServer) start(ctx context.Context) error {
	cmd := exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--daemonize", "no", "--loglevel", "warning", "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	p, err := child.Start(cmd, filepath.Join(r.dir, "redis.log"))
	if err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	r.proc = p
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p.Exited() {
			return fmt.Errorf("redis-server exited at start: %s", p.LogTail(1024))
		}
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.Kill()
			return fmt.Errorf("redis-server on %s not ready: %w", r.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restart stops redis-server (SIGTERM) and starts it again on the same port and files.
func (r *redisServer) restart(ctx context.Context) error {
	r.proc.Stop(5 * time.Second)
	return r.start(ctx)
}

func (r *redisServer) stop() {
	if r.proc != nil {
		r.proc.Stop(5 * time.Second)
	}
}
