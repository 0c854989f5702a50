package httpserve_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/httpserve"
)

// start serves h with cfg's limits on a loopback port.
func start(t *testing.T, cfg httpserve.Config, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = httpserve.New(cfg, h)
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

// waitClosed reads conn until the server closes it, failing if it has not
// within limit: the server, not the test, must end a slow request.
func waitClosed(t *testing.T, conn net.Conn, limit time.Duration) string {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(limit))
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s", limit)
	}
	return string(b)
}

// A slowloris that never finishes its headers, or trickles its body, is cut
// off by the server; a huge header is refused.
func TestSlowClientsAreCutOff(t *testing.T) {
	bodyErr := make(chan error, 1)
	ts := start(t, httpserve.Config{ReadTimeout: 300 * time.Millisecond, MaxHeaderBytes: 4 << 10},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, err := io.Copy(io.Discard, r.Body)
			bodyErr <- err
		}))
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("headers never finished", func(t *testing.T) {
		c := dial()
		fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
		waitClosed(t, c, 5*time.Second)
	})

	t.Run("body trickled", func(t *testing.T) {
		c := dial()
		fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
		stop := make(chan struct{})
		t.Cleanup(func() { close(stop) })
		go func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		}()
		select {
		case err := <-bodyErr:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("reading the trickled body: %v, want a timeout", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the handler was still reading a trickled body after 5s")
		}
		waitClosed(t, c, 5*time.Second)
	})

	t.Run("header too large", func(t *testing.T) {
		c := dial()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
		if got := waitClosed(t, c, 5*time.Second); !strings.HasPrefix(got, "HTTP/1.1 431 ") {
			t.Fatalf("answer %.40q, want 431", got)
		}
	})
}

// Event streams outlive the read and write deadlines, but only MaxStreams
// at once: one more is answered 503 too_many_streams until one ends.
func TestStreamsAreCappedNotTimed(t *testing.T) {
	events := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		httpserve.StartStream(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for {
			if _, err := fmt.Fprint(w, "data: tick\n\n"); err != nil || rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	})
	mux := http.NewServeMux()
	mux.Handle("GET /events", events)
	mux.HandleFunc("GET /plain", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	ts := start(t, httpserve.Config{ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond},
		httpserve.Streams(httpserve.StreamConfig{MaxStreams: 2}, mux, "/events"))

	open := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+"/events", nil)
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	var streams []*http.Response
	for range 2 {
		resp := open()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream: %s", resp.Status)
		}
		streams = append(streams, resp)
	}
	// 8 events take 280ms or more: past both deadlines.
	for i, resp := range streams {
		sc := bufio.NewScanner(resp.Body)
		for n := 0; n < 8; {
			if !sc.Scan() {
				t.Fatalf("stream %d ended after %d events: %v", i, n, sc.Err())
			}
			if sc.Text() == "data: tick" {
				n++
			}
		}
	}

	full := open()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.NewDecoder(full.Body).Decode(&e); err != nil || full.StatusCode != http.StatusServiceUnavailable || e.Error.Code != "too_many_streams" {
		t.Fatalf("third stream: %s %+v %v, want 503 too_many_streams", full.Status, e, err)
	}
	full.Body.Close()
	if resp, err := ts.Client().Get(ts.URL + "/plain"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("ordinary request while the streams are full: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	streams[0].Body.Close()
	deadline := time.After(5 * time.Second)
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		resp := open()
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("a slot was not freed when a stream ended: %s", resp.Status)
		case <-poll.C:
		}
	}
	streams[1].Body.Close()
}

// A request to a stream's path that its handler refuses (no key) keeps the
// deadlines: a trickled body there is cut off like anywhere else, and the
// refused request gives its stream slot back.
func TestRefusedStreamRequestsAreTimed(t *testing.T) {
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		}
		httpserve.StartStream(w)
	})
	ts := start(t, httpserve.Config{ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond},
		httpserve.Streams(httpserve.StreamConfig{MaxStreams: 1}, refuse, "/events"))
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprint(c, "GET /events HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	waitClosed(t, c, 5*time.Second)
	// The only slot is free again: a second refused request is answered 401, not 503.
	resp, err := ts.Client().Get(ts.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after a refused stream request: %s, want 401", resp.Status)
	}
}

// /readyz answers without detail, and logs a reason when readiness changes,
// not at every probe.
func TestReadyLogsChangesOnly(t *testing.T) {
	var logs bytes.Buffer
	var down atomic.Bool
	h := httpserve.Ready(slog.New(slog.NewTextHandler(&logs, nil)), func(context.Context) error {
		if down.Load() {
			return errors.New("nats: no responders available for request")
		}
		return nil
	})
	probe := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := probe(); code != http.StatusOK {
		t.Fatalf("ready: %d", code)
	}
	down.Store(true)
	for range 5 {
		if code, body := probe(); code != http.StatusServiceUnavailable || strings.Contains(body, "nats") {
			t.Fatalf("not ready: %d %q", code, body)
		}
	}
	down.Store(false)
	probe()
	if n := strings.Count(logs.String(), "not ready"); n != 1 || strings.Count(logs.String(), "ready again") != 1 {
		t.Fatalf("5 failed probes and a recovery logged as:\n%s", logs.String())
	}
}
