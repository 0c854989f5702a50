package retry_test

import (
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/retry"
)

// Delays grow twofold from Initial to Max, each within ±50 % of its
// nominal value, and are spread: many clients that failed together do not
// all wait the same time.
func TestDelaysGrowWithJitter(t *testing.T) {
	p := retry.Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second}
	for n, nominal := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		5: 1600 * time.Millisecond, 6: 2 * time.Second, 30: 2 * time.Second, 1000: 2 * time.Second} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(n)
			if d < nominal/2 || d > nominal*3/2+time.Nanosecond {
				t.Fatalf("Delay(%d) = %s, want %s ± 50 %%", n, d, nominal)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Errorf("Delay(%d) took %d distinct values in 200 draws: not spread", n, len(seen))
		}
	}
	b := p.New()
	for i, nominal := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		if d := b.NextBackOff(); d < nominal/2 || d > nominal*3/2+time.Nanosecond {
			t.Fatalf("back-off %d = %s, want %s ± 50 %%", i, d, nominal)
		}
	}
}

// Around spreads a scheduled delay within its fraction.
func TestAroundSpreadsWithinItsFraction(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 200 {
		d := retry.Around(5*time.Minute, 0.1)
		if d < 270*time.Second || d > 330*time.Second+time.Nanosecond {
			t.Fatalf("Around(5m, 10%%) = %s", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Fatalf("%d distinct values in 200 draws", len(seen))
	}
}
