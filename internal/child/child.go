// Package child runs the child processes of vodpipe's bench and chaos runs
// (worker processes, NATS nodes, redis-server): output appended to a log
// file, SIGKILL as a crash would, SIGTERM with a grace period, readiness by
// HTTP, and an environment cleaned of the caller's VODPIPE_* settings so the
// shell cannot change what is measured.
package child

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a started child process.
type Process struct {
	Cmd     *exec.Cmd
	LogPath string
	done    chan struct{}
}

// Start starts cmd with its output appended to logPath. On Linux the child
// dies with its parent, so an interrupted run leaves nothing behind.
func Start(cmd *exec.Cmd, logPath string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = SysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Kill sends SIGKILL, as a crash or the OOM killer would, and reaps the process.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop asks the process to end (SIGTERM) and kills it after grace.
func (p *Process) Stop(grace time.Duration) {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// LogTail is the last n bytes of the process's log, for error messages.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// WaitHTTPReady polls url until it answers 200, the process ends, timeout
// passes or ctx ends.
func (p *Process) WaitHTTPReady(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before it was ready: %v", p.Cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// EnvWithout is this process's environment less the variables with prefix.
func EnvWithout(prefix string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

// Worker is the configuration of a `vodpipe worker` process on loopback
// against vodsim.
type Worker struct {
	ID, NATSURL, SimAddr, SourceRoot, HTTPAddr string
	// RedisURL keeps resume state in Redis; empty: a JetStream key-value bucket.
	RedisURL string
	// RedisAddrs keep it in a Redis Cluster (its nodes) or, with
	// RedisMaster, in a Redis with Sentinel (the sentinels), instead.
	RedisAddrs  []string
	RedisMaster string
	// Replicas of streams and buckets; 0 leaves the default.
	Replicas               int
	Jobs, Concurrency      int
	PartSize               int64
	AckWait, ShutdownGrace time.Duration
	// Settings holds more VODPIPE_*=... variables.
	Settings []string
}

// Env is the worker's environment: this process's, less every VODPIPE_*
// variable, plus the worker's settings.
func (w Worker) Env() []string {
	env := append(EnvWithout("VODPIPE_"),
		"VODPIPE_WORKER_ID="+w.ID,
		"VODPIPE_NATS_URL="+w.NATSURL,
		"VODPIPE_VOD_ENDPOINT=http://"+w.SimAddr,
		"VODPIPE_COS_DIAL_ADDR="+w.SimAddr,
		"VODPIPE_COS_SCHEME=http",
		"VODPIPE_SOURCE_ROOT="+w.SourceRoot,
		"VODPIPE_WORKER_HTTP_ADDR="+w.HTTPAddr,
		"VODPIPE_WORKER_JOBS="+strconv.Itoa(w.Jobs),
		"VODPIPE_PART_SIZE="+strconv.FormatInt(w.PartSize, 10),
		"VODPIPE_PART_CONCURRENCY="+strconv.Itoa(w.Concurrency),
		"VODPIPE_JOBS_ACK_WAIT="+w.AckWait.String(),
		"VODPIPE_LEASE_TTL="+w.AckWait.String(),
		"VODPIPE_SHUTDOWN_GRACE="+w.ShutdownGrace.String(),
	)
	if w.RedisURL != "" {
		env = append(env, "VODPIPE_REDIS_URL="+w.RedisURL)
	}
	if len(w.RedisAddrs) > 0 {
		env = append(env, "VODPIPE_REDIS_ADDRS="+strings.Join(w.RedisAddrs, ","))
	}
	if w.RedisMaster != "" {
		env = append(env, "VODPIPE_REDIS_MASTER_NAME="+w.RedisMaster)
	}
	if w.Replicas > 0 {
		env = append(env, "VODPIPE_NATS_REPLICAS="+strconv.Itoa(w.Replicas))
	}
	return append(env, w.Settings...)
}

// WorkerProcess is a started `vodpipe worker` process.
type WorkerProcess struct {
	*Process
	ID   string
	Addr string // its /healthz, /readyz and /metrics
}

// Start starts command (the vodpipe executable and its arguments, e.g.
// ["vodpipe", "worker"]) as this worker, on a free loopback port for its
// HTTP endpoints when HTTPAddr is empty, output appended to logPath.
func (w Worker) Start(command []string, logPath string) (*WorkerProcess, error) {
	if len(command) == 0 {
		return nil, fmt.Errorf("start worker %s: no command", w.ID)
	}
	if w.HTTPAddr == "" {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		w.HTTPAddr = Loopback(port)
	}
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Env = w.Env()
	p, err := Start(cmd, logPath)
	if err != nil {
		return nil, fmt.Errorf("start worker %s: %w", w.ID, err)
	}
	return &WorkerProcess{Process: p, ID: w.ID, Addr: w.HTTPAddr}, nil
}

// WaitReady waits up to 30 s for the worker's /readyz (connected to NATS,
// queue open); an error carries the end of its log.
func (p *WorkerProcess) WaitReady(ctx context.Context) error {
	if err := p.WaitHTTPReady(ctx, "http://"+p.Addr+"/readyz", 30*time.Second); err != nil {
		return fmt.Errorf("worker %s: %w\n%s", p.ID, err, p.LogTail(2048))
	}
	return nil
}
