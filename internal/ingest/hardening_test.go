package ingest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/internal/queue"
)

// An outage of JetStream is reported as "not ready", without NATS's own
// error text (stream names, server addresses) reaching the client.
func TestSecurityReadyzHidesNATSErrors(t *testing.T) {
	a := startIngest(t)
	if r := a.do(http.MethodGet, "/readyz", "", "", ""); r.status != http.StatusOK {
		t.Fatalf("readyz before: %d %s", r.status, r.raw)
	}
	if err := a.nats.JetStream(t).DeleteStream(t.Context(), queue.JobsStream); err != nil {
		t.Fatal(err)
	}
	r := a.do(http.MethodGet, "/readyz", "", "", "")
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz without the jobs stream: %d %s", r.status, r.raw)
	}
	for _, leak := range []string{"nats", "stream", "JetStream", queue.JobsStream} {
		if strings.Contains(strings.ToLower(string(r.raw)), strings.ToLower(leak)) {
			t.Errorf("readyz answers %q, which shows %q", r.raw, leak)
		}
	}
}

// A key with only the read scope sees job sources and covers with their
// userinfo and query (signed-URL tokens) redacted; the control scope sees
// them whole.
func TestSecurityReadScopeSeesRedactedURLs(t *testing.T) {
	a := startIngest(t)
	const secret = "SIGNED-TOKEN-0123456789"
	source := "https://cdn.example.com/in/v.mp4?sign=" + secret + "&t=1"
	cover := "https://cdn.example.com/in/cover.jpg?sign=" + secret
	if r := a.do(http.MethodPost, "/v1/jobs", adminKey, "application/json",
		`{"id":"redact-1","source":"`+source+`","cover":"`+cover+`"}`); r.status != http.StatusCreated && r.status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", r.status, r.raw)
	}
	for _, path := range []string{"/v1/jobs/redact-1", "/v1/jobs"} {
		r := a.do(http.MethodGet, path, readerKey, "", "")
		if r.status != http.StatusOK || strings.Contains(string(r.raw), secret) {
			t.Errorf("read scope, %s: %d %s: want the token hidden", path, r.status, r.raw)
		}
		if !strings.Contains(string(r.raw), `"https://cdn.example.com/in/v.mp4?REDACTED"`) ||
			!strings.Contains(string(r.raw), `"https://cdn.example.com/in/cover.jpg?REDACTED"`) {
			t.Errorf("read scope, %s: %s: want source and cover redacted", path, r.raw)
		}
		r = a.do(http.MethodGet, path, adminKey, "", "")
		if r.status != http.StatusOK || !strings.Contains(string(r.raw), `"source":"`+source+`"`) {
			t.Errorf("control scope, %s: %d %s: want the source whole", path, r.status, r.raw)
		}
	}
}
