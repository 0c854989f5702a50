package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/stack"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
	"github.com/vodpipe/vodpipe/pkg/webhook"
)

// demoFiles are the sample media: small ones go up in one PutObject, large ones in parts.
var demoFiles = []struct {
	name string
	size int64
}{
	{"trailer.mp4", 700 << 10},
	{"interview.mp4", 3 << 20},
	{"lecture.mov", 14 << 20},
	{"concert.mkv", 36 << 20},
	{"documentary.mp4", 64 << 20},
}

// runDemo starts the whole pipeline in this process, uploads sample media
// with covers and a task flow through faults and a worker crash, and checks
// that every job completed and every VOD callback arrived.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// The crash goroutine and the progress report both print: one lock for both.
	stdout = &syncWriter{w: stdout}
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	keep := fs.String("dir", "", "keep sample media and data in this folder (default: a temporary one)")
	faults := fs.Bool("faults", true, "inject COS errors and connection resets into vodsim")
	verbose := fs.Bool("v", false, "log every component's messages to stderr")
	bandwidth := fs.Int64("bandwidth", 24<<20, "vodsim's bandwidth limit in bytes per second (0: none)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	dir := *keep
	if dir == "" {
		d, err := os.MkdirTemp("", "vodpipe-demo-")
		if err != nil {
			fmt.Fprintln(stderr, "vodpipe demo:", err)
			return 1
		}
		defer os.RemoveAll(d)
		dir = d
	}
	media := filepath.Join(dir, "media")
	if err := os.MkdirAll(media, 0o755); err != nil {
		fmt.Fprintln(stderr, "vodpipe demo:", err)
		return 1
	}
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}

	fmt.Fprintln(stdout, "vodpipe demo: creating sample media in", media)
	var total int64
	for i, f := range demoFiles {
		if err := writeSample(filepath.Join(media, f.name), f.size, uint64(i+1)); err != nil {
			fmt.Fprintln(stderr, "vodpipe demo:", err)
			return 1
		}
		if err := writeSample(filepath.Join(media, "covers", f.name+".jpg"), 24<<10, uint64(100+i)); err != nil {
			fmt.Fprintln(stderr, "vodpipe demo:", err)
			return 1
		}
		total += f.size
	}

	// notify's webhooks arrive here, each checked against its signature.
	rcv := newWebhookReceiver()
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe demo:", err)
		return 1
	}
	rsrv := &http.Server{Handler: rcv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = rsrv.Serve(rl) }()
	defer rsrv.Close()

	st, err := stack.Start(ctx, stack.Options{
		DataDir: filepath.Join(dir, "data"), SourceRoot: media, Workers: 2, JobsPerWorker: 2,
		PartSize: 4 << 20, Concurrency: 4, Log: log, LeaseTTL: 4 * time.Second,
		Queue: queue.Config{AckWait: 4 * time.Second},
		Vodsim: func(c *vodsim.Config) {
			// A bandwidth limit makes the demo last long enough to watch.
			c.Faults.Bandwidth = *bandwidth
			if *faults {
				c.Faults.Rules = []vodsim.FaultRule{
					{Op: vodsim.OpUploadPart, ErrorRate: 0.03, ResetRate: 0.02},
					{Op: vodsim.OpApply, ErrorRate: 0.05},
				}
			}
		},
	})
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe demo: start:", err)
		return 1
	}
	defer st.Close()
	fmt.Fprintf(stdout, "vodpipe demo: NATS %s · vodsim %s · ingest %s · notify %s · %d workers\n", st.NATSURL, st.VodsimAddr, st.IngestURL, st.NotifyURL, 2)
	if err := rcv.subscribe(ctx, st.NotifyURL, st.APIKey, "http://"+rl.Addr().String()+"/webhook"); err != nil {
		fmt.Fprintln(stderr, "vodpipe demo: subscribe:", err)
		return 1
	}

	c := client.NewClient(st.IngestURL, st.APIKey)
	items := make([]*item, len(demoFiles))
	var jobs []*job.Job
	for i, f := range demoFiles {
		p := filepath.Join(media, f.name)
		id := fmt.Sprintf("demo-%d-%s", i+1, f.name[:len(f.name)-len(filepath.Ext(f.name))])
		items[i] = &item{source: "file://" + p, display: p, id: id, key: keyOf(id), size: f.size}
		jobs = append(jobs, &job.Job{V: 1, ID: items[i].id, Source: items[i].source,
			Cover: "file://" + filepath.Join(media, "covers", f.name+".jpg"), Procedure: "LongVideoPreset",
			SourceContext: "demo-user=42;file=" + f.name, OneTimeSignature: i%2 == 0,
			Metadata: demoMetadata(i, p)})
	}
	// The jobs are followed over notify's event stream, opened before they are submitted.
	code := watchStream(ctx, "vodpipe demo", client.NewClient(st.NotifyURL, st.APIKey), c, func(ctx context.Context, w *watcher) (int, error) {
		w.add(items)
		resp, err := c.SubmitBatch(ctx, jobs)
		if err != nil {
			w.drop(items)
			return 0, errSubmit{err}
		}
		if w.answered(items, resp) > 0 {
			return len(items), errSubmit{fmt.Errorf("submit: %v", resp.Items)}
		}
		fmt.Fprintf(stdout, "vodpipe demo: submitted %d jobs (%s), covers and task flow LongVideoPreset; faults injected: %v\n",
			len(jobs), humanBytes(total), *faults)
		// Crash one upload half way: stop the worker running the largest job without
		// a drain, then start a fresh worker; the job resumes from its recorded parts.
		go crashHalfway(ctx, st, c, items[len(items)-1].id, stdout)
		return len(items), nil
	}, stdout, stderr, false)
	received := st.Vodsim.BytesReceived()

	// Every job's job.completed and VOD's vod.file_uploaded arrive as signed webhooks.
	want := map[string]string{}
	for _, it := range items {
		v, _ := c.Get(ctx, it.id) // not found: no FileId, reported missing below
		want[it.id] = v.FileID
	}
	missing := rcv.waitFor(ctx, want, 20*time.Second)
	fmt.Fprintf(stdout, "\nvodsim received %s for %s of media (re-sent after faults and the crash: %s)\n",
		humanBytes(received), humanBytes(total), humanBytes(max(received-total, 0)))
	fmt.Fprintf(stdout, "webhooks: %d of %d jobs got job.completed and vod.file_uploaded (with ProcedureTaskId), %d deliveries, every signature valid: %v\n",
		len(want)-len(missing), len(want), rcv.count(), rcv.bad() == 0)
	for _, id := range missing {
		fmt.Fprintln(stdout, "  missing:", rcv.describe(id, want[id]))
	}
	if code != 0 || len(missing) > 0 || rcv.bad() > 0 {
		fmt.Fprintln(stdout, "vodpipe demo: FAILED")
		return 1
	}
	fmt.Fprintln(stdout, "vodpipe demo: every job completed and every webhook arrived with a valid signature")
	return 0
}

func crashHalfway(ctx context.Context, st *stack.Stack, c *client.Client, id string, stdout io.Writer) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := c.Get(ctx, id)
		if err != nil || v.State.Terminal() {
			return
		}
		if v.State == job.StateRunning && v.BytesTotal > 0 && v.BytesDone*5 >= v.BytesTotal*2 {
			if !st.CrashWorkerRunning(id) {
				continue
			}
			_ = st.AddWorker("worker-replacement")
			fmt.Fprintf(stdout, "\nvodpipe demo: crashed the worker uploading %s at %d%% (no ack, no hand-back); a new worker resumes it from its recorded parts\n", id, v.BytesDone*100/v.BytesTotal)
			return
		}
	}
}

// writeSample writes deterministic pseudo-random bytes (incompressible, like video).
func writeSample(path string, size int64, seed uint64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if st, err := os.Stat(path); err == nil && st.Size() == size {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, seed*7919))
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		for i := 0; i < len(buf); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8; j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		n := min(int64(len(buf)), left)
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		left -= n
	}
	return f.Close()
}

// webhookReceiver is the application's endpoint: it verifies every
// delivery's Standard Webhooks signature and records the events.
type webhookReceiver struct {
	mu         sync.Mutex
	secret     string
	completed  map[string]string // job id → FileId
	uploaded   map[string]string // job id → ProcedureTaskId
	orphans    map[string]bool   // FileIds of vod.file_uploaded events without a job id
	deliveries int
	invalid    int
	cond       chan struct{}
}

func newWebhookReceiver() *webhookReceiver {
	return &webhookReceiver{completed: map[string]string{}, uploaded: map[string]string{}, orphans: map[string]bool{}, cond: make(chan struct{}, 1)}
}

// subscribe creates the demo's subscription at notify and keeps its secret.
func (r *webhookReceiver) subscribe(ctx context.Context, notifyURL, apiKey, url string) error {
	body, _ := json.Marshal(map[string]any{"url": url, "eventTypes": []string{job.EventCompleted, job.EventVODFileUpload}, "description": "vodpipe demo"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, notifyURL+"/v1/subscriptions", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var sub struct {
		Secret string `json:"secret"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&sub); err != nil || resp.StatusCode != http.StatusCreated || sub.Secret == "" {
		return fmt.Errorf("notify answered %d", resp.StatusCode)
	}
	r.mu.Lock()
	r.secret = sub.Secret
	r.mu.Unlock()
	return nil
}

func (r *webhookReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deliveries++
	if _, err := webhook.Verify(r.secret, req.Header, b, time.Now(), 5*time.Minute); err != nil {
		r.invalid++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	ev, err := job.DecodeEvent(b)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch ev.Type {
	case job.EventCompleted:
		var d job.CompletedData
		_ = json.Unmarshal(ev.Data, &d)
		r.completed[ev.JobID] = d.FileID
	case job.EventVODFileUpload:
		var d job.FileUploadedData
		_ = json.Unmarshal(ev.Data, &d)
		if ev.JobID == "" {
			r.orphans[d.FileID] = true
		} else {
			r.uploaded[ev.JobID] = d.ProcedureTaskID
		}
	}
	select {
	case r.cond <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

// describe says what arrived for a job whose webhooks are incomplete.
func (r *webhookReceiver) describe(jobID, fileID string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got, ok := r.completed[jobID]
	s := fmt.Sprintf("%s (FileId %s): ", jobID, fileID)
	switch {
	case !ok:
		s += "no job.completed"
	case got != fileID:
		s += "job.completed with FileId " + got
	default:
		s += "job.completed ok"
	}
	if _, ok := r.uploaded[jobID]; !ok {
		s += ", no vod.file_uploaded"
	} else if r.uploaded[jobID] == "" {
		s += ", vod.file_uploaded without ProcedureTaskId"
	}
	if r.orphans[fileID] {
		s += ", its vod.file_uploaded arrived without a job id"
	}
	return s
}

func (r *webhookReceiver) count() int { r.mu.Lock(); defer r.mu.Unlock(); return r.deliveries }
func (r *webhookReceiver) bad() int   { r.mu.Lock(); defer r.mu.Unlock(); return r.invalid }

// waitFor waits until every job's completion (with its FileId) and VOD's event
// (with a ProcedureTaskId) arrived; it returns the job ids still missing.
func (r *webhookReceiver) waitFor(ctx context.Context, want map[string]string, within time.Duration) []string {
	deadline := time.After(within)
	for {
		var missing []string
		r.mu.Lock()
		for id, fileID := range want {
			if r.completed[id] == "" || r.completed[id] != fileID || r.uploaded[id] == "" {
				missing = append(missing, id)
			}
		}
		r.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-r.cond:
		case <-deadline:
			return missing
		case <-ctx.Done():
			return missing
		}
	}
}

// syncWriter serialises writes from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// demoMetadata is a demo job's metadata: its place, and its file (which
// the watch shows, as it does for jobs `vodpipe submit` makes).
func demoMetadata(i int, file string) json.RawMessage {
	b, _ := json.Marshal(struct {
		Demo  bool   `json:"demo"`
		Index int    `json:"index"`
		File  string `json:"file"`
	}{true, i, file})
	return b
}
