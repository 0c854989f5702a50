package service

import (
	"runtime/debug"
	"testing"
)

func TestTuneGCSetsTheTargetUnlessGOGCIsSet(t *testing.T) {
	was := debug.SetGCPercent(100)
	defer debug.SetGCPercent(was)
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOGC" {
				return v
			}
			return ""
		}
	}
	if got := TuneGC(env("")); got != DefaultGOGC {
		t.Fatalf("TuneGC without GOGC = %d, want %d", got, DefaultGOGC)
	}
	if got := debug.SetGCPercent(100); got != DefaultGOGC {
		t.Fatalf("the runtime's target after TuneGC = %d, want %d", got, DefaultGOGC)
	}
	for v, want := range map[string]int{"50": 50, "off": -1, "junk": 100} {
		if got := TuneGC(env(v)); got != want {
			t.Fatalf("TuneGC with GOGC=%s = %d, want %d", v, got, want)
		}
		if got := debug.SetGCPercent(100); got != 100 {
			t.Fatalf("TuneGC with GOGC=%s changed the runtime's target to %d", v, got)
		}
	}
}
