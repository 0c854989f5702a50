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
	"sync/atomic"
	"time"

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

// DefaultEventStreamIdle is how long an event stream may send nothing, not
// even a heartbeat, before it is taken for broken: three of the heartbeats
// notify sends on an idle stream every VODPIPE_SSE_HEARTBEAT (15 s by
// default).
const DefaultEventStreamIdle = 45 * time.Second

// ErrEventStreamIdle is the error of Events and Next when the stream sent
// nothing for its idle bound (WithEventStreamIdle): a connection that a NAT
// or a load balancer forgot, or a frozen peer, stays open and silent, and
// only a missing heartbeat tells it from a quiet stream. Open the stream
// again after its LastID.
var ErrEventStreamIdle = errors.New("event stream went silent")

// WithEventStreamIdle returns a copy of c whose event streams are broken
// (ErrEventStreamIdle) when no byte comes for d: the response's headers
// when it opens, then an event or a heartbeat. Keep d a few of notify's
// heartbeats (VODPIPE_SSE_HEARTBEAT); 0 or less: DefaultEventStreamIdle.
func (c *Client) WithEventStreamIdle(d time.Duration) *Client {
	cp := *c
	cp.eventIdle = d
	return &cp
}

// Events opens the event stream of the given type filters (e.g. "job.*";
// none: every event) after the event lastID ("": from now on). It lasts
// until ctx ends or it is closed, unless nothing comes for its idle bound
// (WithEventStreamIdle; the response's headers included): then Events or
// Next returns ErrEventStreamIdle.
func (c *Client) Events(ctx context.Context, types []string, lastID string) (*EventStream, error) {
	q := url.Values{}
	if len(types) > 0 {
		q.Set("type", strings.Join(types, ","))
	}
	idle := c.eventIdle
	if idle <= 0 {
		idle = DefaultEventStreamIdle
	}
	ctx, cancel := context.WithCancel(ctx)
	body := &idleBody{idle: idle, cancel: cancel}
	body.timer = time.AfterFunc(idle, func() {
		body.fired.Store(true)
		cancel()
	})
	// failed ends the request: its error, or the idle bound's when the
	// watchdog fired.
	failed := func(err error) error {
		body.timer.Stop()
		cancel()
		if body.fired.Load() {
			return body.idleErr()
		}
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/events?"+q.Encode(), nil)
	if err != nil {
		return nil, failed(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	// No timeout: a stream lasts; the idle bound's watchdog ends a silent one.
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req)
	if err != nil {
		return nil, failed(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e ErrorBody
		_ = json.Unmarshal(raw, &e)
		return nil, failed(&APIError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, Fields: e.Error.Fields})
	}
	body.rc = resp.Body
	body.timer.Reset(idle) // from the headers on
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), maxEventLine)
	return &EventStream{body: body, sc: sc, LastID: lastID}, nil
}

// idleBody is an event stream's body under a watchdog: each read that
// brings bytes sets it again for idle; when it fires, it cancels the
// request (which ends a read blocked on a silent connection) and reads
// return ErrEventStreamIdle.
type idleBody struct {
	rc     io.ReadCloser
	idle   time.Duration
	timer  *time.Timer
	fired  atomic.Bool
	cancel context.CancelFunc
}

func (b *idleBody) idleErr() error {
	return fmt.Errorf("%w: no byte for %s, not even a heartbeat", ErrEventStreamIdle, b.idle)
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if b.fired.Load() {
		return n, b.idleErr()
	}
	if n > 0 {
		b.timer.Reset(b.idle)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
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
