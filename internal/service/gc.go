package service

import "runtime/debug"

// DefaultGOGC is the garbage collector's target a vodpipe process runs
// with when the GOGC environment variable does not set one. A service keeps
// a few MiB live (5–7 MiB in the soak) and allocates for every message,
// request and status it handles: at Go's default of 100 the collector ran
// about 80 times a second under P3's load, for a tenth of the CPU, most of
// it the fixed cost of each cycle. 400 lets the heap grow to five times
// what is live (tens of MiB) and runs a quarter of the cycles. GOMEMLIMIT,
// when set (the Helm chart sets it from the memory limit), still holds the
// heap under it.
const DefaultGOGC = 400

// TuneGC sets the collector's target to DefaultGOGC unless the GOGC
// variable (getenv reads the environment) sets one, which the runtime has
// taken already.
func TuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGOGC)
	}
}
