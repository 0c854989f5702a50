package testharness

import (
	"runtime"
	"runtime/metrics"
)

// LiveHeap is this process's live heap after a collection: a benchmark
// takes it before and after to measure what something keeps.
func LiveHeap() int64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}
