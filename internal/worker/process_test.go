package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/internal/worker"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// TestHelperWorkerProcess is not a test: it is the body of the worker
// processes that the crash tests start (this test binary, re-executed) and
// kill. Without VODPIPE_TEST_WORKER_PROCESS it returns at once.
func TestHelperWorkerProcess(t *testing.T) {
	if os.Getenv("VODPIPE_TEST_WORKER_PROCESS") != "1" {
		return
	}
	var cfg worker.Config
	if err := config.Load(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	w, err := worker.New(ctx, cfg, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = w.Run(ctx)
	w.Close()
	os.Exit(0)
}

// workerProcess starts a worker in a separate process configured like e's workers.
func (e *env) workerProcess(id string) *exec.Cmd {
	e.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWorkerProcess$", "-test.v=false")
	c := e.cfg
	cmd.Env = append(os.Environ(),
		"VODPIPE_TEST_WORKER_PROCESS=1",
		"VODPIPE_WORKER_ID="+id,
		"VODPIPE_NATS_URL="+c.NATS.URL,
		"VODPIPE_REDIS_URL="+c.Redis.URL,
		"VODPIPE_VOD_ENDPOINT="+c.VODEndpoint,
		"VODPIPE_COS_DIAL_ADDR="+c.COSDialAddr,
		"VODPIPE_COS_SCHEME=http",
		fmt.Sprintf("VODPIPE_PART_SIZE=%d", c.PartSize),
		fmt.Sprintf("VODPIPE_PART_CONCURRENCY=%d", c.Concurrency),
		"VODPIPE_SOURCE_ROOT="+c.Root,
		"VODPIPE_JOBS_ACK_WAIT="+c.AckWait.String(),
		fmt.Sprintf("VODPIPE_JOBS_MAX_DELIVER=%d", c.MaxDeliver),
		"VODPIPE_LEASE_TTL="+c.LeaseTTL.String(),
		"VODPIPE_SHUTDOWN_GRACE="+c.ShutdownGrace.String(),
		"VODPIPE_WORKER_HTTP_ADDR=127.0.0.1:0",
		"VODPIPE_WORKER_JOBS=1",
	)
	cmd.Stderr = e.logBuf
	cmd.Stdout = e.logBuf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func TestKilledWorkerIsResumedByAnother(t *testing.T) {
	e := newEnv(t, true, func(c *vodsim.Config) { c.Faults = vodsim.FaultConfig{Bandwidth: 6 << 20} })
	const size = 24 << 20
	src, data := e.source("kill.mp4", size)
	a := e.workerProcess("A")
	e.submit(&job.Job{ID: "kill-1", Source: src})
	testharness.WaitFor(t, 30*time.Second, "a third of the parts in vodsim", func() bool {
		u := e.sim.Uploads()
		return len(u) == 1 && len(u[0].Parts) >= 8
	})
	if err := a.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.Wait()
	e.startWorker("B")
	s := e.waitState("kill-1", job.StateCompleted, 60*time.Second)
	e.storedEquals(s, data)
	if files := e.sim.Files(); len(files) != 1 || files[0].FileID != s.FileID {
		t.Fatalf("files = %+v, want exactly one", files)
	}
	// Bytes sent again: at most the parts that were in flight when A died.
	inFlight := int64(e.cfg.Concurrency) * e.cfg.PartSize
	if resent := e.sim.BytesReceived() - size; resent > inFlight {
		t.Fatalf("re-sent %d bytes, parts in flight were at most %d", resent, inFlight)
	} else {
		t.Logf("re-sent %d bytes after SIGKILL (bound %d)", resent, inFlight)
	}
}

func TestSIGTERMDrainsAndHandsTheJobBack(t *testing.T) {
	e := newEnv(t, true, func(c *vodsim.Config) { c.Faults = vodsim.FaultConfig{Bandwidth: 6 << 20} })
	const size = 24 << 20
	src, data := e.source("term.mp4", size)
	a := e.workerProcess("A")
	e.submit(&job.Job{ID: "term-1", Source: src})
	testharness.WaitFor(t, 30*time.Second, "parts in vodsim", func() bool {
		u := e.sim.Uploads()
		return len(u) == 1 && len(u[0].Parts) >= 6
	})
	if err := a.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- a.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("worker exit: %v\n%s", err, e.logBuf.String())
		}
	case <-time.After(e.cfg.ShutdownGrace + 5*time.Second):
		t.Fatal("worker did not stop within its grace period")
	}
	// Handed back, not failed, not waiting for a redelivery timeout, and
	// not counted as a run against the job's bound.
	s, _, err := e.q.Statuses.Get(t.Context(), "term-1")
	if err != nil || s.State != job.StateQueued || s.Runs != 0 {
		t.Fatalf("status after SIGTERM = %+v, %v", s, err)
	}
	e.startWorker("B")
	s = e.waitState("term-1", job.StateCompleted, 60*time.Second)
	if s.Runs != 1 {
		t.Fatalf("runs = %d, want 1 (the handed-back run does not count)", s.Runs)
	}
	e.storedEquals(s, data)
	// Parts in flight finished before the exit: nothing is sent twice.
	if resent := e.sim.BytesReceived() - size; resent > 0 {
		t.Fatalf("re-sent %d bytes after a graceful stop", resent)
	}
}
