package bench

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/testharness"
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
	*child.Process
	id   string
	addr string // its /readyz and /metrics
}

// startWorker starts a worker process configured for l and waits until it is
// ready (connected to NATS, queue open), so that timing starts with a worker
// waiting for jobs rather than with a process starting.
func (l *lab) startWorker(ctx context.Context, c workerConfig) (*workerProc, error) {
	port, err := testharness.FreePort()
	if err != nil {
		return nil, err
	}
	p := &workerProc{id: c.id, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	cmd := exec.Command(l.worker[0], l.worker[1:]...)
	cmd.Env = child.Worker{ID: c.id, NATSURL: l.ns.ClientURL(), SimAddr: l.simAddr, SourceRoot: l.root, HTTPAddr: p.addr,
		Jobs: c.jobs, PartSize: c.partSize, Concurrency: c.concurrency, AckWait: l.qcfg.AckWait, ShutdownGrace: 10 * time.Second}.Env()
	if p.Process, err = child.Start(cmd, filepath.Join(l.dir, "worker-"+c.id+".log")); err != nil {
		return nil, fmt.Errorf("start worker %s: %w", c.id, err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	if err := p.WaitHTTPReady(ctx, "http://"+p.addr+"/readyz", 30*time.Second); err != nil {
		return nil, fmt.Errorf("worker %s: %w\n%s", c.id, err, p.LogTail(2048))
	}
	return p, nil
}
