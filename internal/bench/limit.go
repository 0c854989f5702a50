package bench

import (
	"io"
	"net/http"
	"time"
)

// limitEachRequest limits the body of every request h serves to bw bytes per
// second, each request on its own, the way a path of that speed per
// connection would; vodsim's own Bandwidth fault shares one limit among all
// requests instead. Only then do more parts in flight (more workers) move
// more bytes, which is what P6 measures.
func limitEachRequest(h http.Handler, bw int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &pacedBody{ReadCloser: r.Body, r: r, bw: float64(bw)}
		}
		h.ServeHTTP(w, r)
	})
}

// pacedBody hands out bytes no faster than bw per second since its first read.
type pacedBody struct {
	io.ReadCloser
	r     *http.Request
	bw    float64
	start time.Time
	n     int64
}

func (b *pacedBody) Read(p []byte) (int, error) {
	if b.start.IsZero() {
		b.start = time.Now()
	}
	n, err := b.ReadCloser.Read(p[:min(len(p), 64<<10)]) // small steps keep the pace smooth
	b.n += int64(n)
	due := b.start.Add(time.Duration(float64(b.n) / b.bw * float64(time.Second)))
	if wait := time.Until(due); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-b.r.Context().Done():
			if err == nil {
				err = b.r.Context().Err()
			}
		}
	}
	return n, err
}
