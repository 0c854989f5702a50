package child

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisInstallHint says how to get redis-server when it is missing.
const RedisInstallHint = "redis-server is not on PATH: install it with `apt-get install -y redis-server` (.ci/run does this on a clean machine)"

// Redis is a redis-server child process on a loopback port, its files and
// its log (redis.log) in Dir.
type Redis struct {
	Addr string
	Dir  string
	bin  string
	args []string
	proc *Process
}

// StartRedis starts redis-server on a free loopback port with extra
// arguments (e.g. "--save", "", "--appendonly", "no") and waits until it
// answers PING. The caller stops it.
func StartRedis(ctx context.Context, dir string, extra ...string) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New(RedisInstallHint)
	}
	var lastErr error
	// A free port can be taken between the probe and redis binding it (redis
	// then exits at start): retry a few times on another port.
	for range 5 {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		r := &Redis{Addr: Loopback(port), Dir: dir, bin: bin,
			args: append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
				"--daemonize", "no", "--loglevel", "warning"}, extra...)}
		if lastErr = r.start(ctx); lastErr == nil || !errors.Is(lastErr, errExitedAtStart) {
			return r, lastErr
		}
	}
	return nil, lastErr
}

var errExitedAtStart = errors.New("redis-server exited at start")

// start starts redis-server with r's arguments and waits for PING.
func (r *Redis) start(ctx context.Context) error {
	p, err := Start(exec.Command(r.bin, r.args...), filepath.Join(r.Dir, "redis.log"))
	if err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	r.proc = p
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := c.Ping(pctx).Err()
		var info string
		if err == nil {
			info, err = c.Info(pctx, "server").Result()
		}
		cancel()
		if err == nil {
			// The answer must come from this process, not from another
			// redis-server that took the port first.
			if strings.Contains(info, fmt.Sprintf("process_id:%d\r\n", p.Cmd.Process.Pid)) {
				return nil
			}
			err = fmt.Errorf("another redis-server answers on %s", r.Addr)
		}
		if p.Exited() {
			return fmt.Errorf("%w: %s", errExitedAtStart, p.LogTail(1024))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.Kill()
			return fmt.Errorf("redis-server on %s not ready: %w", r.Addr, err)
		}
		select {
		case <-p.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PID is the redis-server process id.
func (r *Redis) PID() int { return r.proc.Cmd.Process.Pid }

// Restart stops redis-server (SIGTERM) and starts it again on the same port
// and files, as an operator's restart would.
func (r *Redis) Restart(ctx context.Context) error {
	r.proc.Stop(5 * time.Second)
	return r.start(ctx)
}

// Stop terminates redis-server (SIGTERM, SIGKILL after 5 s) and waits for it.
func (r *Redis) Stop() error {
	r.proc.Stop(5 * time.Second)
	return nil
}

// Kill stops redis-server at once with SIGKILL, as a crash would.
func (r *Redis) Kill() { r.proc.Kill() }

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Loopback is 127.0.0.1:port.
func Loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
