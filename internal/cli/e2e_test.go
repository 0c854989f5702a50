package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/natsperm"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/stack"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

func startStack(t *testing.T, root string, bandwidth int64) *stack.Stack {
	t.Helper()
	st, err := stack.Start(t.Context(), stack.Options{
		DataDir: t.TempDir(), SourceRoot: root, Workers: 1, JobsPerWorker: 2, PartSize: 1 << 20, Concurrency: 4,
		LeaseTTL: 3 * time.Second, Queue: queue.Config{AckWait: 3 * time.Second},
		Vodsim: func(c *vodsim.Config) { c.Faults.Bandwidth = bandwidth },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func stored(t *testing.T, st *stack.Stack, fileID string) []byte {
	t.Helper()
	for _, f := range st.Vodsim.Files() {
		if f.FileID == fileID {
			rc, err := st.Vodsim.OpenObject(f.Bucket, f.VideoKey)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			b, _ := io.ReadAll(rc)
			return b
		}
	}
	t.Fatalf("FileId %s unknown to vodsim", fileID)
	return nil
}

func TestSubmitByAPIAndByCLIComplete(t *testing.T) {
	root := t.TempDir()
	st := startStack(t, root, 0)
	files := map[string]int64{"a.mp4": 200 << 10, "sub/b.mov": 3<<20 + 5, "sub/c.mkv": 1 << 20, "notes.txt": 10}
	for name, size := range files {
		if err := writeSample(filepath.Join(root, name), size, uint64(size)); err != nil {
			t.Fatal(err)
		}
	}
	// By the API.
	c := client.NewClient(st.IngestURL, st.APIKey)
	v, created, err := c.Submit(t.Context(), &job.Job{Source: "file://" + filepath.Join(root, "a.mp4")}, "")
	if err != nil || !created {
		t.Fatalf("submit: %+v %v", v, err)
	}
	// By the CLI: walks the folder (skipping notes.txt), watches over
	// notify's event stream, prints JSON. Through a proxy that counts what
	// reaches ingest: one batch, and no request per job while watching.
	proxy, requests := countingProxy(t, st.IngestURL)
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"submit", "--api", proxy, "--api-key", st.APIKey, "--watch", "--json",
		"--events", st.NotifyURL, "--source-context", "cli", root}, &out, &errOut)
	if code != 0 {
		t.Fatalf("submit --watch exit %d\nstdout %s\nstderr %s", code, out.String(), errOut.String())
	}
	if n := requests.Load(); n != 1 {
		t.Fatalf("submit --watch --events sent %d requests to ingest, want the one batch", n)
	}
	var rows []summary
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if len(rows) != 3 {
		t.Fatalf("rows = %+v (want the 3 video files)", rows)
	}
	for _, r := range rows {
		rel, _ := filepath.Rel(root, r.File)
		want, _ := os.ReadFile(filepath.Join(root, rel))
		if r.Outcome != "completed" || r.FileID == "" || !bytes.Equal(stored(t, st, r.FileID), want) {
			t.Fatalf("row %+v: not completed with the right bytes", r)
		}
	}
	// The API job completed too, and `vodpipe status` shows it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err = c.Get(t.Context(), v.ID)
		if err == nil && v.State == job.StateCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("API job: %+v %v", v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out.Reset()
	if code := run(t.Context(), []string{"status", "--api", st.IngestURL, "--api-key", st.APIKey, v.ID}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), v.FileID) {
		t.Fatalf("status: %d %s", code, out.String())
	}
	// Submitting the same folder again makes no new jobs: ids derive from path, size and mtime.
	out.Reset()
	if code := run(t.Context(), []string{"submit", "--api", st.IngestURL, "--api-key", st.APIKey, "--json", root}, &out, &errOut); code != 0 ||
		strings.Count(out.String(), `"outcome": "duplicate"`) != 3 {
		t.Fatalf("resubmit: %d %s", code, out.String())
	}
	// Watching a re-run ends at once with every job's outcome, over the
	// event stream and by polling alike; over the event stream with the one
	// batch, whose answer carries each duplicate's job (no read per file).
	for _, how := range [][]string{{"--events", st.NotifyURL}, {"--poll", "100ms"}} {
		out.Reset()
		requests.Store(0)
		args := append([]string{"submit", "--api", proxy, "--api-key", st.APIKey, "--watch", "--json"}, how...)
		if code := run(t.Context(), append(args, root), &out, &errOut); code != 0 {
			t.Fatalf("rerun %v: exit %d\n%s\n%s", how, code, out.String(), errOut.String())
		}
		if n := requests.Load(); how[0] == "--events" && n != 1 {
			t.Fatalf("rerun %v sent %d requests to ingest, want the one batch", how, n)
		}
		var again []summary
		if err := json.Unmarshal(out.Bytes(), &again); err != nil || len(again) != 3 {
			t.Fatalf("rerun %v: %v %s", how, err, out.String())
		}
		for _, r := range again {
			if r.Outcome != "completed" || r.FileID == "" {
				t.Fatalf("rerun %v: row %+v", how, r)
			}
		}
	}
	if n := len(st.Vodsim.Files()); n != 4 {
		t.Fatalf("vodsim files = %d, want 4", n)
	}
}

func TestPauseResumeCancelThroughTheAPI(t *testing.T) {
	root := t.TempDir()
	st := startStack(t, root, 4<<20)
	for _, n := range []string{"p.mp4", "c.mp4"} {
		if err := writeSample(filepath.Join(root, n), 24<<20, 7); err != nil {
			t.Fatal(err)
		}
	}
	ctx := t.Context()
	c := client.NewClient(st.IngestURL, st.APIKey)
	for _, id := range []string{"p", "c"} {
		if _, _, err := c.Submit(ctx, &job.Job{ID: id, Source: "file://" + filepath.Join(root, id+".mp4")}, ""); err != nil {
			t.Fatal(err)
		}
	}
	waitState := func(id string, want job.State) client.JobView {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			v, err := c.Get(ctx, id)
			if err == nil && v.State == want {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s: %+v %v, want %s", id, v, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitProgress := func(id string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			v, err := c.Get(ctx, id)
			if err == nil && v.BytesDone >= 2<<20 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no progress on %s", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Both controls go out back to back once both jobs are under way: a
	// pause lets the parts in flight finish, and waiting for it before
	// cancelling c would leave c seconds alone on the link to finish first.
	waitProgress("p")
	waitProgress("c")
	if _, err := c.Control(ctx, "p", "pause"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Control(ctx, "c", "cancel"); err != nil {
		t.Fatal(err)
	}
	waitState("p", job.StatePaused)
	waitState("c", job.StateCanceled)
	if _, err := c.Control(ctx, "p", "resume"); err != nil {
		t.Fatal(err)
	}
	v := waitState("p", job.StateCompleted)
	want, _ := os.ReadFile(filepath.Join(root, "p.mp4"))
	if !bytes.Equal(stored(t, st, v.FileID), want) {
		t.Fatal("resumed job stored different bytes")
	}
	if u := st.Vodsim.Uploads(); len(u) != 0 {
		t.Fatalf("open multipart uploads after cancel: %d", len(u))
	}
	if _, err := c.Control(ctx, "c", "resume"); err == nil {
		t.Fatal("resume of a canceled job accepted")
	}
}

// TestSlowCommitAnswerStillNamesTheJob: VOD commits and calls back at once,
// but its answer to the worker comes after notify's correlation wait (3 s),
// as it would to a worker killed before it recorded the FileId. VOD's event
// still names the job, found by the storage path recorded before the commit.
func TestSlowCommitAnswerStillNamesTheJob(t *testing.T) {
	root := t.TempDir()
	st, err := stack.Start(t.Context(), stack.Options{
		DataDir: t.TempDir(), SourceRoot: root, Workers: 1, JobsPerWorker: 1, PartSize: 1 << 20, Concurrency: 2,
		LeaseTTL: 10 * time.Second, Queue: queue.Config{AckWait: 10 * time.Second},
		Vodsim: func(c *vodsim.Config) {
			c.Faults.Rules = []vodsim.FaultRule{{Op: vodsim.OpCommit, AnswerLatency: vodsim.Duration(4500 * time.Millisecond)}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := writeSample(filepath.Join(root, "slow.mp4"), 300<<10, 9); err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(st.IngestURL, st.APIKey)
	v, _, err := c.Submit(t.Context(), &job.Job{ID: "slow-commit-1", Source: "file://" + filepath.Join(root, "slow.mp4")}, "")
	if err != nil {
		t.Fatal(err)
	}
	js := jetStreamAt(t, st.AdminNATS())
	events, err := js.Stream(t.Context(), queue.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	var ev job.Event
	testharness.WaitFor(t, 30*time.Second, "vod.file_uploaded of the job", func() bool {
		m, err := events.GetLastMsgForSubject(t.Context(), queue.EventFilterSubject(job.EventVODFileUpload, v.ID))
		return err == nil && json.Unmarshal(m.Data, &ev) == nil
	})
	testharness.WaitFor(t, 30*time.Second, "the job completed", func() bool {
		v, err = c.Get(t.Context(), v.ID)
		return err == nil && v.State == job.StateCompleted
	})
	var d job.FileUploadedData
	if err := json.Unmarshal(ev.Data, &d); err != nil || ev.JobID != v.ID || d.FileID != v.FileID {
		t.Fatalf("vod.file_uploaded %+v (%v): want job %s, FileId %s", ev, err, v.ID, v.FileID)
	}
	// Published once, naming the job: one vod.file_uploaded in the stream,
	// none on the subject of events without a job.
	info, err := events.Info(t.Context(), jetstream.WithSubjectFilter(queue.EventFilterSubject(job.EventVODFileUpload, "")))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.State.Subjects) != 1 || info.State.Subjects[queue.EventFilterSubject(job.EventVODFileUpload, v.ID)] != 1 {
		t.Fatalf("vod.file_uploaded subjects in the stream: %v, want one on the job's", info.State.Subjects)
	}
	// The job was found by the media URL, not by a FileId the worker
	// recorded late: the commit's answer came after notify's 3 s wait.
	resp, err := http.Get(st.NotifyURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if want := `vodpipe_notify_vod_events_total{outcome="published_by_media_url",source="callback"} 1` + "\n"; !bytes.Contains(body, []byte(want)) {
		t.Fatalf("notify's metrics lack %s:\n%s", want, grepLines(body, "vod_events_total"))
	}
}

// grepLines is the lines of b that contain s.
func grepLines(b []byte, s string) string {
	var out []string
	for l := range strings.Lines(string(b)) {
		if strings.Contains(l, s) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return strings.Join(out, "\n")
}

// TestDeadLetterCommands: a bad message published straight onto NATS is
// listed by `vodpipe dead-letters` with its job, code and reason, and
// `vodpipe dead-letter SEQ` prints it with the message as received; it
// cannot be requeued. A job that failed for good is requeued by
// `vodpipe dead-letters requeue SEQ` and completes.
func TestDeadLetterCommands(t *testing.T) {
	st := startStack(t, t.TempDir(), 0)
	js := jetStreamAt(t, st.NATSConfig(natsperm.Publisher)) // an outside publisher
	bad := `{"id":"cli-bad-1","source":42}`
	if _, err := js.PublishMsg(t.Context(), &nats.Msg{Subject: queue.JobsSubject, Data: []byte(bad),
		Header: nats.Header{jetstream.MsgIDHeader: []string{"cli-bad-1"}}}); err != nil {
		t.Fatal(err)
	}
	api := []string{"--api", st.IngestURL, "--api-key", st.APIKey}
	var out, errOut bytes.Buffer
	var seq string
	testharness.WaitFor(t, 20*time.Second, "the dead letter listed", func() bool {
		out.Reset()
		if code := run(t.Context(), append([]string{"dead-letters"}, api...), &out, &errOut); code != 0 {
			t.Fatalf("dead-letters exit %d: %s", code, errOut.String())
		}
		for l := range strings.Lines(out.String()) {
			if f := strings.Fields(l); len(f) >= 5 && f[2] == "cli-bad-1" && f[3] == "invalid_message" {
				seq = f[0]
				return true
			}
		}
		return false
	})
	if !strings.Contains(out.String(), "source") {
		t.Errorf("the listed reason does not name the bad field:\n%s", out.String())
	}
	out.Reset()
	var listed struct {
		DeadLetters []job.DeadLetterEntry `json:"deadLetters"`
	}
	if code := run(t.Context(), append([]string{"dead-letters", "-o", "json"}, api...), &out, &errOut); code != 0 ||
		json.Unmarshal(out.Bytes(), &listed) != nil || len(listed.DeadLetters) == 0 || listed.DeadLetters[0].JobID != "cli-bad-1" {
		t.Errorf("dead-letters -o json: exit %d\n%s", code, out.String())
	}
	out.Reset()
	if code := run(t.Context(), append(append([]string{"dead-letter"}, api...), seq), &out, &errOut); code != 0 {
		t.Fatalf("dead-letter %s exit %d: %s", seq, code, errOut.String())
	}
	var e job.DeadLetterEntry
	var msg bytes.Buffer
	if err := json.Unmarshal(out.Bytes(), &e); err != nil || e.JobID != "cli-bad-1" || json.Compact(&msg, e.Message) != nil || msg.String() != bad {
		t.Fatalf("dead-letter %s: %v\n%s", seq, err, out.String())
	}
	if code := run(t.Context(), append(append([]string{"dead-letter"}, api...), "999999"), &out, &errOut); code != 3 {
		t.Errorf("an unknown seq: exit %d, want 3", code)
	}
	// Its message is no job: it cannot be requeued, and says why.
	errOut.Reset()
	if code := run(t.Context(), append(append([]string{"dead-letters"}, api...), "requeue", seq), &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "source") {
		t.Errorf("requeue of a message that is no job: exit %d: %s", code, errOut.String())
	}

	// A job that failed for good (its source was missing) runs again once
	// its dead letter is requeued, and completes; the dead letter is gone.
	root := st.WorkerConfig("x").Root
	src := filepath.Join(root, "late.mp4")
	c := client.NewClient(st.IngestURL, st.APIKey)
	if _, _, err := c.Submit(t.Context(), &job.Job{ID: "cli-late-1", Source: "file://" + src}, ""); err != nil {
		t.Fatal(err)
	}
	// The worker files the dead letter before the failed status (a crash
	// between them is finished by the redelivery), so the test waits for both.
	var lateSeq string
	testharness.WaitFor(t, 20*time.Second, "the failed job's dead letter", func() bool {
		out.Reset()
		run(t.Context(), append([]string{"dead-letters"}, api...), &out, &errOut)
		for l := range strings.Lines(out.String()) {
			if f := strings.Fields(l); len(f) >= 5 && f[2] == "cli-late-1" {
				lateSeq = f[0]
				return true
			}
		}
		return false
	})
	testharness.WaitFor(t, 20*time.Second, "the job's failed status", func() bool {
		v, err := c.Get(t.Context(), "cli-late-1")
		if err == nil && v.State != job.StateRunning && v.State != job.StateFailed {
			t.Fatalf("the job before its requeue: %+v", v)
		}
		return err == nil && v.State == job.StateFailed
	})
	if err := writeSample(src, 300<<10, 7); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run(t.Context(), append(append([]string{"dead-letters"}, api...), "requeue", lateSeq), &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "job cli-late-1 requeued (queued)") {
		t.Fatalf("requeue: exit %d: %s %s", code, out.String(), errOut.String())
	}
	testharness.WaitFor(t, 20*time.Second, "the requeued job completed", func() bool {
		v, err := c.Get(t.Context(), "cli-late-1")
		return err == nil && v.State == job.StateCompleted && v.FileID != ""
	})
	if code := run(t.Context(), append(append([]string{"dead-letters"}, api...), "requeue", lateSeq), &out, &errOut); code != 3 {
		t.Errorf("a second requeue of the same dead letter: exit %d, want 3 (gone)", code)
	}
}

// jetStreamAt is a JetStream context on a new connection made with cfg,
// closed with the test.
func jetStreamAt(t *testing.T, cfg natsconf.NATS) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(testharness.ConnectWith(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestSubmitStreamsItsBatches: `submit --list` sends its batches as it
// reads the list (three requests for 1,200 sources in batches of 500) and
// prints one JSON array of every row; run again, every job is a duplicate.
func TestSubmitStreamsItsBatches(t *testing.T) {
	st, err := stack.Start(t.Context(), stack.Options{DataDir: t.TempDir(), SourceRoot: t.TempDir(), Workers: 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	list := filepath.Join(t.TempDir(), "urls.txt")
	var b strings.Builder
	b.WriteString("# a comment, then 1,200 sources\n")
	for i := range 1200 {
		fmt.Fprintf(&b, "https://media.example.com/library/%04d.mp4\n", i)
	}
	if err := os.WriteFile(list, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	proxy, requests := countingProxy(t, st.IngestURL)
	for _, want := range []string{"queued", "duplicate"} {
		requests.Store(0)
		var out, errOut bytes.Buffer
		if code := run(t.Context(), []string{"submit", "--api", proxy, "--api-key", st.APIKey, "--list", list,
			"--batch", "500", "--json"}, &out, &errOut); code != 0 {
			t.Fatalf("submit: exit %d\n%s", code, errOut.String())
		}
		var rows []summary
		if err := json.Unmarshal(out.Bytes(), &rows); err != nil || len(rows) != 1200 {
			t.Fatalf("%d rows, %v", len(rows), err)
		}
		for _, r := range rows {
			if r.Outcome != want {
				t.Fatalf("row %+v, want %s", r, want)
			}
		}
		if n := requests.Load(); n != 3 {
			t.Fatalf("%d requests for 1,200 sources in batches of 500", n)
		}
	}
}

// countingProxy forwards to target and counts the requests it forwarded.
func countingProxy(t *testing.T, target string) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	return hookedProxy(t, target, func(*http.Request) { n.Add(1) }), &n
}

// hookedProxy is a reverse proxy to target that calls hook with each
// request before passing it on; it returns the proxy's URL.
func hookedProxy(t *testing.T, target string, hook func(*http.Request)) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hook(r)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	return proxy.URL
}

// TestJobsShowsCountsAndOnePage: `vodpipe jobs` starts with the counts by
// state, shows one page and how to get the next; --all shows every job.
func TestJobsShowsCountsAndOnePage(t *testing.T) {
	st, err := stack.Start(t.Context(), stack.Options{DataDir: t.TempDir(), SourceRoot: t.TempDir(), Workers: 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	var jobs []*job.Job
	for i := range 250 {
		jobs = append(jobs, &job.Job{V: 1, ID: fmt.Sprintf("j-%03d", i), Source: fmt.Sprintf("https://media.example.com/%03d.mp4", i)})
	}
	if _, err := client.NewClient(st.IngestURL, st.APIKey).SubmitBatch(t.Context(), jobs); err != nil {
		t.Fatal(err)
	}
	jobsOut := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(t.Context(), append([]string{"jobs", "--api", st.IngestURL, "--api-key", st.APIKey}, args...), &out, &errOut); code != 0 {
			t.Fatalf("jobs %v: exit %d\n%s", args, code, errOut.String())
		}
		return out.String()
	}
	first := jobsOut("--limit", "100")
	if !strings.HasPrefix(first, "250 jobs: ") || !strings.Contains(first, " queued, ") || strings.Count(first, "\nj-") != 100 {
		t.Fatalf("first page:\n%s", first)
	}
	_, more, ok := strings.Cut(first, "more: vodpipe jobs --cursor ")
	if !ok {
		t.Fatalf("no hint for the next page:\n%s", first)
	}
	cursor, _, _ := strings.Cut(more, " ")
	if second := jobsOut("--limit", "100", "--cursor", cursor); !strings.Contains(second, "\nj-100 ") || strings.Count(second, "\nj-") != 100 {
		t.Fatalf("second page:\n%s", second)
	}
	if every := jobsOut("--all", "--limit", "100"); strings.Count(every, "\nj-") != 250 || strings.Contains(every, "more:") {
		t.Fatalf("--all:\n%s", every)
	}
	// The same as JSON, for scripts: the counts, a page and its cursor; with
	// --all every job. Flags after the command's own, -o for --output.
	var page struct {
		Counts struct {
			All int `json:"all"`
		} `json:"counts"`
		Jobs       []client.JobView `json:"jobs"`
		NextCursor string           `json:"nextCursor"`
	}
	if err := json.Unmarshal([]byte(jobsOut("--limit", "100", "-o", "json")), &page); err != nil || page.Counts.All != 250 ||
		len(page.Jobs) != 100 || page.NextCursor == "" {
		t.Fatalf("jobs -o json: %v, %d counted, %d listed, cursor %q", err, page.Counts.All, len(page.Jobs), page.NextCursor)
	}
	first1 := page.Jobs[0].ID
	page.NextCursor, page.Jobs = "", nil
	if err := json.Unmarshal([]byte(jobsOut("--output", "json", "--all")), &page); err != nil || len(page.Jobs) != 250 || page.NextCursor != "" {
		t.Fatalf("jobs --output json --all: %v, %d listed", err, len(page.Jobs))
	}
	// One job as a table; the listing's flags are not status's.
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"status", first1, "--output", "table", "--api", st.IngestURL, "--api-key", st.APIKey}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "STATE") || !strings.Contains(out.String(), first1) {
		t.Fatalf("status --output table: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if code := run(t.Context(), []string{"status", first1, "--state", "queued"}, &out, &errOut); code != 2 {
		t.Errorf("status --state: exit %d, want 2 (a flag of jobs only)", code)
	}
}

// TestNotifyCommands: `vodpipe subscriptions` creates a webhook (its secret
// shown once), lists it, shows its delivery attempts once a job completed,
// replays its events and deletes it; `vodpipe events` prints the event
// stream from a given id as JSON lines until stopped.
func TestNotifyCommands(t *testing.T) {
	root := t.TempDir()
	st := startStack(t, root, 0)
	var mu sync.Mutex
	delivered := 0
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		delivered++
		mu.Unlock()
	}))
	t.Cleanup(rcv.Close)
	nf := []string{"--notify", st.NotifyURL, "--api-key", st.APIKey}
	cli := func(args ...string) (string, int) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(t.Context(), append(args, nf...), &out, &errOut)
		return out.String() + errOut.String(), code
	}
	out, code := cli("subscriptions", "create", rcv.URL, "--type", "job.completed", "-o", "json")
	var sub client.Subscription
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil || !strings.HasPrefix(sub.Secret, "whsec_") {
		t.Fatalf("subscriptions create: exit %d\n%s", code, out)
	}
	if out, code := cli("subscriptions", "list"); code != 0 || !strings.Contains(out, sub.ID) || strings.Contains(out, "whsec_") {
		t.Fatalf("subscriptions list: exit %d\n%s", code, out)
	}
	src := filepath.Join(root, "hooked.mp4")
	if err := writeSample(src, 100<<10, 3); err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(st.IngestURL, st.APIKey)
	if _, _, err := c.Submit(t.Context(), &job.Job{ID: "hooked-1", Source: "file://" + src}, ""); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 30*time.Second, "the webhook delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return delivered > 0
	})
	var attempts struct {
		Attempts []client.Attempt `json:"attempts"`
	}
	testharness.WaitFor(t, 10*time.Second, "the delivery's attempt recorded", func() bool {
		out, code := cli("subscriptions", "attempts", sub.ID, "-o", "json")
		return code == 0 && json.Unmarshal([]byte(out), &attempts) == nil && len(attempts.Attempts) > 0
	})
	if a := attempts.Attempts[0]; a.Outcome != "delivered" || a.JobID != "hooked-1" {
		t.Errorf("attempt = %+v", a)
	}
	if out, code := cli("subscriptions", "replay", sub.ID, "--since", "1h"); code != 0 || !strings.Contains(out, "replay rp_") {
		t.Errorf("subscriptions replay: exit %d\n%s", code, out)
	}
	// The event stream from its start, until stopped.
	ctx, cancel := context.WithCancel(t.Context())
	var lines lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"events", "--type", "job.completed", "--after", "0"}, nf...), &lines, io.Discard)
	}()
	testharness.WaitFor(t, 10*time.Second, "vodpipe events printing job.completed", func() bool {
		return strings.Contains(lines.String(), `"jobId":"hooked-1"`)
	})
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("events: exit %d", code)
	}
	var e job.Event
	if first, _, _ := strings.Cut(lines.String(), "\n"); json.Unmarshal([]byte(first), &e) != nil || e.Type != job.EventCompleted {
		t.Errorf("events printed %q, want JSON events", lines.String())
	}
	if out, code := cli("subscriptions", "delete", sub.ID); code != 0 {
		t.Fatalf("subscriptions delete: exit %d\n%s", code, out)
	}
	if out, code := cli("subscriptions", "attempts", sub.ID); code != 3 {
		t.Errorf("attempts of a deleted subscription: exit %d, want 3\n%s", code, out)
	}
}
