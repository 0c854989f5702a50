package stack_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/natsembed"
	"github.com/vodpipe/vodpipe/internal/natsperm"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/internal/stack"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// The stack runs under least privilege: every service connects as its own
// user, a job submitted through ingest and one published straight onto
// NATS by an outside publisher complete, notify delivers their webhooks, and
// the server refused nothing any service asked for on the way.
func TestGuardedStackRunsJobs(t *testing.T) {
	var violations violationLog
	root := t.TempDir()
	st, err := stack.Start(t.Context(), stack.Options{
		DataDir: t.TempDir(), SourceRoot: root, Workers: 1, JobsPerWorker: 2, PartSize: 1 << 20, Concurrency: 2,
		NATS: []natsembed.Option{natsembed.WithLogger(&violations)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)

	var mu sync.Mutex
	hooks := map[string]bool{}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e job.Event
		if json.NewDecoder(r.Body).Decode(&e) == nil && e.Type == job.EventCompleted {
			mu.Lock()
			hooks[e.JobID] = true
			mu.Unlock()
		}
	}))
	t.Cleanup(rcv.Close)
	subID := subscribe(t, st, rcv.URL)

	for _, name := range []string{"api.mp4", "nats.mp4"} {
		if err := os.WriteFile(filepath.Join(root, name), bytes.Repeat([]byte(name), 100<<10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := client.NewClient(st.IngestURL, st.APIKey)
	if _, _, err := c.Submit(t.Context(), &job.Job{ID: "guarded-api", Source: "file://" + filepath.Join(root, "api.mp4")}, ""); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, st.NATSConfig(natsperm.Publisher))
	js, err := jetstream.New(pub)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := (&job.Job{V: 1, ID: "guarded-nats", Source: "file://" + filepath.Join(root, "nats.mp4")}).Encode()
	if _, err := js.PublishMsg(t.Context(), &nats.Msg{Subject: queue.JobsSubject, Data: b,
		Header: nats.Header{jetstream.MsgIDHeader: []string{"guarded-nats"}}}); err != nil {
		t.Fatalf("the publisher could not publish a job: %v", err)
	}
	for _, id := range []string{"guarded-api", "guarded-nats"} {
		testharness.WaitFor(t, 30*time.Second, id+" completed and its webhook delivered", func() bool {
			v, err := c.Get(t.Context(), id)
			mu.Lock()
			defer mu.Unlock()
			return err == nil && v.State == job.StateCompleted && hooks[id]
		})
	}
	// The signature service reads a job that is not running through the
	// status stream's leader before it refuses: a worker asking for a
	// completed job gets job_not_active, not a timeout.
	if _, err := signer.NewClient(connect(t, st.NATSConfig(natsperm.Worker)), 5*time.Second).Sign(t.Context(),
		signer.Request{JobID: "guarded-api"}); !errors.Is(err, signer.ErrJobNotActive) {
		t.Errorf("a signature for a completed job: %v, want job_not_active", err)
	}
	// The read paths of ingest and notify: job listing (a status watch),
	// dead letters, readiness, subscriptions, attempts, and the event
	// stream (an ordered consumer) from its start.
	for _, u := range []string{st.IngestURL + "/v1/jobs", st.IngestURL + "/v1/dead-letters", st.IngestURL + "/readyz",
		st.NotifyURL + "/v1/subscriptions", st.NotifyURL + "/v1/subscriptions/" + subID + "/attempts", st.NotifyURL + "/readyz"} {
		resp := get(t, t.Context(), st, u)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", u, resp.StatusCode)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	resp := get(t, ctx, st, st.NotifyURL+"/v1/events", "Last-Event-ID", "0")
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "data:") {
	}
	cancel()
	resp.Body.Close()
	if !strings.HasPrefix(sc.Text(), "data:") {
		t.Errorf("GET /v1/events from the start gave no event (%d)", resp.StatusCode)
	}
	if v := violations.String(); v != "" {
		t.Fatalf("the server refused services under their users:\n%s", v)
	}
	checkEventsMatchTheSchema(t, st, job.EventQueued, job.EventStarted, job.EventCompleted)

	// The worker's histograms saw the two runs: their time, their wait in
	// the queue, and VOD's and COS's requests by action and status.
	rec := httptest.NewRecorder()
	st.WorkerHandler(0).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, series := range []string{
		`vodpipe_worker_job_duration_seconds_count{outcome="completed"} 2`,
		`vodpipe_worker_queue_wait_seconds_count 2`,
		`vodpipe_worker_vod_request_duration_seconds_count{action="ApplyUploadUGC",code="200"} 2`,
		`vodpipe_worker_vod_request_duration_seconds_count{action="CommitUploadUGC",code="200"} 2`,
		`vodpipe_worker_cos_request_duration_seconds_count{code="200",operation="PutObject"} 2`,
	} {
		if !strings.Contains(rec.Body.String(), series+"\n") {
			t.Errorf("worker /metrics lacks %s", series)
		}
	}
}

// checkEventsMatchTheSchema reads every event the stack published and
// validates each against docs/events.schema.json; the run must have
// published each of types.
func checkEventsMatchTheSchema(t *testing.T, st *stack.Stack, types ...string) {
	t.Helper()
	_, schema := testharness.Schemas(t)
	js, err := jetstream.New(connect(t, st.AdminNATS()))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(t.Context(), queue.EventsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for range info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := testharness.Valid(t, schema, m.Data()); err != nil {
			t.Errorf("event on %s does not match docs/events.schema.json: %v\n%s", m.Subject(), err, m.Data())
		}
		var e job.Event
		if json.Unmarshal(m.Data(), &e) == nil {
			seen[e.Type]++
		}
	}
	for _, typ := range types {
		if seen[typ] == 0 {
			t.Errorf("no %s event among %v", typ, seen)
		}
	}
}

// get makes an authorized GET, with header pairs.
func get(t *testing.T, ctx context.Context, st *stack.Stack, url string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+st.APIKey)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func subscribe(t *testing.T, st *stack.Stack, url string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"url": url, "eventTypes": []string{job.EventCompleted}})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, st.NotifyURL+"/v1/subscriptions", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+st.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sub struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&sub); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create subscription: %d %v", resp.StatusCode, err)
	}
	return sub.ID
}

func connect(t *testing.T, cfg natsconf.NATS) *nats.Conn { return testharness.ConnectWith(t, cfg) }

// violationLog keeps the server's permission violations.
type violationLog struct {
	mu   sync.Mutex
	logs []string
}

func (l *violationLog) add(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	if strings.Contains(strings.ToLower(s), "violation") {
		l.mu.Lock()
		l.logs = append(l.logs, s)
		l.mu.Unlock()
	}
}

func (l *violationLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.logs, "\n")
}

func (l *violationLog) Noticef(format string, v ...any) { l.add(format, v...) }
func (l *violationLog) Warnf(format string, v ...any)   { l.add(format, v...) }
func (l *violationLog) Fatalf(format string, v ...any)  { l.add(format, v...) }
func (l *violationLog) Errorf(format string, v ...any)  { l.add(format, v...) }
func (l *violationLog) Debugf(format string, v ...any)  { l.add(format, v...) }
func (l *violationLog) Tracef(format string, v ...any)  { l.add(format, v...) }

// A local user who plants a world-writable nats-users folder (or a
// password file in it) in the data folder before `vodpipe up` starts reads
// nothing: the passwords go into a folder made fresh, 0700, files 0600.
func TestNATSPasswordsGoToAFreshPrivateFolder(t *testing.T) {
	data := t.TempDir()
	planted := filepath.Join(data, "nats-users")
	if err := os.MkdirAll(planted, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(planted, "admin.password"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	st, err := stack.Start(t.Context(), stack.Options{DataDir: data, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	pw := st.AdminNATS().PasswordFile
	dir := filepath.Dir(pw)
	if dir == planted {
		t.Fatalf("the passwords went into the planted folder %s", planted)
	}
	if b, _ := os.ReadFile(filepath.Join(planted, "admin.password")); len(b) != 0 {
		t.Fatal("the admin password was written into the planted file")
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, pw: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", path, fi.Mode().Perm(), want)
		}
	}
}
