package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
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
	proc *process
}

// startWorker starts worker id (a restart reuses the id, as a supervisor would).
func (s *workerSetup) startWorker(id string) (*workerProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	w := &workerProc{id: id, addr: loopback(port)}
	cmd := exec.Command(s.exe, "worker")
	cmd.Env = append(envWithout("VODPIPE_"),
		"VODPIPE_WORKER_ID="+id,
		"VODPIPE_NATS_URL="+s.natsURL,
		"VODPIPE_NATS_REPLICAS=3",
		"VODPIPE_REDIS_URL=redis://"+s.redisAddr+"/0",
		"VODPIPE_VOD_ENDPOINT=http://"+s.simAddr,
		"VODPIPE_COS_DIAL_ADDR="+s.simAddr,
		"VODPIPE_COS_SCHEME=http",
		"VODPIPE_SOURCE_ROOT="+s.root,
		"VODPIPE_WORKER_HTTP_ADDR="+w.addr,
		"VODPIPE_WORKER_JOBS="+strconv.Itoa(s.jobs),
		"VODPIPE_PART_SIZE="+strconv.FormatInt(s.partSize, 10),
		"VODPIPE_PART_CONCURRENCY="+strconv.Itoa(s.concurrency),
		"VODPIPE_JOBS_ACK_WAIT="+s.ackWait.String(),
		"VODPIPE_LEASE_TTL="+s.ackWait.String(),
		"VODPIPE_SHUTDOWN_GRACE=5s",
	)
	if w.proc, err = startProcess(cmd, filepath.Join(s.dir, "worker-"+id+".log")); err != nil {
		return nil, fmt.Errorf("start worker %s: %w", id, err)
	}
	return w, nil
}

// waitReady waits for the worker's /readyz.
func (w *workerProc) waitReady(ctx context.Context) error {
	if err := waitHTTPReady(ctx, w.proc, "http://"+w.addr+"/readyz", 30*time.Second); err != nil {
		return fmt.Errorf("worker %s: %w\n%s", w.id, err, w.proc.logTail(2048))
	}
	return nil
}
