package ingest

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxTrackedCallers bounds the callers whose signature rate is tracked.
const maxTrackedCallers = 10000

// limiters hands out one rate limiter per caller in bounded memory: at most
// max callers are tracked; when that many are, those idle long enough to
// have a full bucket again are forgotten (which loses them nothing), and if
// none is, a new caller is refused until one is.
type limiters struct {
	rate  rate.Limit
	burst int
	max   int

	mu sync.Mutex
	m  map[string]*limiterEntry
	// nextSweep is when a sweep can first free room, after one found none:
	// until then new callers are refused without walking the map again.
	nextSweep time.Time
}

type limiterEntry struct {
	l    *rate.Limiter
	last time.Time
}

func newLimiters(perSecond float64, burst, max int) *limiters {
	return &limiters{rate: rate.Limit(perSecond), burst: burst, max: max, m: map[string]*limiterEntry{}}
}

// allow takes one event from name's bucket.
func (ls *limiters) allow(name string, now time.Time) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	e, ok := ls.m[name]
	if !ok {
		if len(ls.m) >= ls.max && !ls.sweep(now) {
			return false
		}
		e = &limiterEntry{l: rate.NewLimiter(ls.rate, ls.burst)}
		ls.m[name] = e
	}
	e.last = now
	return e.l.AllowN(now, 1)
}

// sweep forgets callers whose bucket has filled up again and reports
// whether there is room for one more.
func (ls *limiters) sweep(now time.Time) bool {
	refill := time.Duration(float64(ls.burst) / float64(ls.rate) * float64(time.Second))
	if now.Before(ls.nextSweep) {
		return false
	}
	var earliest time.Time
	for name, e := range ls.m {
		if now.Sub(e.last) >= refill {
			delete(ls.m, name)
		} else if earliest.IsZero() || e.last.Before(earliest) {
			earliest = e.last
		}
	}
	if len(ls.m) >= ls.max {
		ls.nextSweep = earliest.Add(refill)
		return false
	}
	return true
}

// tracked is how many callers are tracked.
func (ls *limiters) tracked() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.m)
}
