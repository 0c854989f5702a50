package notify_test

// What a caller of notify's event stream (GET /v1/events) may not do or see.

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// readOnlyKey is the read-scope key of every test env (see newEnv).
const readOnlyKey = "read-only-key-0000"

// TestSecuritySSERedactsQueuedSourcesForTheReadScope: a job.queued event's
// data is the job message, whose source may be a signed URL (its query
// holds the token). ingest shows it whole to the control scope only (GET
// /v1/jobs/{id}, GET /v1/jobs/{id}/events redact it for a read key; the
// console's live stream drops it); notify's event stream redacts it for a
// read key too (until 0.10 it handed it whole to any key of the read scope).
func TestSecuritySSERedactsQueuedSourcesForTheReadScope(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/v1/events?type=job.queued", nil)
	req.Header.Set("Authorization", "Bearer "+readOnlyKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("events with a read key: %d %s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && sc.Text() != ": vodpipe events" {
	}
	e.publish(job.EventQueued, "signed-1", &job.Job{V: 1, ID: "signed-1",
		Source: "https://media.example/a.mp4?X-Amz-Signature=SECRET-TOKEN", Cover: "https://media.example/c.jpg?sig=COVER-TOKEN"})
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if !strings.Contains(data, "signed-1") {
			t.Fatalf("unexpected event %s", data)
		}
		if strings.Contains(data, "SECRET-TOKEN") || strings.Contains(data, "COVER-TOKEN") {
			t.Fatalf("a read-scope key got job.queued's signed URLs whole over SSE: %s", data)
		}
		return
	}
	t.Fatalf("stream ended before the event: %v", sc.Err())
}

// TestSecuritySSELastEventIDOfTheLastSequenceIsABadRequest: the stream
// starts one after Last-Event-ID, and no event follows 18446744073709551615:
// a 400 naming the header (until 0.10 the start wrapped to 0, JetStream
// refused it, and the client got a 503 with an error logged).
func TestSecuritySSELastEventIDOfTheLastSequenceIsABadRequest(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Last-Event-ID", "18446744073709551615")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 512)
	n, _ := resp.Body.Read(b)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("Last-Event-ID 2^64-1: %d %s, want 400 naming Last-Event-ID", resp.StatusCode, b[:n])
	}
}

// TestSecuritySSELongJobIDIsRefusedBeforeTheBroker: ?jobId= becomes the
// stream's consumer filter, which ingest's layout broker creates with
// nats.go, which puts a single filter subject into the API subject
// ($JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>). A filter past the
// server's max_control_line (4 KiB) has the NATS server close the broker's
// connection: in production ingest's, whose signature service, job submits
// and subscriptions all drop until it reconnects. Until 0.10 any key of the
// read scope could repeat it at will; the jobId is now bounded as the
// subscription API bounds it (job.MaxIDLen), and the broker bounds filters
// (queue.checkLayout).
func TestSecuritySSELongJobIDIsRefusedBeforeTheBroker(t *testing.T) {
	e := newEnv(t)
	// The broker on a connection of its own whose disconnections are counted.
	if err := e.broker.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	var drops atomic.Int32
	nc := e.nats.Connect(t)
	nc.SetDisconnectErrHandler(func(_ *nats.Conn, err error) { drops.Add(1) })
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := queue.ServeLayout(nc, js, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	in := e.start()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/v1/events?jobId="+strings.Repeat("j", 5000), nil)
	req.Header.Set("Authorization", "Bearer "+readOnlyKey)
	status := 0
	if resp, err := http.DefaultClient.Do(req); err == nil {
		status = resp.StatusCode
		resp.Body.Close()
	}
	// A connection the server closed for the request is closed before
	// it answers a flush sent after it.
	_ = nc.FlushTimeout(5 * time.Second)
	if n := drops.Load(); n > 0 || status != http.StatusBadRequest {
		t.Fatalf("GET /v1/events?jobId=<5000 characters> with a read key: status %d (want 400 naming jobId); the layout broker's NATS connection was dropped %d time(s)", status, n)
	}
}
