// Package retry is vodpipe's one retry policy: exponential back-off with
// jitter (github.com/cenkalti/backoff/v5), used wherever something is tried
// again — a job's next run, a COS or VOD request, a NATS watch or pull
// restarted, the JetStream layout waited for, VOD's event pull. The jitter
// spreads the retries of many workers or replicas that failed together (a
// throttled COS, a NATS leader election) instead of sending them again in
// lockstep.
package retry

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Jitter is how far a delay strays from its nominal value: ±50 %.
const Jitter = 0.5

// Policy is an exponential back-off: the first delay about Initial, each
// next one twice the last, none beyond Max (each ± Jitter).
type Policy struct {
	Initial, Max time.Duration
}

// The policies vodpipe uses.
var (
	// Run is a job's next run after a transient failure (per delivery).
	Run = Policy{Initial: time.Second, Max: 2 * time.Minute}
	// Request is a request tried again within one run (recording an upload).
	Request = Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second}
	// Part is a COS request of an upload (a part, an initiate, a complete)
	// tried again within one run.
	Part = Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	// VOD is a VOD API request (ApplyUploadUGC, CommitUploadUGC) tried again.
	VOD = Policy{Initial: 500 * time.Millisecond, Max: 8 * time.Second}
	// Restart is a watch, pull or subscription loop started again.
	Restart = Policy{Initial: time.Second, Max: 30 * time.Second}
)

// New returns a back-off that gives this policy's delays one after
// another; Reset starts it over.
func (p Policy) New() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: p.Initial, RandomizationFactor: Jitter, Multiplier: 2, MaxInterval: p.Max}
}

// Delay is the delay before try n+1 after n failures (n ≥ 1), for callers
// that count tries themselves (a message's deliveries).
func (p Policy) Delay(n int) time.Duration {
	b := p.New()
	var d time.Duration
	// Past 64 doublings every delay is about Max.
	for range min(max(n, 1), 64) {
		d = b.NextBackOff()
	}
	return d
}

// Around is d ± fraction of it, at random: a delay fixed by a schedule
// (webhook retries) that many clients reach at once, spread.
func Around(d time.Duration, fraction float64) time.Duration {
	b := &backoff.ExponentialBackOff{InitialInterval: d, RandomizationFactor: fraction, Multiplier: 1, MaxInterval: d}
	return b.NextBackOff()
}

// Sleep waits d or until ctx ends, and reports whether it waited d.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Every runs f now and every interval after, until ctx ends.
func Every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
