package ingest_test

// BenchmarkBatchSubmit measures jobs accepted per second by POST
// /v1/jobs:batch with 1000-job NDJSON batches, against a real embedded
// JetStream, over loopback HTTP. Target ≥ 20 000 jobs/s on 2 cores.
// Run: go test ./internal/ingest -run '^$' -bench BatchSubmit -benchtime 20x

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/ingest"
)

func BenchmarkBatchSubmit(b *testing.B) {
	a := startIngestB(b, func(c *ingest.Config) { c.BatchMax, c.MaxBody = 1000, 16<<20 })
	const batch = 1000
	n := 0
	start := time.Now()
	for b.Loop() {
		var body bytes.Buffer
		for range batch {
			n++
			fmt.Fprintf(&body, "{\"id\":\"bench-%d\",\"source\":\"file:///media/in/%d.mp4\",\"sourceContext\":\"u=%d\"}\n", n, n, n)
		}
		req, _ := http.NewRequest("POST", a.url+"/v1/jobs:batch", &body)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "jobs/s")
	b.ReportMetric(0, "ns/op")
}
