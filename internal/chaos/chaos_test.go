package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/service"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/webhook"
)

// TestMain lets this test binary play the services (`vodpipe notify`, ...):
// startServices starts them as its own executable re-executed with a role.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && service.IsRole(os.Args[1]) {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := service.RunRole(ctx, os.Args[1], os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// TestStartServicesFailsCleanly returns the reason when a service cannot
// start, here because a single NATS server cannot hold the run's streams at
// 3 replicas, with the end of the service's log, and stops the services it
// had started instead of leaving them running.
func TestStartServicesFailsCleanly(t *testing.T) {
	n := testharness.StartNATS(t)
	o := Options{Seed: 1}
	o.defaults()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := startServices(t.Context(), exe, dir, n.URL, n.URL, o)
	if err == nil {
		s.close()
		t.Fatal("services started on a single server with streams at 3 replicas")
	}
	if s != nil {
		t.Errorf("startServices returned services with its error %v", err)
	}
	for _, want := range []string{"ingest: exited before it was ready", "cannot start", "VODPIPE_JOBS", "replicas"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to say %q", err, want)
		}
	}
	// vodsim, started with ingest, was stopped gracefully.
	if b, _ := os.ReadFile(filepath.Join(dir, "vodsim.log")); !strings.Contains(string(b), "vodsim stopped") {
		t.Errorf("vodsim was not stopped; its log:\n%s", b)
	}
}

// The receiver refuses the first delivery of one job.completed in ten, the
// very first included, and reports a refused event that never came again
// under its webhook id.
func TestReceiverRefusesOnceAndTracksRedeliveries(t *testing.T) {
	r, err := startReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.srv.Close()
	secret := webhook.NewSecret()
	r.setSecret(secret)
	deliver := func(webhookID, jobID string) int {
		t.Helper()
		e, err := job.NewEvent(job.EventCompleted, jobID, job.CompletedData{FileID: "f-" + jobID})
		if err != nil {
			t.Fatal(err)
		}
		body, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		sig, err := webhook.Sign(secret, webhookID, now, body)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, r.URL, bytes.NewReader(body))
		req.Header.Set(webhook.HeaderID, webhookID)
		req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		req.Header.Set(webhook.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := deliver("w1", "j1"); code != http.StatusServiceUnavailable {
		t.Fatalf("first delivery of the first event: %d, want 503", code)
	}
	if refused, notAgain := r.redeliveries(); refused != 1 || len(notAgain) != 1 || notAgain[0] != "j1" {
		t.Fatalf("before the redelivery: refused %d, not again %v; want 1, [j1]", refused, notAgain)
	}
	if code := deliver("w1", "j1"); code != http.StatusNoContent {
		t.Fatalf("redelivery: %d, want 204", code)
	}
	for i := 2; i <= refuseEvery; i++ {
		if code := deliver(fmt.Sprintf("w%d", i), fmt.Sprintf("j%d", i)); code != http.StatusNoContent {
			t.Fatalf("first delivery of event %d: %d, want 204", i, code)
		}
	}
	// The eleventh is refused; redelivered under another id, it is a second event and not a redelivery.
	if code := deliver("w11", "j11"); code != http.StatusServiceUnavailable {
		t.Fatalf("first delivery of event %d: %d, want 503", refuseEvery+1, code)
	}
	if code := deliver("w11-other", "j11"); code != http.StatusNoContent {
		t.Fatalf("delivery under another id: %d, want 204", code)
	}
	refused, notAgain := r.redeliveries()
	if refused != 2 || len(notAgain) != 1 || notAgain[0] != "j11" {
		t.Fatalf("refused %d, not again %v; want 2, [j11]", refused, notAgain)
	}
	if n, d := r.completed("j1"); n != 1 || d != 2 {
		t.Fatalf("j1: %d events in %d deliveries, want 1 in 2", n, d)
	}
	if n, _ := r.completed("j11"); n != 2 {
		t.Fatalf("j11: %d events, want 2 (the checks fail such a job)", n)
	}
}

// A run whose faults did not all happen, in which a worker ended by itself,
// or whose streams are not at 3 replicas fails: it proved nothing.
func TestCheckFaultsFailsARunWithoutItsFaults(t *testing.T) {
	n := testharness.StartNATS(t)
	if _, err := n.JetStream(t).CreateStream(t.Context(), jetstream.StreamConfig{Name: "SINGLE", Subjects: []string{"single.>"}}); err != nil {
		t.Fatal(err)
	}
	o := Options{Seed: 1}
	o.defaults()
	// A service process that ended by itself.
	p, err := child.Start(exec.Command("sh", "-c", "echo giving up; exit 3"), filepath.Join(t.TempDir(), "quitter.log"))
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	s := &services{js: n.JetStream(t), procs: []*serviceProcess{{name: "quitter", Process: p}}}
	var got []string
	viol := func(format string, args ...any) { got = append(got, fmt.Sprintf(format, args...)) }
	checkFaults(&Report{RedisFaults: 1, WorkerExits: 1}, o, s, viol)
	all := strings.Join(got, "\n")
	for _, want := range []string{"no worker was killed", "0 NATS node restarts and 1 Redis faults, want 1 of each", "out of space refused no body",
		"vodsim injected no fault", "1 worker processes ended by themselves", "services ended by themselves: quitter (exit status 3: giving up)", "1 streams or buckets at 1 replicas, want 3: SINGLE",
		"no stream at 3 replicas", "services crashed: [], want [notify ingest]"} {
		if !strings.Contains(all, want) {
			t.Errorf("violations lack %q:\n%s", want, all)
		}
	}
	got = nil
	checkFaults(&Report{WorkerKills: 1, NATSRestarts: 1, RedisFaults: 1, StorageRefused: 1, ServiceCrashes: crashedServices()}, Options{}, &services{js: n.JetStream(t)}, viol)
	if len(got) != 2 { // the single-replica stream, and so none at 3
		t.Errorf("a run with its faults: violations %q, want only the replica ones", got)
	}
}
