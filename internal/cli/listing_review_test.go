package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// countingWriter counts the bytes written to it and keeps none.
type countingWriter struct{ n atomic.Int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

// liveHeap is the live heap after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// fakeListing serves n jobs (100 a page) and n dead letters (100 a page),
// and records, when it serves the last page, how many bytes the command had
// written to its stdout so far and the process's live heap.
type fakeListing struct {
	n            int
	out          *countingWriter
	writtenAtEnd atomic.Int64
	heapAtEnd    atomic.Uint64
}

func (f *fakeListing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const per = 100
	switch r.URL.Path {
	case "/v1/jobs:counts":
		_ = json.NewEncoder(w).Encode(client.CountsResponse{All: uint64(f.n)})
	case "/v1/jobs":
		from, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
		var resp client.ListResponse
		for i := from; i < min(from+per, f.n); i++ {
			resp.Jobs = append(resp.Jobs, client.JobView{ID: fmt.Sprintf("job-%08d", i), State: job.StateCompleted,
				FileID: "5285890781234567890", CreatedAt: time.Now(), UpdatedAt: time.Now(),
				Job: job.Job{ID: fmt.Sprintf("job-%08d", i), Source: fmt.Sprintf("https://media.example.com/library/2026/%08d.mp4", i)}})
		}
		if from+per < f.n {
			resp.NextCursor = strconv.Itoa(from + per)
		} else {
			f.writtenAtEnd.Store(f.out.n.Load())
			f.heapAtEnd.Store(liveHeap())
		}
		_ = json.NewEncoder(w).Encode(resp)
	case "/v1/dead-letters":
		from, _ := strconv.Atoi(r.URL.Query().Get("after"))
		var resp client.DeadLetterList
		for i := from; i < min(from+per, f.n); i++ {
			resp.DeadLetters = append(resp.DeadLetters, job.DeadLetterEntry{Seq: uint64(i + 1), DeadLetter: job.DeadLetter{
				JobID: fmt.Sprintf("job-%08d", i), Code: "source_not_found", Reason: "GET https://media.example.com/x.mp4: 404 Not Found", Time: time.Now()}})
		}
		if from+per < f.n {
			resp.Next = uint64(from + per)
		} else {
			f.writtenAtEnd.Store(f.out.n.Load())
			f.heapAtEnd.Store(liveHeap())
		}
		_ = json.NewEncoder(w).Encode(resp)
	default:
		http.NotFound(w, r)
	}
}

// TestReviewListingsHoldEveryRow shows that `vodpipe jobs --all` (table and
// JSON) and `vodpipe dead-letters` keep every row in memory until the last
// page: nothing reaches stdout before it, and the live heap at the last
// page grows with the rows listed.
func TestReviewListingsHoldEveryRow(t *testing.T) {
	for _, args := range [][]string{{"jobs", "--all"}, {"jobs", "--all", "-o", "json"}, {"dead-letters"}, {"dead-letters", "-o", "json"}} {
		for _, n := range []int{1_000, 20_000} {
			out := &countingWriter{}
			f := &fakeListing{n: n, out: out}
			srv := httptest.NewServer(f)
			before := liveHeap()
			code := run(t.Context(), append(args, "--api", srv.URL, "--api-key", "k"), out, io.Discard)
			srv.Close()
			if code != 0 {
				t.Fatalf("%v: exit %d", args, code)
			}
			held := int64(f.heapAtEnd.Load()) - int64(before)
			t.Logf("%v at %6d rows: stdout %8d bytes in all, %d of them written before the last page; live heap at the last page +%.1f MiB",
				args, n, out.n.Load(), f.writtenAtEnd.Load(), float64(held)/(1<<20))
		}
	}
}
