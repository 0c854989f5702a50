package vodsim

import (
	"fmt"
	"testing"
)

// The event log holds at most maxEvents, the oldest finished ones going
// first, and an event not finished stays however many there are: in pull
// mode until confirmed, in callback mode until delivered.
func TestEventLogKeepsBoundedFinishedEvents(t *testing.T) {
	for _, callback := range []bool{false, true} {
		t.Run(fmt.Sprintf("callback=%v", callback), func(t *testing.T) {
			cfg := Config{Apps: Apps{"id": "key"}, Discard: true}
			if callback {
				cfg.CallbackURL = "http://127.0.0.1:1/never-called"
			}
			s, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			record := func(n int) []*EventRecord {
				var out []*EventRecord
				s.mu.Lock()
				defer s.mu.Unlock()
				for i := range n {
					out = append(out, s.recordEventLocked(&File{FileID: fmt.Sprint(len(s.events), "-", i)}))
				}
				return out
			}
			finish := func(recs []*EventRecord) {
				if callback {
					s.mu.Lock()
					for _, r := range recs {
						r.Delivered = true
					}
					s.mu.Unlock()
					return
				}
				var handles []string
				for _, r := range recs {
					handles = append(handles, r.Handle)
				}
				if unknown := s.ConfirmEvents(handles); len(unknown) > 0 {
					t.Fatalf("%d handles unknown", len(unknown))
				}
			}
			// Unfinished events stay, however many.
			pending := record(maxEvents + 500)
			record(1)
			if got := len(s.Events()); got != maxEvents+501 {
				t.Fatalf("%d events kept of %d not finished", got, maxEvents+501)
			}
			// Finished, they go, the oldest first, as the next events come:
			// the log holds maxEvents again.
			finish(pending)
			more := record(3000)
			events := s.Events()
			if len(events) != maxEvents {
				t.Fatalf("%d events kept, want %d", len(events), maxEvents)
			}
			dropped := maxEvents + 501 + 3000 - maxEvents
			if events[0].Handle != pending[dropped].Handle {
				t.Fatal("the log did not drop the oldest finished events first")
			}
			for _, r := range pending[:dropped] {
				if s.eventsByHandle[r.Handle] != nil {
					t.Fatal("a dropped event is still found by its handle")
				}
			}
			if !callback {
				// Pulled: only the unconfirmed, the oldest first.
				pulled := s.PullEvents(10)
				if len(pulled) != 10 || pulled[1].EventHandle != more[0].Handle {
					t.Fatalf("PullEvents after the trim gave %d events", len(pulled))
				}
			}
		})
	}
}
