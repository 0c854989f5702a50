package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/testharness"
)

// workerSetup is what every worker process of the run gets.
type workerSetup struct {
	exe, dir, root     string
	natsURL, redisAddr string
	simAddr            string
	partSize           int64
	concurrency, jobs  int
	ackWait            time.Duration
}

// workerProc is one `<exe> worker` process.
type workerProc struct {
	id   string
	addr string
	proc *child.Process
}

// startWorker starts worker id (a restart reuses the id, as a supervisor would).
func (s *workerSetup) startWorker(id string) (*workerProc, error) {
	port, err := testharness.FreePort()
	if err != nil {
		return nil, err
	}
	w := &workerProc{id: id, addr: loopback(port)}
	cmd := exec.Command(s.exe, "worker")
	cmd.Env = child.Worker{ID: id, NATSURL: s.natsURL, RedisURL: "redis://" + s.redisAddr + "/0", Replicas: 3,
		SimAddr: s.simAddr, SourceRoot: s.root, HTTPAddr: w.addr, Jobs: s.jobs, PartSize: s.partSize,
		Concurrency: s.concurrency, AckWait: s.ackWait, ShutdownGrace: 5 * time.Second}.Env()
	if w.proc, err = child.Start(cmd, filepath.Join(s.dir, "worker-"+id+".log")); err != nil {
		return nil, fmt.Errorf("start worker %s: %w", id, err)
	}
	return w, nil
}

// waitReady waits for the worker's /readyz.
func (w *workerProc) waitReady(ctx context.Context) error {
	if err := w.proc.WaitHTTPReady(ctx, "http://"+w.addr+"/readyz", 30*time.Second); err != nil {
		return fmt.Errorf("worker %s: %w\n%s", w.id, err, w.proc.LogTail(2048))
	}
	return nil
}
