package ingest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/pkg/queue"
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
