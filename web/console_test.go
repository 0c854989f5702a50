package web

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/stack"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// lockedBuffer is a log the services write to from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// linesNaming is the last n lines that contain s.
func (l *lockedBuffer) linesNaming(s string, n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.b.String()) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out[max(0, len(out)-n):], "")
}

// consoleResult is what e2e/console.mjs prints.
type consoleResult struct {
	OK              bool             `json:"ok"`
	Error           string           `json:"error"`
	Page            string           `json:"page"` // the page in use at an error
	Steps           []string         `json:"steps"`
	Progress        []float64        `json:"progress"`
	Paused          string           `json:"paused"`
	Requeued        string           `json:"requeued"`
	Attempts        []int            `json:"attempts"`
	Replayed        int              `json:"replayed"`
	Forged          int              `json:"forged"`
	ReadOnlyButtons int              `json:"readOnlyButtons"`
	Overflow        map[string]int64 `json:"overflow"`
}

const (
	consoleAdminKey = "console-admin-key-0123456789"
	consoleReadKey  = "console-read-key-0123456789"
)

// TestConsoleInTheBrowser drives the operations console in Chromium against
// a running pipeline: sign in with the keyboard, watch a job's bar move,
// pause and resume it, cancel another, requeue a dead letter and see its
// job complete, replay a webhook delivery and see the attempt, refuse a
// forged action, show a read-only key no action, fit a narrow screen. It
// saves screenshots of the overview and a job page (VODPIPE_SCREENSHOTS
// names the folder; the README's are made so).
func TestConsoleInTheBrowser(t *testing.T) {
	requireBrowser(t)
	root := t.TempDir()
	// The services' log, for a failure to show what they did with the jobs.
	logs := &lockedBuffer{}
	st, err := stack.Start(t.Context(), stack.Options{
		Log:     slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		DataDir: t.TempDir(), SourceRoot: root, Workers: 1, JobsPerWorker: 2, PartSize: 1 << 20, Concurrency: 1,
		APIKeys: "ops:" + consoleAdminKey + ",viewer:" + consoleReadKey + ":read",
		// Slow enough for the bar to be watched and the job paused mid-way;
		// the script lifts it.
		Vodsim: func(c *vodsim.Config) { c.Faults.Bandwidth = 1 << 20 },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	api := client.NewClient(st.IngestURL, consoleAdminKey)

	// A webhook receiver and its subscription.
	var mu sync.Mutex
	got := map[string]int{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		mu.Unlock()
		_, _ = w.Write([]byte("thanks"))
	}))
	defer recv.Close()
	nt := client.NewClient(st.NotifyURL, consoleAdminKey)
	sub, err := nt.CreateSubscription(ctx, client.SubscriptionRequest{URL: recv.URL + "/hook", EventTypes: []string{job.EventCompleted}})
	if err != nil {
		t.Fatal(err)
	}

	// A job whose source is missing fails for good: a dead letter. Its file
	// is then put in place, for the requeue to succeed.
	dead := &job.Job{ID: "console-dead", Source: "file://" + filepath.Join(root, "late.mp4")}
	if _, _, err := api.Submit(ctx, dead, ""); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 30*time.Second, "the job to be dead-lettered", func() bool {
		v, err := api.Get(ctx, dead.ID)
		return err == nil && v.State == job.StateFailed
	})
	writeRandom(t, filepath.Join(root, "late.mp4"), 256<<10, 10)
	writeRandom(t, filepath.Join(root, "slow.mp4"), 12<<20, 11)
	writeRandom(t, filepath.Join(root, "other.mp4"), 12<<20, 12)
	for _, j := range []*job.Job{{ID: "console-slow", Source: "file://" + filepath.Join(root, "slow.mp4")},
		{ID: "console-other", Source: "file://" + filepath.Join(root, "other.mp4")}} {
		if _, _, err := api.Submit(ctx, j, ""); err != nil {
			t.Fatal(err)
		}
	}

	shots := os.Getenv("VODPIPE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	shots, _ = filepath.Abs(shots)
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(rctx, "node", "e2e/console.mjs")
	cmd.Env = append(os.Environ(), "BASE="+st.IngestURL, "ADMIN_KEY="+consoleAdminKey, "READ_KEY="+consoleReadKey,
		"SLOW=console-slow", "OTHER=console-other", "DEAD="+dead.ID, "SUB="+sub.ID, "VODSIM=http://"+st.VodsimAddr, "OUT="+shots)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("browser script: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	var r consoleResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("browser output: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if !r.OK {
		t.Fatalf("in the console, after %v: %s\npage:\n%s\nthe services' log lines of the jobs:\n%s", r.Steps, r.Error, r.Page,
			logs.linesNaming("console-", 80))
	}
	t.Logf("steps: %v; bar %v; attempts %v", r.Steps, r.Progress, r.Attempts)

	// What the browser saw, and what the pipeline holds.
	if len(r.Progress) != 2 || r.Progress[1] <= r.Progress[0] {
		t.Errorf("the bar did not move: %v", r.Progress)
	}
	if strings.TrimSpace(r.Paused) != "paused" {
		t.Errorf("after pause the page showed %q", r.Paused)
	}
	for id, want := range map[string]job.State{"console-slow": job.StateCompleted, "console-other": job.StateCanceled, dead.ID: job.StateCompleted} {
		if v, err := api.Get(ctx, id); err != nil || v.State != want {
			t.Errorf("job %s is %s (%v), want %s", id, v.State, err, want)
		}
	}
	if v, _ := api.Get(ctx, "console-slow"); v.Runs < 1 || v.FileID == "" {
		t.Errorf("the paused and resumed job: %+v", v)
	}
	if r.Replayed < 1 || len(r.Attempts) != 2 || r.Attempts[1] <= r.Attempts[0] {
		t.Errorf("the replay was not recorded: %d replayed rows, attempts %v", r.Replayed, r.Attempts)
	}
	mu.Lock()
	twice := 0
	for _, n := range got {
		if n >= 2 {
			twice++
		}
	}
	mu.Unlock()
	if twice != 1 {
		t.Errorf("the receiver got %d events twice, want the replayed one: %v", twice, got)
	}
	if r.Forged != http.StatusForbidden {
		t.Errorf("a forged cancel answered %d, want 403", r.Forged)
	}
	if r.ReadOnlyButtons != 0 {
		t.Errorf("the read-only key was shown %d action buttons", r.ReadOnlyButtons)
	}
	for path, px := range r.Overflow {
		if px > 0 {
			t.Errorf("%s is %d px wider than a 375 px screen", path, px)
		}
	}
	if len(r.Overflow) == 0 {
		t.Error("no narrow page was measured")
	}
	for _, f := range []string{"console-overview.png", "console-job.png"} {
		if fi, err := os.Stat(filepath.Join(shots, f)); err != nil || fi.Size() < 10<<10 {
			t.Errorf("screenshot %s: %v", f, err)
		}
	}
	if ups := st.Vodsim.Uploads(); len(ups) != 0 {
		t.Errorf("multipart uploads left open: %+v", ups)
	}
}
