package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// EventStream reads notify's server-sent event stream (GET /v1/events): a
// Client made for notify's URL opens it with Events.
type EventStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
	// LastID is the id of the last event read, or before the first the id
	// the stream opened with: open the stream again with it to go on after
	// a broken connection, missing nothing.
	LastID string
}

// maxEventLine bounds one line of the stream (an event's JSON).
const maxEventLine = 4 << 20

// Events opens the event stream of the given type filters (e.g. "job.*";
// none: every event) after the event lastID ("": from now on). It does not
// time out: cancel ctx or Close it.
func (c *Client) Events(ctx context.Context, types []string, lastID string) (*EventStream, error) {
	q := url.Values{}
	if len(types) > 0 {
		q.Set("type", strings.Join(types, ","))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/events?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req) // no timeout: a stream lasts
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e ErrorBody
		_ = json.Unmarshal(raw, &e)
		return nil, &APIError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, Fields: e.Error.Fields}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxEventLine)
	return &EventStream{body: resp.Body, sc: sc, LastID: lastID}, nil
}

// Next returns the next event, skipping comments and heartbeats; io.EOF
// when the server ended the stream.
func (s *EventStream) Next() (*job.Event, error) {
	var id, data string
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case line == "":
			if data == "" {
				// A comment block, a heartbeat, or the opening block, whose
				// id is where the stream started: a reconnect before any
				// event resumes from it.
				if id != "" {
					s.LastID = id
				}
				id = ""
				continue
			}
			var e job.Event
			if err := json.Unmarshal([]byte(data), &e); err != nil {
				return nil, fmt.Errorf("event stream: event %s: %w", id, err)
			}
			if id != "" {
				s.LastID = id
			}
			return &e, nil
		case strings.HasPrefix(line, "id:"):
			id = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
		case strings.HasPrefix(line, "data:"):
			data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
		}
	}
	if err := s.sc.Err(); err != nil {
		return nil, err
	}
	return nil, io.EOF
}

// Close ends the stream.
func (s *EventStream) Close() error {
	err := s.body.Close()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
