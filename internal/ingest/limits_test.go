package ingest

import (
	"fmt"
	"testing"
	"time"
)

// TestLimitersStayBounded: callers rotating names (new upload tokens, say)
// cannot grow the limiter map past its bound; idle callers are forgotten
// once their bucket is full again, and until one is, new callers are refused.
func TestLimitersStayBounded(t *testing.T) {
	ls := newLimiters(1, 2, 3) // 1/s, burst 2: a bucket is full again after 2 s idle
	now := time.Unix(1_700_000_000, 0)
	for i := range 3 {
		if !ls.allow(fmt.Sprint("caller-", i), now) {
			t.Fatalf("caller %d refused", i)
		}
	}
	for i := range 1000 {
		if ls.allow(fmt.Sprint("rotating-", i), now.Add(time.Second)) {
			t.Fatalf("a 4th caller was tracked while 3 are active (rotation %d)", i)
		}
	}
	if n := ls.tracked(); n != 3 {
		t.Fatalf("%d callers tracked, want 3", n)
	}
	// Two seconds idle: the first callers' buckets are full, so they are forgotten.
	if !ls.allow("newcomer", now.Add(2*time.Second)) {
		t.Fatal("a new caller refused after the others went idle")
	}
	if n := ls.tracked(); n != 1 {
		t.Fatalf("%d callers tracked after the sweep, want 1", n)
	}
	// A tracked caller's own limit still holds.
	later := now.Add(2 * time.Second)
	if !ls.allow("newcomer", later) || ls.allow("newcomer", later) {
		t.Fatal("the burst of 2 did not hold")
	}
}
