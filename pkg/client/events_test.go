package client

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
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

// A stream that goes silent, its connection open (a NAT or a load balancer
// that forgot it, a frozen peer), is broken once nothing has come for the
// idle bound: Next returns ErrEventStreamIdle instead of waiting for ever,
// its LastID the last event read; heartbeats keep a quiet stream alive.
func TestEventStreamTakesSilenceForABreak(t *testing.T) {
	const idle = 300 * time.Millisecond
	beats := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "retry: 2000\nid: 41\n: vodpipe events\n\nid: 42\nevent: job.started\ndata: {\"type\":\"job.started\",\"jobId\":\"j\"}\n\n")
		w.(http.Flusher).Flush()
		// Heartbeats as long as the test sends them, then silence.
		for range beats {
			_, _ = io.WriteString(w, ": heartbeat\n\n")
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	defer close(beats)
	es, err := NewClient(srv.URL, "").WithEventStreamIdle(idle).Events(t.Context(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	if e, err := es.Next(); err != nil || e.JobID != "j" {
		t.Fatalf("Next = %v, %v", e, err)
	}
	// Heartbeats, each within the bound, for several times the bound: the
	// stream is not taken for broken.
	got := make(chan error, 1)
	go func() {
		_, err := es.Next()
		got <- err
	}()
	for range 10 {
		select {
		case beats <- struct{}{}:
		case err := <-got:
			t.Fatalf("Next returned %v while heartbeats came", err)
		}
		select {
		case err := <-got:
			t.Fatalf("Next returned %v while heartbeats came", err)
		case <-time.After(idle / 3):
		}
	}
	// Then nothing.
	select {
	case err := <-got:
		if !errors.Is(err, ErrEventStreamIdle) {
			t.Fatalf("Next = %v on a silent stream, want ErrEventStreamIdle", err)
		}
	case <-time.After(20 * idle):
		t.Fatalf("Next still waits on a stream silent for %s, its idle bound %s", 20*idle, idle)
	}
	if es.LastID != "42" {
		t.Fatalf("LastID = %q, want 42 (the last event read)", es.LastID)
	}
}

// A server that takes the connection and sends no response headers
// (the same silence, met when opening or reopening the stream) is broken
// after the idle bound too.
func TestEventStreamBoundsTheWaitForHeaders(t *testing.T) {
	const idle = 300 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()
	done := make(chan error, 1)
	go func() {
		_, err := NewClient(srv.URL, "").WithEventStreamIdle(idle).Events(t.Context(), nil, "7")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrEventStreamIdle) {
			t.Fatalf("Events = %v, want ErrEventStreamIdle", err)
		}
	case <-time.After(20 * idle):
		t.Fatalf("Events still waits for headers after %s, its idle bound %s", 20*idle, idle)
	}
}
