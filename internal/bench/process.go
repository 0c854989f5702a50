package bench

import (
	"context"
	"path/filepath"
	"time"

	"github.com/vodpipe/vodpipe/internal/child"
)

// workerConfig is what differs between the worker processes of the measurements.
type workerConfig struct {
	id          string
	partSize    int64
	concurrency int
	jobs        int // jobs one process runs at once
}

// startWorker starts a worker process configured for l and waits until it is
// ready (connected to NATS, queue open), so that timing starts with a worker
// waiting for jobs rather than with a process starting.
func (l *lab) startWorker(ctx context.Context, c workerConfig) (*child.WorkerProcess, error) {
	p, err := child.Worker{ID: c.id, NATSURL: l.ns.ClientURL(), SimAddr: l.simAddr, SourceRoot: l.root,
		Jobs: c.jobs, PartSize: c.partSize, Concurrency: c.concurrency, AckWait: l.qcfg.AckWait, ShutdownGrace: 10 * time.Second,
	}.Start(l.worker, filepath.Join(l.dir, "worker-"+c.id+".log"))
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	// The process is returned with a readiness error too: it is in l.procs,
	// so l.Close kills it either way.
	return p, p.WaitReady(ctx)
}
