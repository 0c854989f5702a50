package notify_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// sseFrame is one server-sent event, or a comment line.
type sseFrame struct {
	id, event, data, comment string
}

type sseClient struct {
	frames  chan sseFrame
	cancel  context.CancelFunc
	opening sseFrame // the stream's first block
}

// openSSE connects to /v1/events and returns once the stream is open.
func openSSE(t *testing.T, in *instance, query, lastEventID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/v1/events"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{frames: make(chan sseFrame, 100), cancel: func() { cancel(); resp.Body.Close() }}
	t.Cleanup(c.cancel)
	go func() {
		defer close(c.frames)
		sc := bufio.NewScanner(resp.Body)
		var f sseFrame
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if f != (sseFrame{}) {
					c.frames <- f
				}
				f = sseFrame{}
			case strings.HasPrefix(line, ":"):
				f.comment = strings.TrimSpace(line[1:])
			default:
				k, v, _ := strings.Cut(line, ": ")
				switch k {
				case "id":
					f.id = v
				case "event":
					f.event = v
				case "data":
					f.data = v
				}
			}
		}
	}()
	if c.opening = c.next(t, true); c.opening.comment != "vodpipe events" {
		t.Fatalf("first frame = %+v", c.opening)
	}
	return c
}

// next returns the next frame; comments only when wantComment.
func (c *sseClient) next(t *testing.T, wantComment bool) sseFrame {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatal("event stream ended")
			}
			if f.comment != "" && f.data == "" && !wantComment {
				continue
			}
			return f
		case <-timeout:
			t.Fatal("no event within 10s")
		}
	}
}

func TestSSEResumesWithLastEventIDWithoutGaps(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) { c.SSEHeartbeat = 100 * time.Millisecond })
	in := e.start()
	c := openSSE(t, in, "?type=job.*&jobId=j1", "")

	var want []string
	publish := func(n int) {
		for i := range n {
			if ev := e.publish(job.EventProgress, "j1", job.ProgressData{BytesDone: int64(i)}); ev != nil {
				want = append(want, ev.ID)
			}
			e.publish(job.EventProgress, "j2", job.ProgressData{})                     // other job
			e.publish(job.EventVODFileUpload, "j1", job.FileUploadedData{FileID: "f"}) // other type
		}
	}
	publish(6)
	var got []string
	var lastID string
	for range 4 {
		f := c.next(t, false)
		var ev job.Event
		if err := json.Unmarshal([]byte(f.data), &ev); err != nil || f.event != ev.Type || ev.JobID != "j1" {
			t.Fatalf("frame %+v: %v", f, err)
		}
		if _, err := strconv.ParseUint(f.id, 10, 64); err != nil {
			t.Fatalf("id %q is not a stream sequence", f.id)
		}
		got, lastID = append(got, ev.ID), f.id
	}
	c.cancel() // the client goes away with 2 events unread

	publish(4)
	c2 := openSSE(t, in, "?type=job.*&jobId=j1", lastID)
	for len(got) < len(want) {
		var ev job.Event
		if err := json.Unmarshal([]byte(c2.next(t, false).data), &ev); err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.ID)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events\n got %v\nwant %v", got, want)
	}
	// Idle: heartbeats keep the connection alive, and nothing else arrives.
	if f := c2.next(t, true); f.comment != "heartbeat" {
		t.Fatalf("idle stream sent %+v", f)
	}
}

// A stream opened from now on names where it started in its opening block:
// a client whose connection breaks before its first event reconnects from
// there and gets what was published in between, which a stream opened
// afresh would not.
func TestSSEOpeningBlockNamesWhereTheStreamStarts(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	e.publish(job.EventQueued, "before", nil)
	c := openSSE(t, in, "?type=job.*", "")
	if c.opening.id != "1" {
		t.Fatalf("opening block %+v, want id 1 (the stream's last sequence)", c.opening)
	}
	c.cancel() // broken before any event
	ev := e.publish(job.EventCompleted, "j1", nil)
	fresh := openSSE(t, in, "?type=job.*", "")
	resumed := openSSE(t, in, "?type=job.*", c.opening.id)
	if resumed.opening.id != c.opening.id {
		t.Errorf("a stream resumed after %s opens with id %q", c.opening.id, resumed.opening.id)
	}
	var got job.Event
	if err := json.Unmarshal([]byte(resumed.next(t, false).data), &got); err != nil || got.ID != ev.ID {
		t.Fatalf("resumed from the opening id: got event %+v (%v), want %s", got, err, ev.ID)
	}
	// The fresh stream starts after it: its next event is a later one.
	later := e.publish(job.EventQueued, "j2", nil)
	if err := json.Unmarshal([]byte(fresh.next(t, false).data), &got); err != nil || got.ID != later.ID {
		t.Fatalf("a fresh stream got %+v (%v), want only the later %s", got, err, later.ID)
	}
}

func TestSSEStreamsEndWhenNotifyStops(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	c := openSSE(t, in, "", "")
	e.publish(job.EventQueued, "x", nil)
	if f := c.next(t, false); f.event != job.EventQueued {
		t.Fatalf("frame %+v", f)
	}
	done := make(chan struct{})
	go func() { in.stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("notify did not stop with an event stream open")
	}
}
