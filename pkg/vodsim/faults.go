package vodsim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Operation names used by fault rules, metrics and the admin API.
const (
	OpApply             = "ApplyUploadUGC"
	OpCommit            = "CommitUploadUGC"
	OpPrepare           = "PrepareUploadUGC"
	OpPutObject         = "PutObject"
	OpInitiateMultipart = "InitiateMultipartUpload"
	OpUploadPart        = "UploadPart"
	OpListParts         = "ListParts"
	OpCompleteMultipart = "CompleteMultipartUpload"
	OpAbortMultipart    = "AbortMultipartUpload"
	OpHeadObject        = "HeadObject"
	OpGetObject         = "GetObject"
	OpDeleteObject      = "DeleteObject"
	OpListUploads       = "ListMultipartUploads"
	OpPullEvents        = "PullEvents"
	OpConfirmEvents     = "ConfirmEvents"
	OpAny               = "*"
)

// FaultConfig is the fault injection in force. PUT /vodsim/faults replaces it.
type FaultConfig struct {
	Rules []FaultRule `json:"rules,omitempty"`
	// Bandwidth limits the bytes per second vodsim reads from all request bodies together; 0 = unlimited.
	Bandwidth int64 `json:"bandwidth,omitempty"`
	// CredentialLifetime, when set, overrides the lifetime of newly issued temporary credentials.
	CredentialLifetime Duration `json:"credentialLifetime,omitempty"`
	// StorageFull makes the store out of space: every request that stores
	// bytes (PutObject, UploadPart) is answered 507 InsufficientStorage
	// before its body is read, as a disk that filled up would be; reads,
	// lists, completes and aborts still work. Set it back to false and
	// space has returned.
	StorageFull bool `json:"storageFull,omitempty"`
}

// FaultRule injects faults into one operation (or "*" for all).
type FaultRule struct {
	Op string `json:"op"`
	// ErrorRate is the fraction of requests answered with an error.
	ErrorRate float64 `json:"errorRate,omitempty"`
	// FailNth fails the Nth request of the operation (1-based, counted from when the rule was set), once.
	FailNth int `json:"failNth,omitempty"`
	// Status and Code of the injected error; default 503 SlowDown for COS, code 500 for VOD.
	Status int    `json:"status,omitempty"`
	Code   string `json:"code,omitempty"`
	// ResetRate is the fraction of requests whose connection is reset in the middle of the body.
	ResetRate float64 `json:"resetRate,omitempty"`
	// LostAnswerRate is the fraction of requests carried out in full whose
	// answer is then lost: the connection is reset where the answer would
	// be written, so the client cannot tell it from a reset and tries again
	// what was done (a second Complete, Commit or Initiate). It applies to
	// VOD's upload actions and to COS but for the reads whose answer is the
	// work (GetObject, HeadObject).
	LostAnswerRate float64 `json:"lostAnswerRate,omitempty"`
	// CorruptRate is the fraction of PutObject and UploadPart requests whose
	// stored bytes get one byte flipped, as corruption between client and
	// storage would: the answer's ETag and CRC-64 are those of the corrupted
	// bytes, so a client that checks them sees the mismatch.
	CorruptRate float64 `json:"corruptRate,omitempty"`
	// Latency is added before the request is handled.
	Latency Duration `json:"latency,omitempty"`
	// AnswerLatency (VOD actions only: ApplyUploadUGC, CommitUploadUGC,
	// PrepareUploadUGC, or those under "*") is added after the request is
	// handled, before the answer is written: the work is done, its answer is
	// slow.
	AnswerLatency Duration `json:"answerLatency,omitempty"`
}

// Duration is a time.Duration written as a string ("250ms") in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler; it takes "250ms" or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration must be a string like \"250ms\": %w", err)
	}
	*d = Duration(n)
	return nil
}

// Validate checks rates and statuses.
func (f FaultConfig) Validate() error {
	for i, r := range f.Rules {
		if r.Op == "" {
			return fmt.Errorf("rules[%d].op is required", i)
		}
		if r.ErrorRate < 0 || r.ErrorRate > 1 || r.ResetRate < 0 || r.ResetRate > 1 || r.CorruptRate < 0 || r.CorruptRate > 1 ||
			r.LostAnswerRate < 0 || r.LostAnswerRate > 1 {
			return fmt.Errorf("rules[%d]: rates must be between 0 and 1", i)
		}
		if r.Status != 0 && (r.Status < 400 || r.Status > 599) {
			return fmt.Errorf("rules[%d].status must be 4xx or 5xx", i)
		}
		if r.FailNth < 0 || r.Latency < 0 || r.AnswerLatency < 0 {
			return fmt.Errorf("rules[%d]: failNth, latency and answerLatency must not be negative", i)
		}
		if r.LostAnswerRate > 0 && !answerCanBeLost(r.Op) && r.Op != OpAny {
			return fmt.Errorf("rules[%d].lostAnswerRate does not apply to %s: its answer is the work", i, r.Op)
		}
		switch r.Op {
		case OpApply, OpCommit, OpPrepare, OpAny:
		default:
			if r.AnswerLatency > 0 {
				return fmt.Errorf("rules[%d].answerLatency applies to VOD's upload actions (%s, %s, %s or *), not %s",
					i, OpApply, OpCommit, OpPrepare, r.Op)
			}
		}
	}
	if f.Bandwidth < 0 || f.CredentialLifetime < 0 {
		return fmt.Errorf("bandwidth and credentialLifetime must not be negative")
	}
	return nil
}

// faults decides, per request, which fault applies.
type faults struct {
	mu     sync.Mutex
	cfg    FaultConfig
	counts map[string]int
	// limiter is the bandwidth limit in force, nil for none. Bodies read it
	// at every Read, so a new limit applies to bodies already being read.
	limiter atomic.Pointer[rate.Limiter]
}

func newFaults(cfg FaultConfig) *faults {
	f := &faults{}
	f.set(cfg)
	return f
}

func (f *faults) set(cfg FaultConfig) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg = cfg
	f.counts = map[string]int{}
	var l *rate.Limiter
	if cfg.Bandwidth > 0 {
		burst := int(min(cfg.Bandwidth, 1<<20))
		l = rate.NewLimiter(rate.Limit(cfg.Bandwidth), burst)
	}
	f.limiter.Store(l)
}

func (f *faults) get() FaultConfig {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg
}

// decision is what to do to one request.
type decision struct {
	latency time.Duration
	answer  time.Duration // added before the answer
	fail    bool
	status  int
	code    string
	reset   bool
	corrupt bool
	lost    bool // carry the request out, then lose the answer
}

// answerCanBeLost reports whether a lost answer applies to op: VOD's
// upload actions and COS's operations but the reads whose answer is the
// work (GetObject, HeadObject).
func answerCanBeLost(op string) bool {
	switch op {
	case OpApply, OpCommit, OpPrepare, OpPutObject, OpInitiateMultipart, OpUploadPart, OpListParts,
		OpCompleteMultipart, OpAbortMultipart, OpDeleteObject, OpListUploads:
		return true
	}
	return false
}

func (f *faults) decide(op string) decision {
	f.mu.Lock()
	defer f.mu.Unlock()
	var d decision
	for _, r := range f.cfg.Rules {
		if r.Op != op && r.Op != OpAny {
			continue
		}
		key := r.Op + "/" + op
		f.counts[key]++
		d.latency += time.Duration(r.Latency)
		d.answer += time.Duration(r.AnswerLatency)
		if !d.fail && (r.FailNth > 0 && f.counts[key] == r.FailNth || r.ErrorRate > 0 && rand.Float64() < r.ErrorRate) {
			d.fail, d.status, d.code = true, r.Status, r.Code
		}
		if !d.reset && r.ResetRate > 0 && rand.Float64() < r.ResetRate {
			d.reset = true
		}
		if !d.corrupt && r.CorruptRate > 0 && rand.Float64() < r.CorruptRate {
			d.corrupt = true
		}
		if !d.lost && r.LostAnswerRate > 0 && answerCanBeLost(op) && rand.Float64() < r.LostAnswerRate {
			d.lost = true
		}
	}
	return d
}

// storageFull reports whether the store is out of space (FaultConfig.StorageFull).
func (f *faults) storageFull() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg.StorageFull
}

func (f *faults) credentialLifetime(def time.Duration) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg.CredentialLifetime > 0 {
		return time.Duration(f.cfg.CredentialLifetime)
	}
	return def
}

// throttle wraps a body so that all bodies together are read at the
// bandwidth in force at each read.
func (f *faults) throttle(ctx context.Context, r io.Reader) io.Reader {
	return &throttled{ctx: ctx, r: r, f: f}
}

type throttled struct {
	ctx context.Context
	r   io.Reader
	f   *faults
}

func (t *throttled) Read(p []byte) (int, error) {
	l := t.f.limiter.Load()
	if l == nil {
		return t.r.Read(p)
	}
	// One limiter for the whole read: a read no larger than its burst always
	// gets its tokens, even if the limit changes meanwhile.
	if len(p) > l.Burst() {
		p = p[:l.Burst()]
	}
	n, err := t.r.Read(p)
	if n > 0 {
		if werr := l.WaitN(t.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// corrupt wraps a body of size bytes so that one byte of it, at a random
// offset, is flipped before vodsim hashes and stores it.
func corrupt(body io.ReadCloser, size int64) io.ReadCloser {
	return &flipped{ReadCloser: body, at: rand.Int64N(size)}
}

type flipped struct {
	io.ReadCloser
	at  int64 // offset of the byte to flip
	off int64 // bytes read so far
}

func (f *flipped) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if f.at >= f.off && f.at < f.off+int64(n) {
		p[f.at-f.off] ^= 0xff
	}
	f.off += int64(n)
	return n, err
}

// lostAnswer is a ResponseWriter that carries nothing to the client: the
// answer of a request whose answer is lost (decision.lost).
type lostAnswer struct{ h http.Header }

func (l *lostAnswer) Header() http.Header {
	if l.h == nil {
		l.h = http.Header{}
	}
	return l.h
}
func (l *lostAnswer) Write(p []byte) (int, error) { return len(p), nil }
func (l *lostAnswer) WriteHeader(int)             {}

// injectFaults decides the faults of one request, waits out its added latency
// and, when resetNow, drops the connection of a request chosen for a reset.
// It returns false when the request is finished (reset, or the client left).
func (s *Server) injectFaults(w http.ResponseWriter, r *http.Request, op string, resetNow bool) (decision, bool) {
	d := s.faults.decide(op)
	if d.latency > 0 {
		select {
		case <-time.After(d.latency):
		case <-r.Context().Done():
			return d, false
		}
	}
	if resetNow && d.reset {
		s.metrics.faults.WithLabelValues(op, "reset").Inc()
		resetConn(w)
		return d, false
	}
	return d, true
}
