package vodsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/vodpipe/vodpipe/pkg/vod"
)

// EventRecord is one NewFileUpload event and what became of it.
type EventRecord struct {
	Handle     string     `json:"eventHandle"`
	FileID     string     `json:"fileId"`
	Created    time.Time  `json:"created"`
	Event      vod.Event  `json:"event"`
	Attempts   []Attempt  `json:"attempts,omitempty"`
	Delivered  bool       `json:"delivered"`
	Confirmed  bool       `json:"confirmed"`
	LastPulled *time.Time `json:"lastPulled,omitempty"`
}

// Attempt is one callback delivery attempt.
type Attempt struct {
	Time   time.Time `json:"time"`
	Status int       `json:"status,omitempty"`
	Error  string    `json:"error,omitempty"`
}

func (s *Server) recordEventLocked(f *File) *EventRecord {
	e := vod.NewFileUploadEvent(vod.FileUpload{
		FileID: f.FileID, MediaURL: f.MediaURL, CoverURL: f.CoverURL, Name: f.Name, Type: f.Type,
		StorageRegion: f.StorageRegion, ClassID: f.ClassID, SourceContext: f.SourceContext,
		ProcedureTaskID: f.ProcedureTaskID, CreateTime: f.Created,
	})
	rec := &EventRecord{Handle: randomHex(16), FileID: f.FileID, Created: s.now(), Event: *e}
	s.events = append(s.events, rec)
	s.eventsByHandle[rec.Handle] = rec
	s.trimEventsLocked()
	return rec
}

// maxEvents bounds the event log: past it, the oldest events are forgotten
// once finished (see finished). VOD keeps no event forever, and a million
// uploads would otherwise hold a million records.
const maxEvents = 10000

// finished reports whether an event is done with: confirmed, or in
// callback mode delivered or out of attempts.
func (s *Server) finished(r *EventRecord) bool {
	return r.Confirmed || (s.cfg.CallbackURL != "" && (r.Delivered || len(r.Attempts) >= s.cfg.CallbackAttempts))
}

// trimEventsLocked forgets the oldest events while the log holds more than
// maxEvents and the oldest is finished: an event not finished stays (and
// the ones after it), however many there are.
func (s *Server) trimEventsLocked() {
	for len(s.events)-s.eventsHead > maxEvents && s.finished(s.events[s.eventsHead]) {
		delete(s.eventsByHandle, s.events[s.eventsHead].Handle)
		s.events[s.eventsHead] = nil
		s.eventsHead++
	}
	s.events, s.eventsHead = compactFront(s.events, s.eventsHead)
}

// deliver posts the event to the callback URL in the background, retrying
// with exponential back-off, as VOD's normal callback mode does.
func (s *Server) deliver(rec *EventRecord) {
	if s.cfg.CallbackURL == "" {
		return
	}
	body, err := json.Marshal(rec.Event)
	if err != nil {
		s.log.Error("vodsim: marshal event", "err", err)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		delay := s.cfg.CallbackBackoff
		for attempt := 1; attempt <= s.cfg.CallbackAttempts; attempt++ {
			status, err := s.post(s.ctx, body)
			a := Attempt{Time: s.now(), Status: status}
			if err != nil {
				a.Error = err.Error()
			}
			ok := err == nil && status >= 200 && status < 300
			s.mu.Lock()
			rec.Attempts = append(rec.Attempts, a)
			rec.Delivered = ok
			s.mu.Unlock()
			if ok {
				return
			}
			s.log.Info("vodsim: callback failed", "fileId", rec.FileID, "attempt", attempt, "status", status, "err", err)
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return
			}
			delay *= 2
		}
	}()
}

func (s *Server) post(ctx context.Context, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.CallbackURL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		// Not the *url.Error itself: its text holds the callback URL, whose
		// query may carry notify's callback token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("callback: %w", err)
	}
	// Read to the end so the connection is kept for the next callback.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// PullEvents returns up to max unconfirmed events, as the reliable-callback
// API does: an event comes back on every pull until it is confirmed.
func (s *Server) PullEvents(max int) []vod.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []vod.Event
	for _, r := range s.events[s.eventsHead:] {
		if len(out) >= max {
			break
		}
		if r.Confirmed {
			continue
		}
		e := r.Event
		e.EventHandle = r.Handle
		t := now
		r.LastPulled = &t
		out = append(out, e)
	}
	return out
}

// ConfirmEvents marks events confirmed by handle; unknown handles are reported.
func (s *Server) ConfirmEvents(handles []string) (unknown []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range handles {
		if r := s.eventsByHandle[h]; r != nil {
			r.Confirmed = true
		} else {
			unknown = append(unknown, h)
		}
	}
	return unknown
}
