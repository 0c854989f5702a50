package bench

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Each request gets the whole limit: two bodies sent at once take as long as one.
func TestLimitEachRequestPacesEveryBodyOnItsOwn(t *testing.T) {
	const bw, size = 8 << 20, 2 << 20 // 0.25 s per body
	srv := httptest.NewServer(limitEachRequest(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, err := io.Copy(io.Discard, r.Body); err != nil || n != size {
			http.Error(w, "short body", http.StatusBadRequest)
		}
	}), bw))
	t.Cleanup(srv.Close)
	want := time.Duration(float64(size) / bw * float64(time.Second))
	for _, parallel := range []int{1, 2} {
		start := time.Now()
		var wg sync.WaitGroup
		for range parallel {
			wg.Go(func() {
				resp, err := srv.Client().Post(srv.URL, "application/octet-stream", bytes.NewReader(make([]byte, size)))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("status %s", resp.Status)
				}
			})
		}
		wg.Wait()
		if d := time.Since(start); d < want*9/10 || d > want*3 {
			t.Errorf("%d bodies of %d bytes at %d B/s each took %s, want about %s", parallel, size, bw, d, want)
		}
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	sorted := make([]time.Duration, 100)
	for i := range sorted {
		sorted[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, c := range []struct {
		in   []time.Duration
		p    int
		want time.Duration
	}{
		{sorted, 50, 50 * time.Millisecond},
		{sorted, 99, 99 * time.Millisecond},
		{sorted, 100, 100 * time.Millisecond},
		{sorted[:1], 99, time.Millisecond},
		{sorted[:10], 50, 5 * time.Millisecond},
		{nil, 50, 0},
	} {
		if got := percentile(c.in, c.p); got != c.want {
			t.Errorf("p%d of %d values = %s, want %s", c.p, len(c.in), got, c.want)
		}
	}
}

func TestMedianTakesTheLowerMiddle(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// The host reference counts answered requests and ends with its duration.
func TestHostReferenceCountsAnsweredRequests(t *testing.T) {
	start := time.Now()
	rate, err := hostReference(t.Context(), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if rate <= 0 {
		t.Fatalf("reference %.0f req/s, want some", rate)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("a 500 ms reference took %s", d)
	}
}
