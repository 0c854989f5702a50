package ingest_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/ingest"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/testharness"
)

// A full jobs stream (its byte limit reached, as a backlog larger than
// VODPIPE_JOBS_MAX_BYTES would) refuses a job with 503 storage_full, a
// reason and Retry-After; the refused job's status says it is not queued;
// every job accepted before stays in the stream; once workers have taken
// jobs off, ingest publishes the refused jobs by itself (their statuses
// were written: none is left queued for ever) and clears the marks, and
// the same jobs submitted again are duplicates with no second message.
func TestStorageFullRefusesWithReasonAndResumesWhenSpaceReturns(t *testing.T) {
	const limit = 16 << 10
	a := startIngest(t, func(c *ingest.Config) { c.QueueConfig.JobsMaxBytes = limit })
	pad := strings.Repeat("x", 500)
	body := func(id string) string {
		return fmt.Sprintf(`{"v":1,"id":%q,"source":"https://cdn.example.com/%s.mp4"}`, id, pad)
	}
	var accepted []string
	var refused string
	var r reply
	for i := 0; refused == ""; i++ {
		if i == 1000 {
			t.Fatalf("1000 jobs of 500 bytes accepted into a %d-byte stream", limit)
		}
		id := fmt.Sprintf("full-%04d", i)
		r = a.do("POST", "/v1/jobs", adminKey, "application/json", body(id))
		switch r.status {
		case 201:
			accepted = append(accepted, id)
		case 503:
			refused = id
		default:
			t.Fatalf("job %s: %d %s", id, r.status, r.raw)
		}
	}
	e, _ := r.body["error"].(map[string]any)
	if e["code"] != "storage_full" || !strings.Contains(fmt.Sprint(e["message"]), "storage is full") || r.header.Get("Retry-After") == "" {
		t.Fatalf("refusal: %s (Retry-After %q); want storage_full naming the storage and a Retry-After", r.raw, r.header.Get("Retry-After"))
	}
	got := a.do("GET", "/v1/jobs/"+refused, adminKey, "", "")
	if e, _ := got.body["error"].(map[string]any); got.body["state"] != "queued" || e["code"] != queue.CodeNotQueued {
		t.Fatalf("the refused job's status: %s; want queued with error %s", got.raw, queue.CodeNotQueued)
	}
	// A batch meets the same full stream: 503, each item naming the storage.
	rb := a.do("POST", "/v1/jobs:batch", adminKey, "application/x-ndjson", body("batch-1")+"\n"+body("batch-2")+"\n")
	if rb.status != 503 || !strings.Contains(string(rb.raw), "storage is full") || rb.header.Get("Retry-After") == "" {
		t.Fatalf("batch into a full stream: %d %s", rb.status, rb.raw)
	}

	// Workers take the accepted jobs off the stream: every one is there, in order.
	ctx := t.Context()
	js := a.nats.JetStream(t)
	cons, err := js.Consumer(ctx, queue.JobsStream, queue.WorkerConsumer)
	if err != nil {
		t.Fatal(err)
	}
	take := func(n int) []string {
		var ids []string
		for len(ids) < n {
			b, err := cons.Fetch(n-len(ids), jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for m := range b.Messages() {
				got++
				if strings.Contains(string(m.Data()), "evil.example") {
					t.Errorf("a job message carries the other submitter's source: %s", m.Data())
				}
				ids = append(ids, strings.Split(strings.Split(string(m.Data()), `"id":"`)[1], `"`)[0])
				if err := m.DoubleAck(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if got == 0 {
				t.Fatalf("%d of %d jobs in the stream", len(ids), n)
			}
		}
		return ids
	}
	if ids := take(len(accepted)); strings.Join(ids, ",") != strings.Join(accepted, ",") {
		t.Fatalf("jobs in the stream: %v\nwant the %d accepted: %v", ids, len(accepted), accepted)
	}
	// Space is back. Another submitter reuses the refused job's id with a
	// source of its own: it gets the duplicate, and what goes out is the job
	// first submitted, never its body.
	evil := fmt.Sprintf(`{"v":1,"id":%q,"source":"https://evil.example/other.mp4"}`, refused)
	if r := a.do("POST", "/v1/jobs", adminKey, "application/json", evil); r.status != 200 || strings.Contains(string(r.raw), "evil.example") {
		t.Fatalf("another body under the refused id: %d %s; want the duplicate, the first job", r.status, r.raw)
	}
	// Ingest publishes the refused jobs by itself too (their statuses were
	// written: none is left queued for ever), once each, and the marks go.
	ids := take(3)
	slices.Sort(ids)
	if want := []string{"batch-1", "batch-2", refused}; !slices.Equal(ids, want) {
		t.Fatalf("stream holds %v, want the refused %v", ids, want)
	}
	testharness.WaitFor(t, 10*time.Second, "the not_queued mark cleared", func() bool {
		got := a.do("GET", "/v1/jobs/"+refused, adminKey, "", "")
		return got.body["state"] == "queued" && got.body["error"] == nil
	})
	// Submitted again, they are duplicates: queued, no second message.
	r = a.do("POST", "/v1/jobs", adminKey, "application/json", body(refused))
	if r.status != 200 || r.body["state"] != "queued" || r.body["error"] != nil {
		t.Fatalf("the refused job again: %d %s; want 200 queued without error", r.status, r.raw)
	}
	if rb := a.do("POST", "/v1/jobs:batch", adminKey, "application/x-ndjson", body("batch-1")+"\n"+body("batch-2")+"\n"); rb.status != 200 {
		t.Fatalf("batch once space returned: %d %s", rb.status, rb.raw)
	}
	stream, err := js.Stream(ctx, queue.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("jobs stream after the duplicates: %+v, %v; want no second message", info.State, err)
	}
}
