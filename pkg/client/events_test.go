package client

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The opening block's id is where the stream started: a stream that
// breaks before its first event resumes from it, and a heartbeat (no id)
// leaves it as it is.
func TestEventStreamKeepsTheOpeningBlocksID(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Last-Event-ID") != "" {
			t.Errorf("a first open sent Last-Event-ID %q", r.Header.Get("Last-Event-ID"))
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "retry: 2000\nid: 41\n: vodpipe events\n\n: heartbeat\n\n")
		// The connection ends before any event.
	}))
	defer srv.Close()
	es, err := NewClient(srv.URL, "").Events(t.Context(), []string{"job.*"}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	if _, err := es.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next = %v, want io.EOF", err)
	}
	if es.LastID != "41" {
		t.Fatalf("LastID = %q after the opening block, want 41", es.LastID)
	}
}
