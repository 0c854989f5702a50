package ingest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/internal/ingest"

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

// A submitter that reuses another job's id gets the duplicate answer, and
// in it that job's source and cover redacted: the signed-URL tokens of
// someone else's job are for the control scope only.
func TestSecurityDuplicateSubmitShowsNoOneElsesToken(t *testing.T) {
	const pubKey = "publisher-key-0123456789"
	a := startIngest(t, func(c *ingest.Config) {
		if err := c.APIKeys.Decode("admin:" + adminKey + ",pub:" + pubKey + ":submit"); err != nil {
			t.Fatal(err)
		}
	})
	const secret = "SIGNED-TOKEN-0123456789"
	if r := a.do(http.MethodPost, "/v1/jobs", adminKey, "application/json",
		`{"id":"theirs-1","source":"https://cdn.example.com/in/v.mp4?sign=`+secret+`","cover":"https://cdn.example.com/c.jpg?sign=`+secret+`"}`); r.status != http.StatusCreated {
		t.Fatalf("submit: %d %s", r.status, r.raw)
	}
	mine := `{"id":"theirs-1","source":"https://cdn.example.com/in/mine.mp4"}`
	for _, req := range []struct{ path, ctype, body string }{
		{"/v1/jobs", "application/json", mine},
		{"/v1/jobs:batch", "application/json", `[` + mine + `]`},
	} {
		r := a.do(http.MethodPost, req.path, pubKey, req.ctype, req.body)
		if r.status >= 300 || strings.Contains(string(r.raw), secret) || !strings.Contains(string(r.raw), "v.mp4?REDACTED") {
			t.Errorf("%s by another submitter: %d %s; want the duplicate with the token hidden", req.path, r.status, r.raw)
		}
	}
	if r := a.do(http.MethodPost, "/v1/jobs", adminKey, "application/json", mine); !strings.Contains(string(r.raw), secret) {
		t.Errorf("the control scope's duplicate: %s; want the source whole", r.raw)
	}
}

// A path naming an id no job can have (the status bucket refuses it as a
// key) is a 404, not a 503 "status store unavailable" that clients retry.
func TestMalformedJobIDInAPathIsNotFound(t *testing.T) {
	a := startIngest(t)
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/jobs/a*b"}, {"GET", "/v1/jobs/.x"}, {"GET", "/v1/jobs/x../events"},
		{"POST", "/v1/jobs/a%20b/pause"}, {"POST", "/v1/jobs/a..b/resume"}, {"POST", "/v1/jobs/a%3Eb/cancel"},
		{"POST", "/v1/jobs/x./retry"},
	} {
		if r := a.do(c.method, c.path, adminKey, "application/json", ""); r.status != http.StatusNotFound {
			t.Errorf("%s %s: %d %s, want 404", c.method, c.path, r.status, r.raw)
		}
	}
}
