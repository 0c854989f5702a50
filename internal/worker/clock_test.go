package worker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// skewedEnv is an env whose vodsim (VOD and COS: Tencent's clock) and
// signature service (ingest's clock) are off the worker's, the machine's
// clock, by the given offsets. Credentials last 2 s and bodies are read at
// 1 MiB/s, so a job renews them while its parts go.
func skewedEnv(t *testing.T, tencent, ingest time.Duration) *env {
	t.Helper()
	return newEnvSigner(t, true, signer.Policy{MaxValidity: time.Hour, Procedures: signer.Allow{signer.Any},
		StorageRegions: signer.Allow{signer.Any}, ClassIDs: signer.Allow{signer.Any}},
		[]signer.Option{signer.WithClock(func() time.Time { return time.Now().Add(ingest) })},
		func(c *vodsim.Config) {
			c.ClockOffset = tencent
			c.Faults = vodsim.FaultConfig{CredentialLifetime: vodsim.Duration(2 * time.Second), Bandwidth: 1 << 20}
		})
}

// Clocks minutes apart, within what VOD tolerates of a signature
// (currentTimeStamp up to 5 minutes ahead of its clock): a worker 10
// minutes ahead of Tencent or behind it signs COS requests in Tencent's
// time (learned from ApplyUploadUGC) and renews its credentials on VOD's
// schedule; a signature service 4 minutes ahead of VOD or behind it signs
// what VOD takes. Each job completes with the source's bytes.
func TestClockSkewWithinToleranceCompletes(t *testing.T) {
	for _, c := range []struct {
		name            string
		tencent, ingest time.Duration
	}{
		{"worker 10m ahead, ingest 4m ahead of VOD", -10 * time.Minute, -6 * time.Minute},
		{"worker 10m behind, ingest 4m behind VOD", 10 * time.Minute, 6 * time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := skewedEnv(t, c.tencent, c.ingest)
			e.startWorker("w1")
			src, data := e.source("skew.mp4", 3<<20+1234)
			e.submit(&job.Job{ID: "skew", Source: src})
			s := e.waitState("skew", job.StateCompleted, 60*time.Second)
			e.storedEquals(s, data)
			if n := len(e.sim.Uploads()); n != 0 {
				t.Fatalf("%d multipart uploads left open", n)
			}
		})
	}
}

// Beyond VOD's tolerance the job fails at once, its error naming the clock
// to set right, by about how much, and which way.
func TestClockSkewBeyondToleranceNamesTheClock(t *testing.T) {
	for _, c := range []struct {
		name   string
		ingest time.Duration
		want   []string
	}{
		{"ingest 6m ahead", 6 * time.Minute, []string{"clock_skew", "signature service's clock (ingest) is 6m0s ahead of VOD's", vod.DefaultClockSkew.String()}},
		{"ingest 3h behind", -3 * time.Hour, []string{"clock_skew", "signature service's clock (ingest) is 3h0m0s behind VOD's"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := skewedEnv(t, 0, c.ingest)
			e.startWorker("w1")
			src, _ := e.source("skew.mp4", 1000)
			e.submit(&job.Job{ID: "skew", Source: src})
			s := e.waitState("skew", job.StateFailed, 60*time.Second)
			got := fmt.Sprintf("%s %s", s.Error.Code, s.Error.Message)
			for _, w := range c.want {
				// The offset is read to the second: allow one either way.
				if !strings.Contains(got, w) && !strings.Contains(got, strings.Replace(w, "m0s", "m1s", 1)) &&
					!strings.Contains(got, strings.Replace(strings.Replace(w, "6m0s", "5m59s", 1), "3h0m0s", "2h59m59s", 1)) {
					t.Errorf("error %q lacks %q", got, w)
				}
			}
			if s.Runs != 1 {
				t.Errorf("%d runs; a clock refusal is not retried", s.Runs)
			}
		})
	}
}
