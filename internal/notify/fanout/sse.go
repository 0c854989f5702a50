package fanout

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/httpserve"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/redact"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// sseWriteTimeout bounds one write to an event-stream client; a client that
// stops reading is dropped instead of holding a consumer forever.
const sseWriteTimeout = 30 * time.Second

// handleEvents serves GET /v1/events as server-sent events:
//
//	?type=job.*,vod.file_uploaded   event-type filters (default *)
//	?jobId=…                        one job's events
//	Last-Event-ID: <seq>            resume after that event (or ?lastEventId=)
//
// Each event's SSE id is its EVENTS stream sequence, so a client that
// reconnects with Last-Event-ID gets every matching event after the last one
// it saw, none twice, as long as the stream still holds them
// (EVENTS_MAX_AGE). Without Last-Event-ID the stream starts with the next
// event; its opening block carries the id to resume from all the same.
// Idle streams get a comment line every SSEHeartbeat.
func (s *Fanout) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	types := []string{"*"}
	if v := q.Get("type"); v != "" {
		types = strings.Split(v, ",")
		if len(types) > maxEventTypes {
			httpapi.Write(w, httpapi.Field(httpapi.CodeInvalidParameter, "type", fmt.Sprintf("has %d entries, at most %d", len(types), maxEventTypes)))
			return
		}
		for _, t := range types {
			if msg := checkTypePattern(strings.TrimSpace(t)); msg != "" {
				httpapi.Write(w, httpapi.Field(httpapi.CodeInvalidParameter, "type", msg))
				return
			}
		}
		for i := range types {
			types[i] = strings.TrimSpace(types[i])
		}
	}
	// A job.queued event's data is the job message, whose source and cover
	// may be signed URLs: whole only to the control scope, as ingest shows
	// them.
	key := httpapi.KeyFrom(r.Context())
	control := key != nil && key.Allows(ScopeControl)
	jobID := q.Get("jobId")
	if msg := checkJobID(jobID); msg != "" {
		httpapi.Write(w, httpapi.Field(httpapi.CodeInvalidParameter, "jobId", msg))
		return
	}
	// A pull consumer of this stream's own, made by ingest's layout broker
	// (notify's user may create none), removed when the stream ends or,
	// should this process die, a minute after its last pull.
	cfg := jetstream.ConsumerConfig{Name: "sse_" + randomID(), Description: "vodpipe notify: an event stream client",
		DeliverPolicy: jetstream.DeliverNewPolicy, AckPolicy: jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute, MemoryStorage: true, Replicas: 1}
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = q.Get("lastEventId")
	}
	if last != "" {
		seq, err := strconv.ParseUint(last, 10, 64)
		if err != nil || seq == math.MaxUint64 { // no event follows it
			httpapi.Write(w, &httpapi.Error{Status: http.StatusBadRequest, Code: httpapi.CodeInvalidParameter, Message: "Last-Event-ID must be the id of an event of this stream (a sequence number)",
				Fields: []job.FieldError{{Field: "Last-Event-ID", Reason: "Last-Event-ID must be the id of an event of this stream (a sequence number)"}}})
			return
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	}
	filter := &record{Subscription: Subscription{EventTypes: types, JobID: jobID}}
	if subj := filter.filterSubjects(); len(subj) == 1 {
		cfg.FilterSubject = subj[0]
	} else {
		cfg.FilterSubjects = subj
	}

	cons, err := s.layout.Consumer(r.Context(), cfg)
	if err != nil {
		s.writeInternal(w, r, err)
		return
	}
	defer func() { _ = s.js.DeleteConsumer(context.WithoutCancel(r.Context()), queue.EventsStream, cfg.Name) }()
	it, err := cons.Messages(jetstream.PullExpiry(pullExpiry))
	if err != nil {
		s.writeInternal(w, r, err)
		return
	}
	defer it.Stop()
	msgs := make(chan jetstream.Msg)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(msgs)
		for {
			m, err := it.Next()
			if err != nil {
				return
			}
			select {
			case msgs <- m:
			case <-done:
				return
			}
		}
	}()

	s.metrics.sseClients.Inc()
	defer s.metrics.sseClients.Dec()
	rc := http.NewResponseController(w)
	httpserve.StartStream(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The opening block names where the stream starts (the events stream's
	// last sequence when it opened, or the Last-Event-ID it resumed after):
	// a client whose stream breaks before its first event reconnects with
	// it and misses nothing published in between, where without it the
	// stream would start again at the next event.
	opening := []byte("retry: 2000\n")
	if info := cons.CachedInfo(); info != nil {
		opening = fmt.Appendf(opening, "id: %d\n", info.Delivered.Stream)
	}
	if !write(append(opening, ": vodpipe events\n\n"...)) {
		return
	}
	beat := time.NewTicker(s.cfg.SSEHeartbeat)
	defer beat.Stop()
	var buf bytes.Buffer
	for {
		select {
		case <-r.Context().Done():
			return
		case <-beat.C:
			if !write([]byte(": heartbeat\n\n")) {
				return
			}
		case m, ok := <-msgs:
			if !ok {
				return
			}
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			hd, err := decodeHead(m.Data())
			if err != nil || !filter.matches(hd) || strings.ContainsAny(hd.Type, "\r\n") {
				continue
			}
			data := m.Data()
			if hd.Type == job.EventQueued && !control {
				if data, err = redactQueued(data); err != nil {
					continue
				}
			}
			buf.Reset()
			fmt.Fprintf(&buf, "id: %d\nevent: %s\ndata: ", meta.Sequence.Stream, hd.Type)
			if bytes.ContainsAny(data, "\r\n") {
				if json.Compact(&buf, data) != nil {
					continue
				}
			} else {
				buf.Write(data)
			}
			buf.WriteString("\n\n")
			if !write(buf.Bytes()) {
				return
			}
			beat.Reset(s.cfg.SSEHeartbeat)
		}
	}
}

// redactQueued returns a job.queued event with its job's source and cover
// redacted (redact.QueuedJob).
func redactQueued(data []byte) ([]byte, error) {
	var e job.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, err
	}
	e.Data = redact.QueuedJob(e.Data)
	return json.Marshal(&e)
}
