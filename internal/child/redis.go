package child

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
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
	pre  []string // arguments before args: a sentinel's configuration file
	args []string
	log  string // the log's file name in Dir (redis.log)
	proc *Process
}

// StartRedis starts redis-server on a free loopback port with extra
// arguments (e.g. "--save", "", "--appendonly", "no") and waits until it
// answers PING. The caller stops it.
func StartRedis(ctx context.Context, dir string, extra ...string) (*Redis, error) {
	return startRedis(ctx, dir, nil, "", extra...)
}

// startRedis is StartRedis with arguments before the rest (pre) and the
// log's file name (empty: redis.log).
func startRedis(ctx context.Context, dir string, pre []string, log string, extra ...string) (*Redis, error) {
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
		r := &Redis{Addr: Loopback(port), Dir: dir, bin: bin, pre: pre, log: log,
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
	log := r.log
	if log == "" {
		log = "redis.log"
	}
	p, err := Start(exec.Command(r.bin, append(slices.Clone(r.pre), r.args...)...), filepath.Join(r.Dir, log))
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

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// a child process to listen on. It is picked below the kernel's ephemeral
// range: a port of that range (what "127.0.0.1:0" gives) can be taken by
// an outgoing connection before the child binds it, and a chaos run makes
// thousands of those. Successive calls walk the range from a random start,
// so one process does not hand out a port twice; when nothing there is
// free, any free port.
func FreePort() (int, error) {
	lo, hi := portFloor, ephemeralStart()
	if hi-lo > 1000 {
		for range 100 {
			p := lo + int(portCursor.Add(1))%(hi-lo)
			if l, err := net.Listen("tcp", Loopback(p)); err == nil {
				l.Close()
				return p, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portFloor is the lowest port FreePort hands out.
const portFloor = 20000

// portCursor walks FreePort's range; it starts at a random point so that
// concurrent test processes rarely walk the same ports.
var portCursor = func() *atomic.Int64 {
	var c atomic.Int64
	c.Store(rand.Int64N(1 << 20))
	return &c
}()

// ephemeralStart is the first port of the kernel's ephemeral range
// (Linux's ip_local_port_range; 32768 when it cannot be read).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// Loopback is 127.0.0.1:port.
func Loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
