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
	TuneGC(env(""))
	if got := debug.SetGCPercent(100); got != DefaultGOGC {
		t.Fatalf("the runtime's target after TuneGC without GOGC = %d, want %d", got, DefaultGOGC)
	}
	for _, v := range []string{"50", "off", "junk"} {
		TuneGC(env(v))
		if got := debug.SetGCPercent(100); got != 100 {
			t.Fatalf("TuneGC with GOGC=%s changed the runtime's target to %d", v, got)
		}
	}
}
