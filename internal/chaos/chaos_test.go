package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/notify"
)

// TestStartServicesFailsCleanly returns the reason when a service cannot
// start, here because another stream already holds the jobs subjects, and
// closes what it had opened instead of panicking on the way out.
func TestStartServicesFailsCleanly(t *testing.T) {
	n := testharness.StartNATS(t)
	if _, err := n.JetStream(t).CreateStream(t.Context(), jetstream.StreamConfig{Name: "SQUATTER", Subjects: []string{"vodpipe.jobs.>"}}); err != nil {
		t.Fatal(err)
	}
	o := Options{Seed: 1}
	o.defaults()
	s, err := startServices(t.Context(), t.TempDir(), n.URL, o)
	if err == nil {
		s.close()
		t.Fatal("services started although another stream holds vodpipe.jobs.>")
	}
	if s != nil {
		t.Errorf("startServices returned services with its error %v", err)
	}
	if !strings.Contains(err.Error(), "VODPIPE_JOBS") {
		t.Errorf("err = %v, want it to name the stream it could not create", err)
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
	secret := notify.NewSecret()
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
		sig, err := notify.Sign(secret, webhookID, now, body)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, r.URL, bytes.NewReader(body))
		req.Header.Set(notify.HeaderWebhookID, webhookID)
		req.Header.Set(notify.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
		req.Header.Set(notify.HeaderWebhookSignature, sig)
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
	// No vodsim listens there: no injected fault is read.
	s := &services{natsURL: n.URL, simAddr: "127.0.0.1:1"}
	var got []string
	viol := func(format string, args ...any) { got = append(got, fmt.Sprintf(format, args...)) }
	checkFaults(&Report{RedisRestarts: 1, WorkerExits: 1}, o, s, viol)
	all := strings.Join(got, "\n")
	for _, want := range []string{"no worker was killed", "0 NATS node restarts and 1 Redis restarts, want 1 of each",
		"vodsim injected no fault", "1 worker processes ended by themselves", "1 streams or buckets at 1 replicas, want 3: SINGLE",
		"no stream at 3 replicas"} {
		if !strings.Contains(all, want) {
			t.Errorf("violations lack %q:\n%s", want, all)
		}
	}
	got = nil
	checkFaults(&Report{WorkerKills: 1, NATSRestarts: 1, RedisRestarts: 1}, Options{}, &services{natsURL: n.URL, simAddr: "127.0.0.1:1"}, viol)
	if len(got) != 2 { // the single-replica stream, and so none at 3
		t.Errorf("a run with its faults: violations %q, want only the replica ones", got)
	}
}
