package worker_test

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// storageRefusals counts vodsim's 507 InsufficientStorage answers.
func storageRefusals(t *testing.T, simURL string) int {
	t.Helper()
	resp, err := http.Get(simURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "vodsim_requests_total{") && strings.Contains(line, `code="InsufficientStorage"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += int(v)
		}
	}
	return n
}

// A storage out of space (507 InsufficientStorage on every body) makes a
// multipart job wait, queued with the reason, its parts kept, for longer
// than its runs would last (MaxDeliver 6, two tries a part, refused 16 times): waits
// use up no run. When space returns the job resumes where it stopped and
// completes with the source's bytes; no multipart upload is left open.
func TestStorageFullJobWaitsWithoutUsingRunsAndResumes(t *testing.T) {
	// Bodies at 1 MiB/s: the store fills while parts remain to be sent (at
	// loopback speed the whole source could be in before it did).
	const bandwidth = 1 << 20
	e := newEnv(t, true, func(c *vodsim.Config) { c.Faults = vodsim.FaultConfig{Bandwidth: bandwidth} })
	e.cfg.StorageFullWait = 200 * time.Millisecond
	// Two tries a part: without the wait, 6 runs would be spent in 12 refusals.
	e.cfg.UploadConfig.PartAttempts = 2
	e.startWorker("w1")
	const size = 6 << 20
	src, data := e.source("full.mp4", size)
	// Full once the upload is under way: two parts' worth in.
	e.submit(&job.Job{ID: "full", Source: src})
	deadline := time.Now().Add(30 * time.Second)
	for e.sim.BytesReceived() < 2<<20 {
		if time.Now().After(deadline) {
			t.Fatal("the upload never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := e.sim.SetFaults(vodsim.FaultConfig{StorageFull: true, Bandwidth: bandwidth}); err != nil {
		t.Fatal(err)
	}
	for storageRefusals(t, e.sim.URL) < 16 {
		if time.Now().After(deadline) {
			t.Fatalf("%d refusals for want of space in 30 s", storageRefusals(t, e.sim.URL))
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, _, err := e.q.Statuses.Get(t.Context(), "full")
	if err != nil {
		t.Fatal(err)
	}
	if st.State == job.StateFailed || st.Runs > 1 {
		t.Fatalf("after 16 refusals: state %s, %d runs; want the job waiting, at most the one run in progress", st.State, st.Runs)
	}
	if st.State == job.StateQueued && (st.Error == nil || st.Error.Code != "storage_full") {
		t.Fatalf("waiting job's error %+v; want storage_full", st.Error)
	}
	received := e.sim.BytesReceived()
	if err := e.sim.SetFaults(vodsim.FaultConfig{}); err != nil {
		t.Fatal(err)
	}
	s := e.waitState("full", job.StateCompleted, 60*time.Second)
	e.storedEquals(s, data)
	// Resumed, not restarted: what came after the space returned is less
	// than the whole source again.
	if after := e.sim.BytesReceived() - received; after >= size {
		t.Fatalf("%d bytes sent after space returned; want the rest of %d, not all of it again", after, size)
	}
	if n := len(e.sim.Uploads()); n != 0 {
		t.Fatalf("%d multipart uploads left open", n)
	}
	if s.Runs > 2 {
		t.Fatalf("completed after %d runs; waits for space must not count", s.Runs)
	}
}

// With a commit that must survive a failover (VODPIPE_REDIS_WAIT_REPLICAS
// 1), a replica that goes away mid-upload holds the job back at its commit:
// it waits, queued with the reason and no run used, and completes once a
// replica is back, with one file.
func TestCommitWaitsForARedisReplica(t *testing.T) {
	e := newEnv(t, true, func(c *vodsim.Config) { c.Faults = vodsim.FaultConfig{Bandwidth: 2 << 20} })
	host, port, _ := net.SplitHostPort(e.redis.Addr)
	// A replica syncs at once, not after the primary's 5 s wait for more of them.
	if err := e.redis.Client(t).ConfigSet(t.Context(), "repl-diskless-sync-delay", "0").Err(); err != nil {
		t.Fatal(err)
	}
	replica, err := testharness.RunRedis(t.TempDir(), "--save", "", "--appendonly", "no", "--replicaof", host, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = replica.Stop() })
	e.cfg.Redis.WaitReplicas = "1"
	e.cfg.StorageFullWait = 200 * time.Millisecond
	e.startWorker("w1")
	src, data := e.source("replica.mp4", 4<<20)
	e.submit(&job.Job{ID: "replica", Source: src})
	deadline := time.Now().Add(30 * time.Second)
	for e.sim.BytesReceived() < 1<<20 {
		if time.Now().After(deadline) {
			t.Fatal("the upload never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = replica.Stop() // the primary stands alone
	testharness.WaitFor(t, 30*time.Second, "the job held back for want of a replica", func() bool {
		st, _, err := e.q.Statuses.Get(t.Context(), "replica")
		return err == nil && st.State == job.StateQueued && st.Error != nil && st.Error.Code == "redis_no_replica"
	})
	st, _, _ := e.q.Statuses.Get(t.Context(), "replica")
	if st.Runs != 0 {
		t.Fatalf("%d runs counted while waiting for a replica", st.Runs)
	}
	if len(e.sim.Files()) != 0 {
		t.Fatal("committed without a replica")
	}
	replica, err = testharness.RunRedis(t.TempDir(), "--save", "", "--appendonly", "no", "--replicaof", host, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = replica.Stop() })
	s := e.waitState("replica", job.StateCompleted, 60*time.Second)
	e.storedEquals(s, data)
	if n := len(e.sim.Files()); n != 1 {
		t.Fatalf("%d files, want 1", n)
	}
}
