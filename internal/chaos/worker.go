package chaos

import (
	"context"
	"path/filepath"
	"time"

	"github.com/vodpipe/vodpipe/internal/child"
)

// workerSetup is what every worker process of the run gets.
type workerSetup struct {
	exe, dir, root    string
	natsURL, simAddr  string
	redisAddrs        []string // sentinels (with redisMaster) or cluster nodes
	redisMaster       string
	partSize          int64
	concurrency, jobs int
	ackWait           time.Duration
	// exeOf is the binary of each worker id that does not run exe (an
	// upgrade run's); its restarts keep it. Only the loop that restarts
	// workers touches it.
	exeOf map[string]string
}

// startWorker starts worker id (a restart reuses the id, as a supervisor would).
func (s *workerSetup) startWorker(id string) (*child.WorkerProcess, error) {
	exe := s.exe
	if e, ok := s.exeOf[id]; ok {
		exe = e
	}
	return child.Worker{ID: id, NATSURL: s.natsURL, RedisAddrs: s.redisAddrs, RedisMaster: s.redisMaster, Replicas: 3,
		SimAddr: s.simAddr, SourceRoot: s.root, Jobs: s.jobs, PartSize: s.partSize,
		Concurrency: s.concurrency, AckWait: s.ackWait, ShutdownGrace: 5 * time.Second,
		// A job the full store refused tries again within seconds: the fault lasts seconds.
		Settings: []string{"VODPIPE_STORAGE_FULL_WAIT=2s"},
	}.Start([]string{exe, "worker"}, filepath.Join(s.dir, "worker-"+id+".log"))
}

// replace stops worker i as a rollout does (SIGTERM: its parts in flight
// finish, its jobs go back to the queue), starts exe in its place and waits
// until it is ready. It returns when the old process had ended (zero if it
// started nothing): whatever the worker id does from then on is exe's.
func (s *workerSetup) replace(ctx context.Context, workers []*child.WorkerProcess, i int, exe string) (time.Time, error) {
	workers[i].Stop(30 * time.Second)
	at := time.Now()
	if s.exeOf == nil {
		s.exeOf = map[string]string{}
	}
	s.exeOf[workers[i].ID] = exe
	w, err := s.startWorker(workers[i].ID)
	if err != nil {
		return time.Time{}, err
	}
	workers[i] = w
	return at, w.WaitReady(ctx)
}
