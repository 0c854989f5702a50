package vodsim

import (
	"fmt"
	"testing"
	"time"
)

// TestSignatureRecordIsScannedOnlyWhenItDoubled: expired signatures are
// forgotten, but the record is scanned for them only once it has doubled
// since the last scan (10,000 at least), not on every call: with 10,000
// signatures still valid each call scanned them all.
func TestSignatureRecordIsScannedOnlyWhenItDoubled(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := &Server{cfg: Config{Clock: func() time.Time { return now }}, sigUses: map[string]*SignatureUse{}}
	for i, step := range []struct {
		valid, expired int // signatures added before the call
		want           int // kept after it
		why            string
	}{
		{6000, 4000, 6000, "10,000: a scan keeps the valid"},
		{0, 3999, 9999, "under 10,000 (and twice 6,000): no scan"},
		{14000, 0, 20000, "23,999: a scan"},
		{0, 19999, 39999, "under twice the 20,000 kept: no scan"},
		{0, 1, 20000, "twice the kept: a scan"},
	} {
		for k, n := range []int{step.valid, step.expired} {
			expire := []time.Time{now.Add(time.Hour), now.Add(-time.Second)}[k]
			for j := range n {
				h := fmt.Sprintf("%d-%d-%d", i, k, j)
				s.sigUses[h] = &SignatureUse{Hash: h, ExpireTime: expire}
			}
		}
		s.gcSignaturesLocked()
		if len(s.sigUses) != step.want {
			t.Fatalf("step %d (%s): %d signatures kept, want %d", i, step.why, len(s.sigUses), step.want)
		}
	}
}
