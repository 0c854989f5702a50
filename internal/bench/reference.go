package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// The host reference: a fixed workload of no vodpipe code, measured next to
// P3 so that a P3 figure can be read against this machine's speed at that
// moment. On a shared VM that speed moves by a factor of two over a day; P3
// (HTTP exchanges, small JSON, loopback TCP) moves with it.
const (
	refClients = 64
	refBody    = 1024
)

// hostReference is how many loopback HTTP/1.1 keep-alive POSTs of a 1 KiB
// JSON body, each decoded by the handler and answered with a small JSON
// document, refClients clients complete per second over d. Its goroutines
// carry the profiler label bench=host-reference (go tool pprof -tagignore
// bench=host-reference leaves them out), but its garbage collection cannot:
// `vodpipe bench --cpuprofile` measures no reference (Options.NoHostReference).
// It runs at Go's default GC target, whatever the process's (vodpipe sets
// its own, gctune.DefaultGOGC): the yardstick of the host is a plain Go
// program's.
func hostReference(ctx context.Context, d time.Duration) (rate float64, err error) {
	atGoDefaultGC(func() {
		pprof.Do(ctx, pprof.Labels("bench", "host-reference"), func(ctx context.Context) {
			rate, err = runReference(ctx, d)
		})
	})
	return rate, err
}

// atGoDefaultGC runs f with the garbage collector at Go's default target
// (GOGC=100), then puts the process's back.
func atGoDefaultGC(f func()) {
	was := debug.SetGCPercent(100)
	defer debug.SetGCPercent(was)
	f()
}

func runReference(ctx context.Context, d time.Duration) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			ID   int    `json:"id"`
			Data string `json:"data"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"id": in.ID, "bytes": len(in.Data)})
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	tr := &http.Transport{MaxIdleConnsPerHost: refClients, MaxIdleConns: refClients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body, _ := json.Marshal(map[string]any{"id": 1, "data": string(bytes.Repeat([]byte("x"), refBody-20))})
	url := "http://" + ln.Addr().String() + "/"

	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var done atomic.Int64
	var (
		mu     sync.Mutex
		failed error // the first failure
	)
	fail := func(err error) {
		mu.Lock()
		if failed == nil {
			failed = err
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	start := time.Now()
	for range refClients {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						fail(err)
					}
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					fail(fmt.Errorf("HTTP %d", resp.StatusCode))
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := parent.Err(); err != nil {
		return 0, err
	}
	if failed != nil {
		return 0, fmt.Errorf("host reference: %w", failed)
	}
	return float64(done.Load()) / elapsed.Seconds(), nil
}
