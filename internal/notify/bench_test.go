package notify_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/webhook"
)

// benchReceivers is the number of webhook endpoints of BenchmarkWebhookFanout.
const benchReceivers = 10

// benchWindow bounds the events published but not yet delivered everywhere:
// a closed loop, so the latency measured is notify's, not a queue's that
// the benchmark itself filled.
const benchWindow = 64

// latencies collects publish → delivery latencies from many receivers.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
	n  atomic.Int64
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
	l.n.Add(1)
}

func (l *latencies) reset() {
	l.mu.Lock()
	l.d = l.d[:0]
	l.mu.Unlock()
	l.n.Store(0)
}

func (l *latencies) quantile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// benchReceiver verifies each delivery, as a real receiver would, and
// records the latency from the event's creation.
func benchReceiver(b *testing.B, secret *atomic.Pointer[string], lat *latencies) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s := secret.Load()
		if s == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if _, err := webhook.Verify(*s, r.Header, body, time.Now(), 0); err != nil {
			b.Errorf("bad delivery: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var ev struct {
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal(body, &ev); err == nil {
			lat.add(time.Since(ev.Time))
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkWebhookFanout publishes b.N events that 10 local webhook
// receivers all subscribed to. It reports deliveries per second with up to
// 64 events in flight, and the publish → delivery latency twice: under that
// load (p50/p99-ms-loaded), and one event at a time (p50/p99-ms), which is
// notify's own latency rather than the queue the load builds. The baseline,
// measured in the same run against the same receivers, is the same number of
// signed POSTs sent straight from memory with the same concurrency; x-direct
// is what durability (JetStream consumers, acks, the attempt log) costs.
func BenchmarkWebhookFanout(b *testing.B) {
	e := newEnv(b, func(c *notify.Config) { c.WebhookConcurrency = 16 })
	in := e.start()
	lat := &latencies{}
	var secrets [benchReceivers]atomic.Pointer[string]
	var urls []string
	for i := range benchReceivers {
		srv := benchReceiver(b, &secrets[i], lat)
		urls = append(urls, srv.URL+"/hook")
		sub := in.subscribe(b, srv.URL+"/hook", []string{"job.*"}, "")
		secrets[i].Store(&sub.Secret)
	}
	direct := directFanout(b, urls, &secrets, max(b.N, 500))

	// run publishes n events keeping at most window of them undelivered,
	// and returns the time until the last delivery.
	run := func(n, window int) time.Duration {
		lat.reset()
		start := time.Now()
		for i := range n {
			for int64(i-window+1)*benchReceivers > lat.n.Load() {
				time.Sleep(20 * time.Microsecond)
			}
			e.publish(job.EventProgress, "bench-"+strconv.Itoa(i%100), job.ProgressData{BytesDone: int64(i)})
		}
		want := int64(n) * benchReceivers
		deadline := time.Now().Add(2 * time.Minute)
		for lat.n.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d deliveries after 2 minutes", lat.n.Load(), want)
			}
			time.Sleep(100 * time.Microsecond)
		}
		return time.Since(start)
	}

	b.ResetTimer()
	elapsed := run(b.N, benchWindow)
	b.StopTimer()
	rate := float64(b.N*benchReceivers) / elapsed.Seconds()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(rate, "deliveries/s")
	b.ReportMetric(ms(lat.quantile(0.50)), "p50-ms-loaded")
	b.ReportMetric(ms(lat.quantile(0.99)), "p99-ms-loaded")
	b.ReportMetric(direct, "direct-deliveries/s")
	b.ReportMetric(rate/direct, "x-direct")

	run(min(b.N, 300), 1)
	b.ReportMetric(ms(lat.quantile(0.50)), "p50-ms")
	b.ReportMetric(ms(lat.quantile(0.99)), "p99-ms")
	b.ReportMetric(ms(lat.quantile(1)), "max-ms")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// directFanout sends n events to every receiver as signed POSTs straight
// from memory, 16 at a time per receiver, and returns deliveries per second.
func directFanout(b *testing.B, urls []string, secrets *[benchReceivers]atomic.Pointer[string], n int) float64 {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	start := time.Now()
	var wg sync.WaitGroup
	for r, u := range urls {
		secret := *secrets[r].Load()
		work := make(chan int)
		for range 16 {
			wg.Go(func() {
				for i := range work {
					ev, _ := job.NewEvent(job.EventProgress, "direct", job.ProgressData{BytesDone: int64(i)})
					body, _ := json.Marshal(ev)
					now := time.Now()
					sig, _ := webhook.Sign(secret, ev.ID, now, body)
					req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
					req.Header.Set(webhook.HeaderID, ev.ID)
					req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
					req.Header.Set(webhook.HeaderSignature, sig)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
		wg.Go(func() {
			defer close(work)
			for i := range n {
				work <- i
			}
		})
	}
	wg.Wait()
	return float64(n*len(urls)) / time.Since(start).Seconds()
}
