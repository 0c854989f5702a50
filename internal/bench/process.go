package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// workerConfig is what differs between the worker processes of the measurements.
type workerConfig struct {
	id          string
	partSize    int64
	concurrency int
	jobs        int // jobs one process runs at once
}

// workerProc is one `vodpipe worker` process started on a lab.
type workerProc struct {
	id      string
	cmd     *exec.Cmd
	addr    string // its /readyz and /metrics
	logPath string
	done    chan struct{}
}

// startWorker starts a worker process configured for l and waits until it is
// ready (connected to NATS, queue open), so that timing starts with a worker
// waiting for jobs rather than with a process starting.
func (l *lab) startWorker(ctx context.Context, c workerConfig) (*workerProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := &workerProc{id: c.id, addr: addr, logPath: filepath.Join(l.dir, "worker-"+c.id+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	p.cmd = exec.Command(l.worker[0], l.worker[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = childAttr()
	p.cmd.Env = append(envWithout("VODPIPE_"),
		"VODPIPE_WORKER_ID="+c.id,
		"VODPIPE_NATS_URL="+l.ns.ClientURL(),
		"VODPIPE_VOD_ENDPOINT=http://"+l.simAddr,
		"VODPIPE_COS_DIAL_ADDR="+l.simAddr,
		"VODPIPE_COS_SCHEME=http",
		"VODPIPE_SOURCE_ROOT="+l.root,
		"VODPIPE_WORKER_HTTP_ADDR="+addr,
		"VODPIPE_WORKER_JOBS="+strconv.Itoa(c.jobs),
		"VODPIPE_PART_SIZE="+strconv.FormatInt(c.partSize, 10),
		"VODPIPE_PART_CONCURRENCY="+strconv.Itoa(c.concurrency),
		"VODPIPE_JOBS_ACK_WAIT="+l.qcfg.AckWait.String(),
		"VODPIPE_LEASE_TTL="+l.qcfg.AckWait.String(),
		"VODPIPE_SHUTDOWN_GRACE=10s",
	)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker %s: %w", c.id, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	if err := p.waitReady(ctx); err != nil {
		return nil, fmt.Errorf("worker %s: %w\n%s", c.id, err, p.logTail(2048))
	}
	return p, nil
}

func (p *workerProc) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/readyz", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before it was ready: %v", p.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL, as a crash or the OOM killer would, and reaps the process.
func (p *workerProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// peakRSS is the process's peak resident set size so far (VmHWM in /proc).
func (p *workerProc) peakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("peak RSS needs Linux's /proc: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// logTail is the end of the process's log, for error messages.
func (p *workerProc) logTail(n int64) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}

// envWithout is this process's environment less the variables with prefix,
// so a VODPIPE_* setting of the shell cannot change what is measured.
func envWithout(prefix string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
