package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vbauerster/mpb/v8"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// pendingBytes is the heap one pending job of the watch holds, measured
// over n jobs added in batches of 500 the way submit adds them.
func pendingBytes(tb testing.TB, n int) (perJob float64, w *watcher) {
	tb.Helper()
	p := mpb.New(mpb.WithOutput(io.Discard))
	tb.Cleanup(p.Shutdown)
	var buf bytes.Buffer
	w = newWatcher(p, &buf, true)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	batch := make([]*item, 0, 500)
	for i := range n {
		display := fmt.Sprintf("/library/show-%04d/episode-%06d.mp4", i/1000, i)
		id := fmt.Sprintf("%s|%d|%d", display, 1<<20, i)
		k := keyOf(id) // any ten bytes: a hash, as walkSources makes them
		batch = append(batch, &item{source: "file://" + display, display: display, key: k, id: k.id(), size: 1 << 20})
		if len(batch) == cap(batch) {
			w.add(batch)
			batch = batch[:0]
		}
	}
	w.add(batch)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(w)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n), w
}

// TestWatchKeepsAKeyPerPendingJob: what `submit --watch` keeps per job it
// follows is a key and a size, not the file's record: 200,000 pending jobs
// hold under 64 bytes each (a record per file held about 1.5 KB), and a
// job's event ends it and lets it go.
func TestWatchKeepsAKeyPerPendingJob(t *testing.T) {
	const n = 200_000
	per, w := pendingBytes(t, n)
	if per > 64 {
		t.Errorf("%.0f bytes held per pending job, want at most 64", per)
	}
	t.Logf("%.1f bytes per pending job", per)
	if w.open() != n {
		t.Fatalf("%d jobs open, want %d", w.open(), n)
	}
	// One of them starts and completes: its row names the file its
	// metadata carries, and it is no longer held.
	display := "/library/show-0000/episode-000007.mp4"
	k := keyOf(fmt.Sprintf("%s|%d|%d", display, 1<<20, 7))
	meta := fileMetadata(display)
	for _, e := range []struct {
		typ  string
		data any
	}{
		{job.EventStarted, job.StartedData{Attempt: 1, Worker: "w", Metadata: meta}},
		{job.EventProgress, job.ProgressData{BytesDone: 1 << 19, BytesTotal: 1 << 20}},
		{job.EventCompleted, job.CompletedData{FileID: "fid-7", MediaURL: "https://m/7", Bytes: 1 << 20, Metadata: meta}},
	} {
		ev, err := job.NewEvent(e.typ, k.id(), e.data)
		if err != nil {
			t.Fatal(err)
		}
		w.event(ev)
	}
	// Another job's events change nothing.
	other, _ := job.NewEvent(job.EventCompleted, "someone-elses", job.CompletedData{FileID: "x"})
	w.event(other)
	if w.open() != n-1 {
		t.Fatalf("%d jobs open after one completed, want %d", w.open(), n-1)
	}
	w.closeRows()
	var rows []summary
	if err := json.Unmarshal(w.out.(*bytes.Buffer).Bytes(), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("rows: %v %s", err, w.out.(*bytes.Buffer).String())
	}
	if r := rows[0]; r.File != display || r.JobID != k.id() || r.FileID != "fid-7" || r.Outcome != "completed" || r.Size != 1<<20 {
		t.Fatalf("row %+v", r)
	}
}

// BenchmarkWatchPendingJob reports the heap a pending job of `submit
// --watch` holds (bytes/job) at a million jobs.
func BenchmarkWatchPendingJob(b *testing.B) {
	for b.Loop() {
		per, _ := pendingBytes(b, 1_000_000)
		b.ReportMetric(per, "bytes/job")
	}
}

// TestWatchFollowsManyBatches: `submit --watch` over the event stream
// sends the walk's batches as it goes (six batches of two here), follows
// jobs whose events may come before their batch's answer, prints a row
// per job with the file from the job's metadata, and ends with a summary.
func TestWatchFollowsManyBatches(t *testing.T) {
	root := t.TempDir()
	st := startStack(t, root, 0)
	for i := range 12 {
		if err := writeSample(filepath.Join(root, fmt.Sprintf("d%d/clip-%02d.mp4", i%3, i)), int64(64<<10+i), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	proxy, requests := countingProxy(t, st.IngestURL)
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if code := run(ctx, []string{"submit", "--api", proxy, "--api-key", st.APIKey, "--watch", "--json", "--batch", "2",
		"--events", st.NotifyURL, root}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	if n := requests.Load(); n != 6 {
		t.Errorf("%d requests to ingest, want the 6 batches", n)
	}
	var rows []summary
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil || len(rows) != 12 {
		t.Fatalf("rows: %v\n%s", err, out.String())
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if r.Outcome != "completed" || r.FileID == "" || !strings.HasPrefix(r.File, root) || seen[r.File] {
			t.Errorf("row %+v", r)
		}
		seen[r.File] = true
		v, err := client.NewClient(st.IngestURL, st.APIKey).Get(t.Context(), r.JobID)
		if err != nil || v.FileID != r.FileID || v.Job.Source != "file://"+r.File {
			t.Errorf("row %+v: the job says %+v %v", r, v, err)
		}
	}
	if !strings.Contains(errOut.String(), "12 jobs: 12 completed") {
		t.Errorf("no summary line:\n%s", errOut.String())
	}
}

// TestWatchInterruptedThenRunAgain: a `submit --watch` interrupted while
// its jobs run says so and exits 1, the jobs go on; the same command run
// again creates no job twice and follows them all to their end.
func TestWatchInterruptedThenRunAgain(t *testing.T) {
	root := t.TempDir()
	st := startStack(t, root, 4<<20) // vodsim takes 4 MiB/s: the jobs last seconds
	for i := range 6 {
		if err := writeSample(filepath.Join(root, fmt.Sprintf("clip-%d.mp4", i)), 2<<20+int64(i), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	if err := walkSources([]string{root}, "", 0, func(it *item) error { ids = append(ids, it.id); return nil }, noSkips(t)); err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(st.IngestURL, st.APIKey)
	args := []string{"submit", "--api", st.IngestURL, "--api-key", st.APIKey, "--watch", "--json", "--events", st.NotifyURL, root}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var out, errOut bytes.Buffer
	go func() { done <- run(ctx, args, &out, &errOut) }()
	// Interrupted once a job has completed and before all have.
	testharness.WaitFor(t, 60*time.Second, "a job completed", func() bool {
		v, err := c.Get(t.Context(), ids[0])
		return err == nil && v.State == job.StateCompleted
	})
	cancel()
	if code := <-done; code != 1 || !strings.Contains(errOut.String(), "interrupted; jobs keep running") {
		t.Fatalf("interrupted: exit %d\n%s", code, errOut.String())
	}
	var first []summary
	if err := json.Unmarshal(out.Bytes(), &first); err != nil || len(first) >= len(ids) {
		t.Fatalf("the interrupted run's rows (want fewer than %d): %v\n%s", len(ids), err, out.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run(t.Context(), args, &out, &errOut); code != 0 {
		t.Fatalf("run again: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	var again []summary
	if err := json.Unmarshal(out.Bytes(), &again); err != nil || len(again) != len(ids) {
		t.Fatalf("run again: %v\n%s", err, out.String())
	}
	for _, r := range again {
		if r.Outcome != "completed" || r.FileID == "" {
			t.Errorf("row %+v", r)
		}
	}
	if n := len(st.Vodsim.Files()); n != len(ids) {
		t.Errorf("vodsim holds %d files for %d sources: a job ran twice", n, len(ids))
	}
}

// TestWatchCountsWhatCompletedJobsSent: a URL's size is unknown to the
// walk (0); its job's completion says how much was sent, and the row and
// the summary count that. A failed job's bytes leave the overall total.
func TestWatchCountsWhatCompletedJobsSent(t *testing.T) {
	p := mpb.New(mpb.WithOutput(io.Discard))
	defer p.Shutdown()
	var out bytes.Buffer
	w := newWatcher(p, &out, true)
	url, file := keyOf("https://media.example/a.mp4"), keyOf("/m/b.mp4")
	w.add([]*item{{key: url, id: url.id(), display: "https://media.example/a.mp4"}, {key: file, id: file.id(), display: "/m/b.mp4", size: 700}})
	if w.total != 700 {
		t.Fatalf("overall total %d, want 700", w.total)
	}
	done, _ := job.NewEvent(job.EventCompleted, url.id(), job.CompletedData{FileID: "f1", Bytes: 5000})
	w.event(done)
	failed, _ := job.NewEvent(job.EventFailed, file.id(), job.FailedData{Error: job.Error{Code: "source_missing", Message: "gone"}})
	w.event(failed)
	if w.open() != 0 || w.total != 5000 || w.bytes != 5000 {
		t.Fatalf("open %d, total %d, bytes %d; want 0, 5000, 5000", w.open(), w.total, w.bytes)
	}
	w.closeRows()
	var rows []summary
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil || len(rows) != 2 || rows[0].Size != 5000 ||
		rows[1].Outcome != "failed" || !strings.Contains(rows[1].Error, "source_missing") {
		t.Fatalf("rows %+v %v", rows, err)
	}
	if s := w.summaryLine(time.Second); !strings.Contains(s, "2 jobs: 1 completed, 1 failed") || !strings.Contains(s, "4.9 KiB uploaded") {
		t.Fatalf("summary %q", s)
	}
}

// TestWatchBoundsItsBars: however many jobs have started and not ended
// (runs that failed for a moment wait for their retry without an event),
// at most maxBars have a bar; a bar freed by a job's end goes to the next
// job that starts.
func TestWatchBoundsItsBars(t *testing.T) {
	p := mpb.New(mpb.WithOutput(io.Discard))
	defer p.Shutdown()
	w := newWatcher(p, io.Discard, true)
	var items []*item
	for i := range 3 * maxBars {
		k := keyOf(fmt.Sprint("job-", i))
		items = append(items, &item{key: k, id: k.id(), size: 100})
	}
	w.add(items)
	emit := func(typ string, it *item, data any) {
		e, err := job.NewEvent(typ, it.id, data)
		if err != nil {
			t.Fatal(err)
		}
		w.event(e)
	}
	for _, it := range items[:2*maxBars] {
		emit(job.EventStarted, it, job.StartedData{Attempt: 1})
		emit(job.EventProgress, it, job.ProgressData{BytesDone: 50, BytesTotal: 100})
	}
	if len(w.active) != 2*maxBars || w.bars != maxBars {
		t.Fatalf("%d running, %d bars; want %d, %d", len(w.active), w.bars, 2*maxBars, maxBars)
	}
	emit(job.EventCompleted, items[0], job.CompletedData{FileID: "f", Bytes: 100})
	emit(job.EventStarted, items[2*maxBars], job.StartedData{Attempt: 1})
	if w.bars != maxBars || w.active[items[2*maxBars].key].bar == nil {
		t.Fatalf("%d bars after one ended and another started; the new one has a bar: %v", w.bars, w.active[items[2*maxBars].key].bar != nil)
	}
}

// TestOnlyServiceCommandsTakeTheServicesGC: Main's hook for the services'
// GC target runs in the commands that run services, fixed for the bench
// (its figures are measured at one target), tuned for the others, and not
// in the client commands.
func TestOnlyServiceCommandsTakeTheServicesGC(t *testing.T) {
	const none, tuned, fixed = "none", "tuned", "fixed"
	for args, want := range map[string]string{"up --help": tuned, "demo --help": tuned, "bench --help": fixed,
		"chaos --help": tuned, "submit --help": none, "jobs --help": none, "version": none, "config": none} {
		called := none
		runServing(t.Context(), strings.Fields(args), io.Discard, io.Discard, func(f bool) {
			called = map[bool]string{false: tuned, true: fixed}[f]
		})
		if called != want {
			t.Errorf("%q: the services' GC hook: %s, want %s", args, called, want)
		}
	}
}

// TestFileMetadataKeepsTheJobValid: the file submit names in a job's
// metadata is a URL less its query and userinfo, and a name too long for
// the job's metadata bound keeps its end instead of costing the job.
func TestFileMetadataKeepsTheJobValid(t *testing.T) {
	if got := string(fileMetadata("https://user:pw@media.example/a.mp4?sig=secret")); strings.Contains(got, "secret") || strings.Contains(got, "pw") {
		t.Errorf("metadata %s shows the URL's credentials", got)
	}
	long := "/media/" + strings.Repeat("&", 2000) + "/clip.mp4" // a path can hold it; JSON writes each as \u0026
	src, _, err := toSourceURL(long)
	if err != nil {
		t.Fatal(err)
	}
	j := &job.Job{V: 1, ID: "f-long", Source: src, Metadata: fileMetadata(long)}
	j.Normalize()
	if err := j.Validate(); err != nil {
		t.Fatalf("a job of a long name: %v", err)
	}
	if f := fileOf(j.Metadata); !strings.HasSuffix(f, "/clip.mp4") {
		t.Errorf("file %q lost the name's end", f)
	}
}

// deafProxy forwards TCP connections to target; deafen makes the
// connections open at that moment silent (their bytes dropped both ways,
// their sockets left open: a NAT entry or a load balancer that forgot the
// connection, a peer that froze), while later connections work.
type deafProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*atomic.Bool
	opened atomic.Int64
}

func newDeafProxy(t *testing.T, target string) *deafProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &deafProxy{ln: ln, target: target}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			deaf := new(atomic.Bool)
			p.mu.Lock()
			p.conns = append(p.conns, deaf)
			p.mu.Unlock()
			p.opened.Add(1)
			pump := func(dst, src net.Conn) {
				b := make([]byte, 32<<10)
				for {
					n, err := src.Read(b)
					if n > 0 && !deaf.Load() {
						if _, werr := dst.Write(b[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						if !deaf.Load() {
							dst.Close()
						}
						return
					}
				}
			}
			go pump(up, c)
			go pump(c, up)
			t.Cleanup(func() { c.Close(); up.Close() })
		}
	}()
	return p
}

func (p *deafProxy) deafen() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.conns {
		d.Store(true)
	}
}

// TestWatchReconnectsASilentEventStream: an event stream whose connection
// goes silent without being closed (a NAT or a load balancer that dropped
// it, a frozen peer) sends no heartbeat any more; the watch takes that for
// a broken stream after --events-idle, reconnects after the last event it
// saw, catches up and ends. It used to wait on the silent connection for
// ever although every job had completed.
func TestWatchReconnectsASilentEventStream(t *testing.T) {
	const idle = 2 * time.Second // notify's heartbeat stays 15 s: a quiet stream may reconnect too, harmlessly
	root := t.TempDir()
	st := startStack(t, root, 1<<20) // 1 MiB/s: the jobs last a few seconds
	for i := range 3 {
		if err := writeSample(filepath.Join(root, fmt.Sprintf("clip-%d.mp4", i)), 1<<20+int64(i), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	if err := walkSources([]string{root}, "", 0, func(it *item) error { ids = append(ids, it.id); return nil }, noSkips(t)); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(st.NotifyURL)
	proxy := newDeafProxy(t, u.Host)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"submit", "--api", st.IngestURL, "--api-key", st.APIKey, "--watch", "--json",
			"--events", "http://" + proxy.ln.Addr().String(), "--events-idle", idle.String(), root}, &out, &errOut)
	}()
	c := client.NewClient(st.IngestURL, st.APIKey)
	testharness.WaitFor(t, 30*time.Second, "the jobs submitted", func() bool {
		for _, id := range ids {
			if _, err := c.Get(t.Context(), id); err != nil {
				return false
			}
		}
		return true
	})
	proxy.deafen() // the event stream's connection goes silent, open
	testharness.WaitFor(t, 60*time.Second, "every job completed", func() bool {
		for _, id := range ids {
			if v, err := c.Get(t.Context(), id); err != nil || v.State != job.StateCompleted {
				return false
			}
		}
		return true
	})
	// A silence of idle, a second before reconnecting, the catching up:
	// well within ten times idle.
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(errOut.String(), "3 jobs: 3 completed") {
			t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
		}
		if !strings.Contains(errOut.String(), "event stream went silent") {
			t.Errorf("the watch did not say that the stream went silent:\n%s", errOut.String())
		}
	case <-time.After(10 * idle):
		cancel()
		<-done
		t.Fatalf("every job completed %s ago and the watch has not ended: it waits on an event stream that went silent "+
			"(%d connections to notify opened)\nstderr:\n%s", 10*idle, proxy.opened.Load(), errOut.String())
	}
}

// TestWatchCountsAFileNamedTwiceOnce: a file named twice (overlapping
// arguments, a list with a path twice, a folder and a file in it) whose
// job ended before its second batch is one job, counted once with its
// bytes; it used to count as two jobs ("2 jobs: 2 completed").
func TestWatchCountsAFileNamedTwiceOnce(t *testing.T) {
	p := mpb.New(mpb.WithOutput(io.Discard))
	defer p.Shutdown()
	var out bytes.Buffer
	w := newWatcher(p, &out, true)
	k := keyOf("/m/a.mp4|700|1")
	mk := func() []*item { return []*item{{key: k, id: k.id(), display: "/m/a.mp4", size: 700}} }
	// First batch: queued, then it runs and completes.
	b1 := mk()
	w.add(b1)
	w.answered(b1, client.BatchResponse{Items: []client.BatchItem{{Index: 0, ID: k.id(), Result: "queued", State: job.StateQueued}}})
	done, _ := job.NewEvent(job.EventCompleted, k.id(), job.CompletedData{FileID: "f1", Bytes: 700, Metadata: fileMetadata("/m/a.mp4")})
	w.event(done)
	// The same file in a later batch: a duplicate, completed.
	b2 := mk()
	w.add(b2)
	view := client.JobView{ID: k.id(), State: job.StateCompleted, FileID: "f1", BytesTotal: 700, BytesDone: 700}
	w.answered(b2, client.BatchResponse{Items: []client.BatchItem{{Index: 0, ID: k.id(), Result: "duplicate", State: job.StateCompleted, Job: &view}}})
	if s := w.summaryLine(0); !strings.HasPrefix(s, "1 jobs: 1 completed") || w.bytes != 700 || !w.allCompleted() {
		t.Errorf("one job, one file: summary %q, %d bytes counted", s, w.bytes)
	}
	w.closeRows()
	var rows []summary
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil || len(rows) != 1 {
		t.Errorf("one job, one row: %v\n%s", err, out.String())
	}
}

// TestWatchRemembersEndedJobsBounded: the jobs a watch remembers as ended
// (to count a file named twice once) are the last maxEnded: the oldest is
// forgotten first, and a full set holds at most 4 MiB of heap.
func TestWatchRemembersEndedJobsBounded(t *testing.T) {
	var r recentKeys
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 3 * maxEnded {
		r.add(keyOf(fmt.Sprint("job-", i)))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(&r)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%.1f MiB held for the last %d jobs ended", float64(held)/(1<<20), maxEnded)
	if held > 4<<20 {
		t.Errorf("%.1f MiB held for %d keys, want at most 4 MiB", float64(held)/(1<<20), maxEnded)
	}
	if len(r.set) != maxEnded || len(r.ring) != maxEnded {
		t.Fatalf("%d keys in the set, %d in the ring; want %d", len(r.set), len(r.ring), maxEnded)
	}
	if r.has(keyOf(fmt.Sprint("job-", 2*maxEnded-1))) || !r.has(keyOf(fmt.Sprint("job-", 2*maxEnded))) ||
		!r.has(keyOf(fmt.Sprint("job-", 3*maxEnded-1))) {
		t.Errorf("the set does not hold exactly the last %d keys", maxEnded)
	}
}

// TestWatchAsksIngestAboutJobsItsStreamIsSilentOn: an end the event stream
// will not bring (a duplicate answered from a lagging replica as running
// though its job.completed was published before the stream opened, events
// gone from the EVENTS stream) would hold the watch open for good. Here the
// stream is one that carries only heartbeats, so no event of the jobs ever
// comes; once it has been quiet on them for recheckQuiet, the watch asks
// ingest about some of its open jobs and ends those that ended.
func TestWatchAsksIngestAboutJobsItsStreamIsSilentOn(t *testing.T) {
	root := t.TempDir()
	st := startStack(t, root, 0)
	for i := range 3 {
		if err := writeSample(filepath.Join(root, fmt.Sprintf("clip-%d.mp4", i)), 64<<10+int64(i), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_, _ = io.WriteString(w, "retry: 2000\n: vodpipe events\n\n")
		_ = rc.Flush()
		beat := time.NewTicker(100 * time.Millisecond)
		defer beat.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-beat.C:
				if _, err := io.WriteString(w, ": heartbeat\n\n"); err != nil || rc.Flush() != nil {
					return
				}
			}
		}
	}))
	t.Cleanup(silent.Close)
	api := client.NewClient(st.IngestURL, st.APIKey)
	newJob := func(it *item) *job.Job {
		return &job.Job{V: 1, ID: it.id, Source: it.source, Metadata: fileMetadata(it.display)}
	}
	var out, errOut lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- watchStream(t.Context(), "vodpipe submit", client.NewClient(silent.URL, st.APIKey), api,
			func(ctx context.Context, w *watcher) (int, error) {
				return w.submitAll(ctx, api, []string{root}, "", newJob, batching{size: 100})
			}, &out, &errOut, true, func(w *watcher) { w.recheckQuiet = 500 * time.Millisecond })
	}()
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(errOut.String(), "3 jobs: 3 completed") {
			t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
		}
		var rows []summary
		if err := json.Unmarshal([]byte(out.String()), &rows); err != nil || len(rows) != 3 {
			t.Fatalf("rows %v: %s", err, out.String())
		}
		for _, r := range rows {
			if r.Outcome != string(job.StateCompleted) || r.FileID == "" {
				t.Errorf("row %+v: want completed with its FileId, as ingest has it", r)
			}
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the jobs' stream brought nothing and the watch did not end within a minute: it did not ask ingest\nstderr:\n%s", errOut.String())
	}
}
