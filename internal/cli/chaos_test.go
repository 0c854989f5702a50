package cli

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestChaosShortRun is the shortened chaos run: 60 small jobs with worker
// kills, one NATS node restart and one Redis restart, and every network
// fault, all real processes (this test binary re-executed as nodes and
// workers). 60 jobs keep it busy through the network schedule.
func TestChaosShortRun(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run: real processes, about a minute")
	}
	var stdout, stderr bytes.Buffer
	// The run ends once every job is terminal, about a minute here; --duration
	// only caps it. Under -race on a slow CI machine the start alone (a
	// 3-node cluster forming, services waiting for JetStream) can take half
	// of that, so the cap leaves room.
	code := runChaos(t.Context(), []string{"--jobs", "60", "--max-size", "4194304", "--duration", "4m",
		"--kill-every", "2s", "--bandwidth", "2097152", "--seed", "10", "--dir", t.TempDir()}, &stdout, &stderr)
	t.Logf("\n%s", stdout.String())
	if code != 0 {
		t.Fatalf("chaos exit %d\nstderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{"committed:  60 of 60", "partitioned from its peers", "Redis primary silent", "vodsim link limited", "1 NATS node restarts, 1 Redis faults", "replica 127.0.0.1:", "crashed:    notify, ingest", "bodies refused (507)", "clocks:     vodsim (VOD and COS) -3m0s off", "OK:"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	// Faults that must have happened (the run fails otherwise; the summary says how many).
	for _, re := range []string{`(\d+) worker kills`, `cluster: +(\d+) streams and key-value buckets at 3 replicas`,
		`webhooks: +(\d+) job.completed deliveries refused once`} {
		m := regexp.MustCompile(re).FindStringSubmatch(stdout.String())
		if len(m) != 2 {
			t.Errorf("summary lacks %q", re)
		} else if n, _ := strconv.Atoi(m[1]); n < 1 {
			t.Errorf("summary's %q: want at least 1", m[0])
		}
	}
	// notify's count of VOD events, summed over the notify process the run
	// crashed and its successor: one per job at least. An event the first
	// published and marked but was killed before counting comes back from
	// VOD and is counted by the successor as a repeat, so repeats count
	// here; those counted in the moment between reading the first's
	// metrics and its SIGKILL are missing (two seen in a run), so two may be
	// short. None names no job.
	// (The run itself checks every job's event at the receiver.)
	m := regexp.MustCompile(`vod events: (\d+) published naming their job .*, (\d+) naming none, (\d+) repeats`).FindStringSubmatch(stdout.String())
	if len(m) != 4 {
		t.Fatal("summary lacks its vod events line")
	}
	named, _ := strconv.Atoi(m[1])
	none, _ := strconv.Atoi(m[2])
	repeats, _ := strconv.Atoi(m[3])
	if named+repeats < 58 || none != 0 {
		t.Errorf("summary's vod events line %q: want at least 58 published naming their job or repeated, none naming no job", m[0])
	}
}
