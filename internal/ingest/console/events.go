package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/vodpipe/vodpipe/internal/apikey"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// flushEvery is how often the live stream sends the progress it folded.
const flushEvery = 500 * time.Millisecond

// writeTimeout bounds one write to a page's live stream.
const writeTimeout = 30 * time.Second

// events streams the pipeline's events to an open console page as
// server-sent events, read from the same events that webhooks and
// GET /v1/events carry. Progress is folded per job and sent at most every
// flushEvery; every other event goes at once. The stream ends with the
// session.
func (c *Console) events(w http.ResponseWriter, r *http.Request) {
	o := operatorFrom(r.Context())
	if !o.can(apikey.ScopeRead) {
		c.fail(w, r, http.StatusForbidden, "This key may not read the pipeline's events (read scope).")
		return
	}
	ch, stop, err := c.live.Subscribe()
	if err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, "The event stream is unavailable.")
		return
	}
	defer stop()
	// A stream outlives the server's read and write timeouts (a read
	// deadline passing would cancel the request, ending it); each write is
	// bounded instead, so a page that stops reading loses its stream.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, "retry: 2000\n\n")
	_ = rc.Flush()
	ends := time.NewTimer(time.Until(time.Unix(o.sess.Expires, 0)))
	defer ends.Stop()
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	heartbeat := time.NewTicker(15 * time.Second)
	defer heartbeat.Stop()
	progress := map[string][]byte{}
	for {
		var err error
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		select {
		case <-r.Context().Done():
			return
		case <-ends.C:
			return
		case <-heartbeat.C:
			_, err = fmt.Fprint(w, ": heartbeat\n\n")
		case <-tick.C:
			for id, data := range progress {
				if _, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", job.EventProgress, data); err != nil {
					break
				}
				delete(progress, id)
			}
		case data := <-ch:
			ev, ok := liveView(data)
			if !ok {
				continue
			}
			if ev.Type == job.EventProgress {
				progress[ev.JobID] = ev.encoded
				continue
			}
			delete(progress, ev.JobID) // the state event is newer
			_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, ev.encoded)
		}
		if err != nil || rc.Flush() != nil {
			return
		}
	}
}

// liveEvent is what the console's stream tells of an event: its type,
// job and time, and a progress's bytes. Not its data: a job.queued event
// holds the job's source URL whole, which a read-only key does not see.
type liveEvent struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Time       time.Time `json:"time"`
	JobID      string    `json:"jobId,omitempty"`
	BytesDone  int64     `json:"bytesDone,omitempty"`
	BytesTotal int64     `json:"bytesTotal,omitempty"`
	encoded    []byte
}

func liveView(data []byte) (liveEvent, bool) {
	var e job.Event
	if json.Unmarshal(data, &e) != nil || !knownType(e.Type) {
		return liveEvent{}, false
	}
	v := liveEvent{ID: e.ID, Type: e.Type, Time: e.Time, JobID: e.JobID}
	if e.Type == job.EventProgress {
		var p job.ProgressData
		_ = json.Unmarshal(e.Data, &p)
		v.BytesDone, v.BytesTotal = p.BytesDone, p.BytesTotal
	}
	v.encoded, _ = json.Marshal(v)
	return v, true
}

// knownType tells the job and VOD event types the console follows (the
// SSE event name is the type: only known ones are written there).
func knownType(t string) bool {
	switch t {
	case job.EventQueued, job.EventStarted, job.EventProgress, job.EventPaused, job.EventResumed, job.EventCanceled,
		job.EventFailed, job.EventCompleted, job.EventVODFileUpload, job.EventVODProcedure:
		return true
	}
	return false
}
