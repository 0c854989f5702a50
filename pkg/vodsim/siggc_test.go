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
	add := func(prefix string, n int, expire time.Time) {
		for i := range n {
			h := fmt.Sprintf("%s-%d", prefix, i)
			s.sigUses[h] = &SignatureUse{Hash: h, ExpireTime: expire}
		}
	}
	add("valid", 6000, now.Add(time.Hour))
	add("expired", 4000, now.Add(-time.Second))
	s.gcSignaturesLocked()
	if len(s.sigUses) != 6000 {
		t.Fatalf("%d signatures kept, want the 6,000 valid", len(s.sigUses))
	}
	// Under 10,000: no scan, expired or not.
	add("late", 3999, now.Add(-time.Second))
	s.gcSignaturesLocked()
	if len(s.sigUses) != 9999 {
		t.Fatalf("%d signatures after a call under 10,000, want 9,999 (no scan)", len(s.sigUses))
	}
	add("valid2", 14000, now.Add(time.Hour)) // 23,999: 20,000 valid, 3,999 expired
	s.gcSignaturesLocked()
	if len(s.sigUses) != 20000 {
		t.Fatalf("%d kept, want 20,000", len(s.sigUses))
	}
	// The next scan waits for 40,000.
	add("expired2", 19999, now.Add(-time.Second))
	s.gcSignaturesLocked()
	if len(s.sigUses) != 39999 {
		t.Fatalf("%d after a call under twice the kept, want 39,999 (no scan)", len(s.sigUses))
	}
	add("expired3", 1, now.Add(-time.Second))
	s.gcSignaturesLocked()
	if len(s.sigUses) != 20000 {
		t.Fatalf("%d at twice the kept, want the 20,000 valid", len(s.sigUses))
	}
}
