package queue

import "time"

// SetEntryTTLMargin sets how long q's finished state entries outlive their
// statuses (entryTTLMargin, a minute): a test that waits for an entry to
// expire waits seconds, not a minute.
func SetEntryTTLMargin(q *Queue, d time.Duration) { q.Statuses.entryMargin = d }
