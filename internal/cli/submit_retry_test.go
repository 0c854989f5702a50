package cli

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/stack"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// TestSubmitSendsABatchAgainWhileIngestIsAway: a batch ingest does not
// take for a reason that passes (here two 503s, as from an ingest
// restarting behind its load balancer) is sent again, so a library's long
// run goes on across an ingest restart or a rolling upgrade; with
// --retry-for 0 the run stops at the first, as it did before.
func TestSubmitSendsABatchAgainWhileIngestIsAway(t *testing.T) {
	root := t.TempDir()
	st := startStack(t, root, 0)
	for i := range 3 {
		if err := writeSample(filepath.Join(root, fmt.Sprintf("clip-%d.mp4", i)), 32<<10+int64(i), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	target, _ := url.Parse(st.IngestURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var refuse, refused atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/jobs:batch" && refuse.Add(-1) >= 0 {
			refused.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"ingest is restarting"}}`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	submit := func(retryFor string) (int, string) {
		var out, errOut lockedBuffer
		code := run(t.Context(), []string{"submit", "--api", front.URL, "--api-key", st.APIKey, "--retry-for", retryFor, root}, &out, &errOut)
		return code, errOut.String()
	}

	refuse.Store(1)
	if code, stderr := submit("0s"); code == 0 || refused.Load() != 1 {
		t.Fatalf("--retry-for 0 with ingest away: exit %d after %d refusals, want a stop at the first\n%s", code, refused.Load(), stderr)
	}
	refuse.Store(2)
	refused.Store(0)
	code, stderr := submit("1m")
	if code != 0 || refused.Load() != 2 || strings.Count(stderr, "sending it again") != 2 {
		t.Fatalf("exit %d after %d refusals, want 0 after 2, each told:\n%s", code, refused.Load(), stderr)
	}
	c := client.NewClient(st.IngestURL, st.APIKey)
	var ids []string
	if err := walkSources([]string{root}, "", 0, func(it *item) error { ids = append(ids, it.id); return nil }, noSkips(t)); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := c.Get(t.Context(), id); err != nil {
			t.Errorf("job %s after the batch was sent again: %v", id, err)
		}
	}
}

// TestSubmitWaitsForRoomInTheJobsStream: ingest answers the jobs that the
// jobs stream has no room for "error" (not queued, the stream full) and
// queues the rest of the batch. Those are sent again, within --retry-for,
// as the workers make room: a library larger than VODPIPE_JOBS_MAX_BYTES
// goes in at the workers' pace instead of as refusals to run again.
func TestSubmitWaitsForRoomInTheJobsStream(t *testing.T) {
	root := t.TempDir()
	st, err := stack.Start(t.Context(), stack.Options{
		DataDir: t.TempDir(), SourceRoot: root, Workers: 1, JobsPerWorker: 2, PartSize: 1 << 20, Concurrency: 4,
		LeaseTTL: 3 * time.Second, Queue: queue.Config{AckWait: 3 * time.Second, JobsMaxBytes: 2 << 10},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	const n = 12
	for i := range n {
		if err := writeSample(filepath.Join(root, fmt.Sprintf("clip-%02d.mp4", i)), 16<<10+int64(i), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut lockedBuffer
	if code := run(t.Context(), []string{"submit", "--api", st.IngestURL, "--api-key", st.APIKey, "--json", root}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(errOut.String(), "not queued") {
		t.Fatalf("the jobs stream (2 KiB) held all %d jobs at once: the test shows nothing\n%s", n, errOut.String())
	}
	c := client.NewClient(st.IngestURL, st.APIKey)
	var ids []string
	if err := walkSources([]string{root}, "", 0, func(it *item) error { ids = append(ids, it.id); return nil }, noSkips(t)); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, time.Minute, "every job completed", func() bool {
		for _, id := range ids {
			if v, err := c.Get(t.Context(), id); err != nil || v.State != job.StateCompleted {
				return false
			}
		}
		return true
	})
}
