// Package gctune sets the garbage collector's target of a vodpipe process
// that runs services, and reads what the collector sees (the target, the
// live heap) for the benchmarks and tests that measure memory.
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
)

// DefaultGOGC is the garbage collector's target a vodpipe process runs
// with when the GOGC environment variable does not set one, while its live
// heap is small. A service keeps a few MiB live (5–7 MiB in the soak) and
// allocates for every message, request and status it handles: at Go's
// default of 100 the collector ran about 80 times a second under P3's
// load, for a tenth of the CPU, most of it the fixed cost of each cycle.
// 400 lets the heap grow to five times what is live (tens of MiB) and runs
// a quarter of the cycles. A memory limit (GOMEMLIMIT, or LimitMemory's
// from the container's limit, which the Helm chart passes) still holds the
// heap under it.
const DefaultGOGC = 400

// MaxHeadroom bounds what the target adds to the live heap: above
// MaxHeadroom/4 live (64 MiB), the target falls so that the heap grows
// by about this much between collections (moves of less than a tenth are
// not made), never below Go's default (100, twice what is live). A process
// that embeds the NATS server and vodsim (`vodpipe up`, the demo) holds a
// few KiB per job stored (the server's index of every subject, the
// emulator's records of every upload: 600 MiB at 100,000 jobs), and at 400
// its RSS reached 5.9 GiB there.
const MaxHeadroom = 256 << 20

// gcPercentFor is the target for a live heap of live bytes.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return DefaultGOGC
	}
	p := MaxHeadroom * 100 / live
	return int(min(max(p, 100), DefaultGOGC))
}

// Fix sets the collector's target to DefaultGOGC unless the GOGC
// variable (getenv reads the environment) sets one, which the runtime has
// taken already; it does not move. `vodpipe bench` runs so: its figures are
// measured at one target, and its host reference sets Go's default for a
// while (a tuner could not tell that 100 from its own).
func Fix(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGOGC)
	}
}

// Tune sets the collector's target unless the GOGC variable (getenv
// reads the environment) sets one, which the runtime has taken already:
// DefaultGOGC while the live heap is small, less as it grows (see
// MaxHeadroom), read again after every collection. A target set by
// someone else meanwhile (debug.SetGCPercent) is left alone until it is
// back to the tuner's own. stop ends the tuning (the target stays as it
// is).
func Tune(getenv func(string) string) (stop func()) {
	LimitMemory(getenv)
	if getenv("GOGC") != "" {
		return func() {}
	}
	t := &gcTuner{sample: [2]metrics.Sample{{Name: liveHeapMetric}, {Name: percentMetric}}}
	t.set.Store(DefaultGOGC)
	debug.SetGCPercent(DefaultGOGC)
	t.arm()
	return func() { t.stopped.Store(true) }
}

// gcTuner moves the GC target after each collection.
type gcTuner struct {
	set     atomic.Int64 // the target the tuner last set
	stopped atomic.Bool
	sample  [2]metrics.Sample // the live heap and the target, named by Tune
}

// gcCycle is a sentinel that a collection finds unreachable; its cleanup
// runs after that collection and arms the next.
type gcCycle struct{ _ *gcTuner }

func (t *gcTuner) arm() {
	c := &gcCycle{}
	runtime.AddCleanup(c, func(t *gcTuner) { t.collected() }, t)
}

// collected runs after a collection, on a goroutine of the runtime's
// (cleanups may run in parallel since Go 1.25, but a tuner has one
// sentinel pending at a time, so its calls never overlap).
func (t *gcTuner) collected() {
	if t.stopped.Load() {
		return
	}
	defer t.arm()
	metrics.Read(t.sample[:])
	if t.sample[0].Value.Kind() != metrics.KindUint64 || t.sample[1].Value.Kind() != metrics.KindUint64 {
		return
	}
	live, cur, mine := t.sample[0].Value.Uint64(), int64(t.sample[1].Value.Uint64()), t.set.Load()
	if cur != mine {
		return // someone else's target
	}
	want := int64(gcPercentFor(live))
	// Moves of less than a tenth are not worth a change.
	if want == cur || (want != 100 && want != DefaultGOGC && abs(want-cur)*10 < cur) {
		return
	}
	if was := int64(debug.SetGCPercent(int(want))); was != mine {
		debug.SetGCPercent(int(was)) // set by someone else just now: theirs
		return
	}
	t.set.Store(want)
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// The runtime's metrics the tuner reads.
const (
	liveHeapMetric = "/gc/heap/live:bytes"
	percentMetric  = "/gc/gogc:percent"
)

// Percent is the collector's target now (read, not set: setting it to read
// it would look like someone else's target to a tuner).
func Percent() int {
	s := []metrics.Sample{{Name: percentMetric}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// LiveHeap is this process's live heap after a collection: a measurement
// takes it before and after to tell what something keeps.
func LiveHeap() int64 {
	runtime.GC()
	s := []metrics.Sample{{Name: liveHeapMetric}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// LimitMemory sets the runtime's soft memory limit to nine tenths of
// VODPIPE_MEMORY_LIMIT (bytes; the Helm chart passes the container's memory
// limit there through the downward API) unless GOMEMLIMIT sets one, which
// the runtime has taken already: at a GOGC of 400 the heap may grow to five
// times what is live, and the collector then works to stay under the
// limit rather than have the container killed. It returns the limit set (0
// for none).
func LimitMemory(getenv func(string) string) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return 0
	}
	n, err := strconv.ParseInt(getenv("VODPIPE_MEMORY_LIMIT"), 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	limit := n / 10 * 9
	debug.SetMemoryLimit(limit)
	return limit
}
