package gctune

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/testharness"
)

func env(v string) func(string) string {
	return func(k string) string {
		if k == "GOGC" {
			return v
		}
		return ""
	}
}

// filled is n bytes written (live in the heap, not a zero page).
func filled(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// waitForTarget collects until the target is want.
func waitForTarget(t *testing.T, want int) {
	t.Helper()
	testharness.WaitFor(t, 10*time.Second, fmt.Sprintf("the GC target to become %d", want), func() bool {
		runtime.GC()
		return Percent() == want
	})
}

// waitForAbout200 collects until the target is about 200 (MaxHeadroom/2
// live, less the test binary's own few MiB).
func waitForAbout200(t *testing.T, what string) {
	t.Helper()
	testharness.WaitFor(t, 10*time.Second, what, func() bool {
		runtime.GC()
		return Percent() < 210 && Percent() > 150
	})
}

func TestTuneSetsTheTargetUnlessGOGCIsSet(t *testing.T) {
	was := debug.SetGCPercent(100)
	defer debug.SetGCPercent(was)
	stop := Tune(env(""))
	defer stop()
	if got := Percent(); got != DefaultGOGC {
		t.Fatalf("the runtime's target after Tune without GOGC = %d, want %d", got, DefaultGOGC)
	}
	stop()
	for _, v := range []string{"50", "off", "junk"} {
		debug.SetGCPercent(100)
		defer Tune(env(v))()
		runtime.GC()
		if got := Percent(); got != 100 {
			t.Fatalf("Tune with GOGC=%s changed the runtime's target to %d", v, got)
		}
	}
}

func TestGCPercentForLiveHeap(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, DefaultGOGC}, {6 << 20, DefaultGOGC}, {MaxHeadroom / 4, DefaultGOGC},
		{MaxHeadroom / 2, 200}, {MaxHeadroom, 100}, {600 << 20, 100}, {8 << 30, 100},
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// A process whose live heap grows past MaxHeadroom/4 gets a lower target
// after its next collections, and DefaultGOGC again once it shrinks; a
// target someone else set is theirs until they put the tuner's back.
func TestTuneBoundsTheHeadroomOfALargeLiveHeap(t *testing.T) {
	was := debug.SetGCPercent(100)
	defer debug.SetGCPercent(was)
	stop := Tune(env(""))
	defer stop()
	waitForTarget(t, DefaultGOGC)

	// MaxHeadroom/2 more live: the target falls to about 200 (the
	// test binary's own few MiB lower it a little).
	big := filled(MaxHeadroom / 2)
	waitForAbout200(t, "the GC target to fall to about 200 with 128 MiB live")
	runtime.KeepAlive(big)
	big = nil
	waitForTarget(t, DefaultGOGC)

	// Someone else's target stays while it is set, and the tuner takes
	// over again once its own is back: with 128 MiB live, about 200.
	prev := debug.SetGCPercent(50)
	big = filled(MaxHeadroom / 2)
	for range 3 {
		runtime.GC()
	}
	if got := Percent(); got != 50 {
		t.Fatalf("the tuner changed a target set by someone else (50) to %d", got)
	}
	debug.SetGCPercent(prev)
	waitForAbout200(t, "the tuner to take over again (about 200 with 128 MiB live)")
	runtime.KeepAlive(big)
	big = nil
	waitForTarget(t, DefaultGOGC)
}

func TestFixSetsTheTargetOnceUnlessGOGCIsSet(t *testing.T) {
	was := debug.SetGCPercent(100)
	defer debug.SetGCPercent(was)
	Fix(env("50"))
	if got := Percent(); got != 100 {
		t.Fatalf("Fix with GOGC=50 changed the target to %d", got)
	}
	Fix(env(""))
	big := filled(MaxHeadroom / 2)
	for range 3 {
		runtime.GC()
	}
	if got := Percent(); got != DefaultGOGC {
		t.Fatalf("the target after Fix with 128 MiB live = %d, want %d (fixed)", got, DefaultGOGC)
	}
	runtime.KeepAlive(big)
}

// TestLimitMemoryFromTheContainersLimit: the chart passes the container's
// memory limit (VODPIPE_MEMORY_LIMIT); the process holds its heap under
// nine tenths of it, unless GOMEMLIMIT says otherwise.
func TestLimitMemoryFromTheContainersLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	if got := LimitMemory(env(map[string]string{"VODPIPE_MEMORY_LIMIT": "536870912"})); got != 536870912/10*9 || debug.SetMemoryLimit(-1) != got {
		t.Fatalf("limit for a 512 MiB container = %d (runtime %d), want 9/10 of it", got, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(before)
	for _, vars := range []map[string]string{
		{"VODPIPE_MEMORY_LIMIT": "536870912", "GOMEMLIMIT": "300MiB"}, {}, {"VODPIPE_MEMORY_LIMIT": "lots"},
	} {
		if got := LimitMemory(env(vars)); got != 0 || debug.SetMemoryLimit(-1) != before {
			t.Errorf("%v: limit %d set, want none", vars, got)
		}
	}
}
