package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/internal/notify/intake"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/webhook"
)

// testKey is the API key every test instance accepts.
const testKey = "test-api-key-0123456789"

// testCallbackToken is the callback token of every test instance.
const testCallbackToken = "test-callback-token-0123"

// env is a NATS server with vodpipe's JetStream layout and a notify config
// pointing at it; instances are started on demand.
type env struct {
	t    testing.TB
	nats *testharness.NATS
	q    *queue.Queue
	cfg  notify.Config
	log  *syncBuffer
	// broker is ingest's layout broker serving notify.
	broker *nats.Subscription
}

func newEnv(t testing.TB, mod ...func(*notify.Config)) *env {
	t.Helper()
	e := &env{t: t, nats: testharness.StartNATS(t), log: &syncBuffer{}}
	var keys notify.APIKeys
	if err := keys.Decode("tests:" + testKey + ",reader:read-only-key-0000:read"); err != nil {
		t.Fatal(err)
	}
	e.cfg = notify.Config{
		NATS:     natsconf.NATS{URL: e.nats.URL},
		HTTPAddr: "127.0.0.1:0",
		APIKeys:  keys,
		FanoutConfig: fanout.Config{
			WebhookConfig: fanout.WebhookConfig{
				WebhookAllowPrivate: true,
				WebhookTimeout:      2 * time.Second,
				WebhookSchedule:     fanout.Schedule{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond},
				WebhookConcurrency:  8,
				WebhookSecretKeys:   []string{newSealKey()},
			},
			SSEHeartbeat:    time.Second,
			BacklogInterval: 100 * time.Millisecond,
		},
		IntakeConfig: intake.Config{CallbackToken: testCallbackToken, CorrelationWait: 2 * time.Second},
	}
	for _, m := range mod {
		m(&e.cfg)
	}
	var err error
	js := e.nats.JetStream(t)
	if e.q, err = queue.Open(t.Context(), js, queue.Config{}); err != nil {
		t.Fatal(err)
	}
	// ingest's layout broker, which makes notify's consumers and streams.
	if e.broker, err = queue.ServeLayout(js.Conn(), js, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("notify log:\n%s", e.log.String())
		}
	})
	return e
}

// instance is one running notify process.
type instance struct {
	svc  *notify.Service
	url  string
	stop func()
	// cancel begins a graceful stop without waiting for it (stop waits).
	cancel context.CancelFunc
	// openapi checks every answer against docs/notify-openapi.json.
	openapi *testharness.OpenAPI
}

// start runs a notify instance until the test ends or stop is called.
func (e *env) start() *instance {
	e.t.Helper()
	log := slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := notify.New(e.t.Context(), e.cfg, log)
	if err != nil {
		e.t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := svc.ServeListener(ctx, l); err != nil {
			e.t.Errorf("notify: %v", err)
		}
		svc.Close()
	}()
	var once sync.Once
	in := &instance{svc: svc, url: "http://" + l.Addr().String(), cancel: cancel, openapi: testharness.LoadOpenAPI(e.t, "notify-openapi.json")}
	in.stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(in.stop)
	return in
}

// call makes an API request with the test key and decodes a JSON answer into out.
func (in *instance) call(t testing.TB, method, path string, body any, out any) int {
	t.Helper()
	return in.callWith(t, testKey, method, path, body, out)
}

func (in *instance) callWith(t testing.TB, key, method, path string, body any, out any) int {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, in.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// Every answer of the API tests is checked against docs/notify-openapi.json.
	in.openapi.CheckResponse(t, method, path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: answer %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// subscribe creates a subscription and returns it with its secret.
func (in *instance) subscribe(t testing.TB, url string, types []string, jobID string) fanout.Subscription {
	t.Helper()
	req := map[string]any{"url": url, "eventTypes": types}
	if jobID != "" {
		req["jobId"] = jobID
	}
	var s fanout.Subscription
	if code := in.call(t, http.MethodPost, "/v1/subscriptions", req, &s); code != http.StatusCreated || s.Secret == "" {
		t.Fatalf("create subscription: %d %+v", code, s)
	}
	return s
}

func (in *instance) subscription(t testing.TB, id string) fanout.Subscription {
	t.Helper()
	var s fanout.Subscription
	if code := in.call(t, http.MethodGet, "/v1/subscriptions/"+id, nil, &s); code != http.StatusOK {
		t.Fatalf("get subscription %s: %d", id, code)
	}
	return s
}

func (in *instance) attempts(t testing.TB, id string) []fanout.Attempt {
	t.Helper()
	var a struct{ Attempts []fanout.Attempt }
	if code := in.call(t, http.MethodGet, "/v1/subscriptions/"+id+"/attempts", nil, &a); code != http.StatusOK {
		t.Fatalf("attempts %s: %d", id, code)
	}
	return a.Attempts
}

// publish stores an event and returns it.
func (e *env) publish(typ, jobID string, data any) *job.Event {
	e.t.Helper()
	if data == nil {
		data = sampleData(typ, jobID)
	}
	ev, err := job.NewEvent(typ, jobID, data)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.q.Events.Publish(e.t.Context(), ev); err != nil {
		e.t.Fatal(err)
	}
	return ev
}

// events reads the whole EVENTS stream.
func (e *env) events() []job.Event {
	e.t.Helper()
	ctx := e.t.Context()
	js := e.nats.JetStream(e.t)
	st, err := js.Stream(ctx, queue.EventsStream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []job.Event
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		var ev job.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// eventsOf filters the stream's events by type.
func (e *env) eventsOf(typ string) []job.Event {
	var out []job.Event
	for _, ev := range e.events() {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// hub is one HTTP server standing in for many webhook receivers, each at
// /r/<name>. Every delivery's signature is checked with its receiver's secret.
type hub struct {
	t      testing.TB
	srv    *httptest.Server
	mu     sync.Mutex
	rs     map[string]*receiver
	events *jsonschema.Schema // docs/events.schema.json: every delivery is checked
}

// receiver records what one endpoint got; answer decides each reply.
type receiver struct {
	name   string
	mu     sync.Mutex
	secret string
	got    []delivery
	answer func(r *http.Request, d delivery, n int) int // n: requests so far for this webhook-id, from 1
	notify chan struct{}
}

type delivery struct {
	ID   string
	Body []byte
	At   time.Time
	Ev   job.Event
}

func newHub(t testing.TB) *hub {
	_, events := testharness.Schemas(t)
	h := &hub{t: t, rs: map[string]*receiver{}, events: events}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hub) receiver(name string) *receiver {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := &receiver{name: name, notify: make(chan struct{}, 1)}
	h.rs[name] = r
	return r
}

func (h *hub) url(r *receiver) string { return h.srv.URL + "/r/" + r.name }

func (h *hub) serve(w http.ResponseWriter, req *http.Request) {
	name, _ := strings.CutPrefix(req.URL.Path, "/r/")
	h.mu.Lock()
	r := h.rs[name]
	h.mu.Unlock()
	if r == nil {
		http.NotFound(w, req)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	r.mu.Lock()
	secret := r.secret
	r.mu.Unlock()
	if secret == "" {
		// Created a moment ago: the test has not stored the secret yet.
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	id, err := webhook.Verify(secret, req.Header, body, time.Now(), 0)
	if err != nil {
		h.t.Errorf("receiver %s: bad delivery: %v", name, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d := delivery{ID: id, Body: body, At: time.Now()}
	if err := json.Unmarshal(body, &d.Ev); err != nil || d.Ev.ID != id {
		h.t.Errorf("receiver %s: body %s does not match webhook-id %s", name, body, id)
	}
	// Every event a test sees delivered is one docs/events.schema.json describes.
	if err := testharness.Valid(h.t, h.events, body); err != nil {
		h.t.Errorf("receiver %s: the delivered event does not match docs/events.schema.json: %v\n%s", name, err, body)
	}
	r.mu.Lock()
	n := 1
	for _, g := range r.got {
		if g.ID == id {
			n++
		}
	}
	answer := r.answer
	r.mu.Unlock()
	status := http.StatusNoContent
	if answer != nil {
		status = answer(req, d, n)
	}
	if status >= 200 && status < 300 {
		r.mu.Lock()
		r.got = append(r.got, d)
		r.mu.Unlock()
	} else {
		r.mu.Lock()
		r.got = append(r.got, delivery{ID: id, At: d.At}) // a failed request: counted, not received
		r.mu.Unlock()
	}
	select {
	case r.notify <- struct{}{}:
	default:
	}
	w.WriteHeader(status)
}

func (r *receiver) setSecret(s string) {
	r.mu.Lock()
	r.secret = s
	r.mu.Unlock()
}

// received returns the events accepted (2xx), in arrival order.
func (r *receiver) received() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.got {
		if d.Body != nil {
			out = append(out, d)
		}
	}
	return out
}

// requests counts every request for a webhook-id, failed or not.
func (r *receiver) requests(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, d := range r.got {
		if d.ID == id {
			n++
		}
	}
	return n
}

// receivedIDs is the set of accepted event ids.
func (r *receiver) receivedIDs() map[string]int {
	out := map[string]int{}
	for _, d := range r.received() {
		out[d.ID]++
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// sampleData is a valid data of an event of typ (docs/events.schema.json):
// what tests that care only about delivery publish.
func sampleData(typ, jobID string) any {
	switch typ {
	case job.EventQueued:
		return &job.Job{V: 1, ID: jobID, Source: "file:///media/" + jobID + ".mp4"}
	case job.EventStarted:
		return job.StartedData{Attempt: 1, Worker: "w-1"}
	case job.EventProgress:
		return job.ProgressData{BytesDone: 1, BytesTotal: 2}
	case job.EventCompleted:
		return job.CompletedData{FileID: "f-" + jobID, MediaURL: "https://media.example/" + jobID, Bytes: 1}
	case job.EventFailed:
		return job.FailedData{Error: job.Error{Code: "source_not_found", Message: "gone", Permanent: true}, Attempt: 1}
	case job.EventVODFileUpload:
		return job.FileUploadedData{FileID: "f-" + jobID, MediaURL: "https://media.example/" + jobID}
	case job.EventVODProcedure:
		return intake.ProcedureChangedData{TaskID: "t-" + jobID, Event: json.RawMessage(`{}`)}
	}
	return struct{}{}
}

// refusedDisable writes a "disabled" record of subscription id with a
// newer version at an older revision, as a second replica changing it at
// once would: JetStream refuses it, yet it reaches the bucket's
// subscribers as published.
func (e *env) refusedDisable(t *testing.T, id string) {
	t.Helper()
	ctx := t.Context()
	kv, err := e.nats.JetStream(t).KeyValue(ctx, fanout.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	version, _ := rec["version"].(float64)
	rec["version"], rec["status"] = version+1, fanout.StatusDisabled
	disabled, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, id, disabled, entry.Revision()-1); err == nil {
		t.Fatal("the update at an older revision was stored")
	}
}
