package notify_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/notify/intake"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// When JetStream fails, the API answers a stable code and /readyz "not
// ready"; NATS's error text goes to the log only.
func TestSecurityInternalErrorsAreOpaque(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	for _, st := range []string{queue.EventsStream, queue.JobsStream} {
		if err := e.nats.JetStream(t).DeleteStream(t.Context(), st); err != nil {
			t.Fatal(err)
		}
	}
	leaks := []string{"nats", "stream", "jetstream", strings.ToLower(queue.EventsStream), strings.ToLower(queue.JobsStream)}
	check := func(what string, status int, body []byte, wantStatus int) {
		t.Helper()
		if status != wantStatus {
			t.Errorf("%s: %d %s, want %d", what, status, body, wantStatus)
		}
		for _, leak := range leaks {
			if strings.Contains(strings.ToLower(string(body)), leak) {
				t.Errorf("%s answers %s, which shows %q", what, body, leak)
			}
		}
	}

	var a errorAnswer
	code := in.call(t, http.MethodGet, "/v1/events", nil, &a)
	if a.Error.Code != "unavailable" {
		t.Errorf("events: code %q, want unavailable", a.Error.Code)
	}
	check("GET /v1/events", code, []byte(a.Error.Message), http.StatusServiceUnavailable)

	resp, err := http.Get(in.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check("GET /readyz", resp.StatusCode, body, http.StatusServiceUnavailable)

	if !strings.Contains(e.log.String(), "stream not found") {
		t.Errorf("the log lacks the detail:\n%s", e.log.String())
	}
}

// The VOD callback is authenticated unless the operator says otherwise in
// so many words: without a token notify does not start, and
// CALLBACK_AUTH=none is the only way to open it.
func TestSecurityCallbackNeedsATokenByDefault(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func(*notify.Config)
		want string
	}{
		"no token":           {func(c *notify.Config) { c.CallbackToken = "" }, "VODPIPE_CALLBACK_AUTH=none"},
		"auth token, none":   {func(c *notify.Config) { c.CallbackToken, c.CallbackAuth = "", intake.CallbackAuthToken }, "VODPIPE_CALLBACK_TOKEN is not set"},
		"unknown auth value": {func(c *notify.Config) { c.CallbackAuth = "off" }, "must be token or none"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := notify.Config{IntakeConfig: intake.Config{CallbackToken: testCallbackToken}}
			tc.mod(&cfg)
			_, err := notify.New(t.Context(), cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}

	t.Run("open when the operator says so", func(t *testing.T) {
		e := newEnv(t, func(c *notify.Config) { c.CallbackToken, c.CallbackAuth = "", intake.CallbackAuthNone })
		in := e.start()
		if code, res, ea := postCallback(t, in, "", fileUploadBody("open-1")); code != http.StatusOK || res.EventID == "" {
			t.Fatalf("callback with auth none: %d %+v %+v", code, res, ea)
		}
		if !strings.Contains(e.log.String(), "VODPIPE_CALLBACK_AUTH=none") {
			t.Errorf("no warning logged:\n%s", e.log.String())
		}
	})
}

// A forged event for a known FileId is refused before it is read: it is
// not published, and VOD's real event afterwards is published as the first,
// not dropped as a repeat.
func TestSecurityForgedCallbackIsNotRecorded(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	if err := e.q.Files.Record(t.Context(), "forged-1", "job-forged"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"", "?token=", "?token=wrong", "?token=" + testCallbackToken[:len(testCallbackToken)-1],
		"?token=" + testCallbackToken + "x", "?Token=" + testCallbackToken} {
		if code, _, ea := postCallback(t, in, q, fileUploadBody("forged-1")); code != http.StatusUnauthorized || ea.Error.Code != "bad_token" {
			t.Errorf("forged callback %q: %d %+v, want 401 bad_token", q, code, ea)
		}
	}
	if evs := e.eventsOf(job.EventVODFileUpload); len(evs) != 0 {
		t.Fatalf("forged callbacks published %d events", len(evs))
	}
	code, res, _ := postCallback(t, in, "?token="+testCallbackToken, fileUploadBody("forged-1"))
	if code != http.StatusOK || res.Duplicate || res.JobID != "job-forged" {
		t.Fatalf("VOD's real event: %d %+v, want it published for job-forged, not a repeat", code, res)
	}
	if evs := e.eventsOf(job.EventVODFileUpload); len(evs) != 1 {
		t.Fatalf("%d vod.file_uploaded events, want 1", len(evs))
	}
}

// A webhook URL's query holds the receiver's token: a read-only key sees
// the subscription and its attempts with it redacted, the transport's error
// included; the control key sees the URL whole.
func TestSecurityReadScopeSeesRedactedWebhookURLs(t *testing.T) {
	const hookToken = "HOOKTOKEN0123456789"
	e := newEnv(t)
	in := e.start()
	sub := in.subscribe(t, "http://127.0.0.1:1/hook?token="+hookToken, []string{job.EventCompleted}, "")
	e.publish(job.EventCompleted, "job-1", job.CompletedData{FileID: "f1"})
	testharness.WaitFor(t, 10*time.Second, "a failed delivery attempt", func() bool { return len(in.attempts(t, sub.ID)) > 0 })
	for _, path := range []string{"/v1/subscriptions", "/v1/subscriptions/" + sub.ID, "/v1/subscriptions/" + sub.ID + "/attempts"} {
		var raw json.RawMessage
		if code := in.callWith(t, "read-only-key-0000", http.MethodGet, path, nil, &raw); code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, code)
		}
		if strings.Contains(string(raw), hookToken) {
			t.Errorf("GET %s with a read key shows the hook's token: %s", path, raw)
		}
	}
	if got := in.subscription(t, sub.ID).URL; !strings.Contains(got, hookToken) {
		t.Errorf("the control key sees %q, want the URL whole", got)
	}
}
