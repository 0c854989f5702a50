package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/stack"
	"github.com/vodpipe/vodpipe/internal/version"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// base64Run finds candidate signatures: long runs of base64.
var base64Run = regexp.MustCompile(`[A-Za-z0-9+/]{40,}={0,2}`)

// leaksSignature reports a full upload signature in text: base64 whose
// decoded form is a 20-byte HMAC followed by the signed query string.
func leaksSignature(text string) string {
	for _, m := range base64Run.FindAllString(text, -1) {
		raw, err := base64.StdEncoding.DecodeString(m)
		if err != nil {
			continue
		}
		if len(raw) > 20 && bytes.Contains(raw[20:], []byte("secretId=")) {
			return m
		}
	}
	return ""
}

// No log line, error, event, dead letter, status or metric carries the
// SecretKey or a full signature, through successes, refusals and faults.
func TestNoSecretOrSignatureLeaks(t *testing.T) {
	const secretKey = "super-secret-key-must-never-leak-0123"
	root := t.TempDir()
	logs := &lockedBuffer{}
	st, err := stack.Start(t.Context(), stack.Options{
		DataDir: t.TempDir(), SourceRoot: root, Workers: 1, JobsPerWorker: 2, PartSize: 1 << 20,
		SecretID: "AKIDleaktest", SecretKey: secretKey, LeaseTTL: 3 * time.Second,
		Queue: queue.Config{AckWait: 3 * time.Second, MaxDeliver: 3},
		Log:   slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Vodsim: func(c *vodsim.Config) {
			c.Faults.Rules = []vodsim.FaultRule{{Op: vodsim.OpUploadPart, ErrorRate: 0.2}, {Op: vodsim.OpApply, ErrorRate: 0.2}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, n := range []string{"ok.mp4", "flow.mp4"} {
		if err := writeSample(filepath.Join(root, n), 3<<20, 1); err != nil {
			t.Fatal(err)
		}
	}
	c := client.NewClient(st.IngestURL, st.APIKey)
	ctx := t.Context()
	jobs := []*job.Job{
		{ID: "ok", Source: "file://" + filepath.Join(root, "ok.mp4"), OneTimeSignature: true},
		{ID: "noflow", Source: "file://" + filepath.Join(root, "flow.mp4"), Procedure: "NoSuchFlow"},
		{ID: "missing", Source: "file://" + filepath.Join(root, "missing.mp4")},
	}
	for _, j := range jobs {
		if _, _, err := c.Submit(ctx, j, ""); err != nil {
			t.Fatal(err)
		}
	}
	var texts []string
	deadline := time.Now().Add(60 * time.Second)
	for _, j := range jobs {
		for {
			v, err := c.Get(ctx, j.ID)
			if err == nil && v.State.Terminal() {
				b, _ := json.Marshal(v)
				texts = append(texts, string(b))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s not finished: %+v", j.ID, v)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// A signature handed to an end user is the one place a signature may appear.
	if _, err := c.Sign(ctx, client.SignatureRequest{Procedure: "NoSuchPolicy", StorageRegion: "ap-nowhere"}); err != nil {
		texts = append(texts, err.Error())
	}
	// Every event and dead letter.
	js := jetStreamAt(t, st.AdminNATS())
	for _, stream := range []string{queue.EventsStream, queue.DLQStream} {
		cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		info, _ := cons.Info(ctx)
		for range info.NumPending {
			m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
			if err != nil {
				t.Fatal(err)
			}
			texts = append(texts, string(m.Data()))
		}
	}
	// Metrics of ingest and the worker.
	resp, err := http.Get(st.IngestURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	texts = append(texts, string(b))
	// ingest exports the queue's depth (the failed jobs were dead-lettered).
	for _, m := range []string{"vodpipe_queue_up 1", `vodpipe_queue_jobs{state="stranded"} 0`, "vodpipe_queue_dead_letters "} {
		if !strings.Contains(string(b), m) {
			t.Errorf("ingest /metrics lacks %q", m)
		}
	}
	rec := httptest.NewRecorder()
	st.WorkerHandler(0).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	texts = append(texts, rec.Body.String())
	// Both name the build they run.
	for svc, body := range map[string]string{"ingest": string(b), "worker": rec.Body.String()} {
		if !regexp.MustCompile(`vodpipe_build_info\{[^}]*service="` + svc + `",version="` + regexp.QuoteMeta(version.Release) + `"\} 1`).MatchString(body) {
			t.Errorf("%s /metrics lacks vodpipe_build_info naming it and release %s", svc, version.Release)
		}
	}
	texts = append(texts, logs.String())

	all := strings.Join(texts, "\n")
	if !strings.Contains(all, "vod_procedure_not_found") || !strings.Contains(all, "source_not_found") {
		t.Fatalf("the failures under test did not happen:\n%s", all)
	}
	if strings.Contains(all, secretKey) {
		t.Fatal("the SecretKey appears in logs, events, statuses or metrics")
	}
	if sig := leaksSignature(all); sig != "" {
		t.Fatalf("a full signature appears: %s", sig)
	}
	// The check itself works: a signature is caught.
	sig, err := c.Sign(ctx, client.SignatureRequest{})
	if err != nil || leaksSignature("log: "+sig.Signature) == "" {
		t.Fatalf("leak detector misses a signature: %v", err)
	}
}
