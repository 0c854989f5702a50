package ingest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/ingest"
)

// TestIngestDrainsBeforeItStopsListening: at SIGTERM (its context ending)
// ingest goes on serving for VODPIPE_HTTP_DRAIN_DELAY, /readyz answering
// 503 so that load balancers stop sending it new connections, and only
// then stops taking them. Until 0.10 it closed its listener at once, and
// a rollout refused the requests still routed to it.
func TestIngestDrainsBeforeItStopsListening(t *testing.T) {
	a := startIngest(t, func(c *ingest.Config) { c.DrainDelay = 2 * time.Second })
	if r := a.do("GET", "/readyz", "", "", ""); r.status != http.StatusOK {
		t.Fatalf("readyz before the stop: %d", r.status)
	}
	stopped := time.Now()
	a.stop()
	if r := a.do("GET", "/readyz", "", "", ""); r.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz while draining: %d, want 503", r.status)
	}
	if r := a.do("GET", "/v1/jobs", adminKey, "", ""); r.status != http.StatusOK || time.Since(stopped) >= 2*time.Second {
		t.Fatalf("the API while draining: %d after %s, want 200 within the delay", r.status, time.Since(stopped))
	}
	select {
	case <-a.stopped:
		if d := time.Since(stopped); d < 2*time.Second {
			t.Fatalf("ServeListener returned %s after the stop, before its drain delay of 2s", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ServeListener did not return after its drain delay")
	}
	if _, err := http.Get(a.url + "/healthz"); err == nil {
		t.Fatal("a connection was taken after the drain")
	}
}
