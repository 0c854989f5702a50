package ingest_test

// Ingest's long-lived event streams: capped, per user too, and not cut by
// the request deadlines.

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/ingest"
)

// openStream opens a GET stream and returns its response (200 expected) or
// the refusal's status.
func openStream(t *testing.T, ctx context.Context, url string, set func(*http.Request)) (*http.Response, int) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	set(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, http.StatusOK
}

// TestConsoleEventStreamsAreCapped: VODPIPE_SSE_MAX_STREAMS caps the
// console's live streams too (until 0.10 only the upload page's): each is a
// stream of every event with a 512-entry buffer, and one signed-in read key
// opened as many as it liked.
func TestConsoleEventStreamsAreCapped(t *testing.T) {
	a := startIngest(t, func(c *ingest.Config) { c.MaxStreams = 2 })
	b := newBrowser(t, a)
	b.signIn(readerKey)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	withCookie := func(r *http.Request) { r.AddCookie(b.cookie) }
	for i := range 5 {
		if _, status := openStream(t, ctx, a.url+"/console/events", withCookie); status != http.StatusOK {
			if i < 2 {
				t.Fatalf("stream %d: %d", i+1, status)
			}
			return // refused past the cap: fixed
		}
	}
	t.Fatal("5 console event streams open at once with VODPIPE_SSE_MAX_STREAMS=2: /console/events is not capped")
}

// TestOneUserCannotTakeEveryUploadPageStream: an upload token is an end
// user's (the least trusted caller). The streams of one user, whatever
// their tokens, stop at VODPIPE_UPLOAD_TOKEN_MAX_STREAMS (429), so no one
// takes every stream VODPIPE_SSE_MAX_STREAMS allows and every other
// user's page is answered 503.
func TestOneUserCannotTakeEveryUploadPageStream(t *testing.T) {
	a := startIngest(t, withUploadTokens, func(c *ingest.Config) { c.MaxStreams, c.UploadTokenMaxStreams = 4, 2 })
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	// Two tokens of one user: the cap is the user's, whatever token.
	mallory := []string{a.mint(`{"user":"mallory"}`), a.mint(`{"user":"mallory"}`)}
	for i := range 4 {
		_, status := openStream(t, ctx, a.url+"/upload/events", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+mallory[i%2]) })
		if want := map[bool]int{true: http.StatusOK, false: http.StatusTooManyRequests}[i < 2]; status != want {
			t.Fatalf("mallory's stream %d: %d, want %d", i+1, status, want)
		}
	}
	alice := a.mint(`{"user":"alice"}`)
	if _, status := openStream(t, ctx, a.url+"/upload/events", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+alice) }); status != http.StatusOK {
		t.Fatalf("alice's page after one other user's token opened 4 streams: %d (one token holds every stream slot)", status)
	}
}

// TestUploadEventStreamOutlivesTheRequestDeadlines: uploadEvents lifts the
// request's read and write deadlines (httpserve.StartStream) through
// instrument's recorder, which must unwrap to the connection's writer: it
// did not until 0.10, and the stream was cut VODPIPE_HTTP_WRITE_TIMEOUT /
// _READ_TIMEOUT (1m) after it opened, whatever the token's life.
func TestUploadEventStreamOutlivesTheRequestDeadlines(t *testing.T) {
	a := startIngest(t, withUploadTokens, func(c *ingest.Config) {
		c.ReadTimeout, c.WriteTimeout = time.Second, time.Second
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	alice := a.mint(`{"user":"alice"}`)
	resp, status := openStream(t, ctx, a.url+"/upload/events", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+alice) })
	if status != http.StatusOK {
		t.Fatalf("events: %d", status)
	}
	staysOpen(t, resp, "the upload page's stream", "the 1s request deadlines")
}

// staysOpen fails t if resp's stream ends within four times the deadline
// it outlives (1 s here): what ends it, a deadline, ends it by then.
func staysOpen(t *testing.T, resp *http.Response, what, deadline string) {
	t.Helper()
	ended := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
		}
		ended <- sc.Err()
	}()
	select {
	case err := <-ended:
		t.Fatalf("%s ended after %s (%v)", what, deadline, err)
	case <-time.After(4 * time.Second):
	}
}

// TestConsoleEventStreamOutlivesTheReadDeadline: the console's stream
// lifts the read deadline as well as the write one: a read deadline
// passing has net/http's background read cancel the request's context,
// which ended the stream VODPIPE_HTTP_READ_TIMEOUT after it opened until
// 0.10 (console.js reconnected, with a gap in the live view each time).
func TestConsoleEventStreamOutlivesTheReadDeadline(t *testing.T) {
	a := startIngest(t, func(c *ingest.Config) { c.ReadTimeout = time.Second })
	b := newBrowser(t, a)
	b.signIn(readerKey)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	resp, status := openStream(t, ctx, a.url+"/console/events", func(r *http.Request) { r.AddCookie(b.cookie) })
	if status != http.StatusOK {
		t.Fatalf("events: %d", status)
	}
	staysOpen(t, resp, "the console's stream", "the 1s read deadline")
}
