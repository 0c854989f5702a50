package notify_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/pkg/queue"
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
