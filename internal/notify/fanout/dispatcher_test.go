package fanout

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// TestDispatcherForgetsDeletionsAfterAWhile: the dispatcher refuses a record
// of a deleted subscription handed in late, and forgets the deletion after
// deletionMemory, so that what it keeps does not grow with every
// subscription ever deleted.
func TestDispatcherForgetsDeletionsAfterAWhile(t *testing.T) {
	d := newDispatcher(&Fanout{})
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	d.now = func() time.Time { return now }
	late := &record{Subscription: Subscription{ID: "sub_a", Status: StatusDisabled}, Version: 3}
	d.set("sub_a", nil, math.MaxUint64)
	d.set("sub_a", late, late.order()) // written before the deletion, handed in after it
	if d.record("sub_a") != nil {
		t.Fatal("a record written before the deletion brought the subscription back")
	}
	for i := range 1000 {
		now = now.Add(time.Second)
		d.set(fmt.Sprintf("sub_%d", i), nil, math.MaxUint64)
	}
	now = now.Add(deletionMemory + time.Second)
	d.set("sub_last", nil, math.MaxUint64)
	if len(d.orders) != 1 || d.orders["sub_last"] != math.MaxUint64 {
		t.Fatalf("%d subscriptions remembered, want only the last deletion", len(d.orders))
	}
}
