package chaos

import (
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
}

// startWorker starts worker id (a restart reuses the id, as a supervisor would).
func (s *workerSetup) startWorker(id string) (*child.WorkerProcess, error) {
	return child.Worker{ID: id, NATSURL: s.natsURL, RedisAddrs: s.redisAddrs, RedisMaster: s.redisMaster, Replicas: 3,
		SimAddr: s.simAddr, SourceRoot: s.root, Jobs: s.jobs, PartSize: s.partSize,
		Concurrency: s.concurrency, AckWait: s.ackWait, ShutdownGrace: 5 * time.Second,
		// A job the full store refused tries again within seconds: the fault lasts seconds.
		Settings: []string{"VODPIPE_STORAGE_FULL_WAIT=2s"},
	}.Start([]string{s.exe, "worker"}, filepath.Join(s.dir, "worker-"+id+".log"))
}
