package upload

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/tencentyun/cos-go-sdk-v5"

	"github.com/vodpipe/vodpipe/pkg/vod"
)

// serverClock is Tencent's clock as this worker sees it: how far VOD's
// time (ApplyUploadUGC's timestamp) is from the local clock. COS requests
// are signed in that time, so a worker whose clock is off by minutes still
// signs requests COS takes, and its credentials are renewed on VOD's
// schedule, not its own.
type serverClock struct {
	mu     sync.Mutex
	offset time.Duration // server − local
	known  bool
}

// learn records the server's time at the moment of an answer.
func (c *serverClock) learn(server time.Time) {
	if server.IsZero() {
		return
	}
	// Whole seconds: the middle of the second is the best guess.
	off := time.Until(server.Add(500 * time.Millisecond))
	c.mu.Lock()
	c.offset, c.known = off, true
	c.mu.Unlock()
}

// now is the server's time by the last offset learned (the local time
// until one is).
func (c *serverClock) now() time.Time {
	c.mu.Lock()
	off := c.offset
	c.mu.Unlock()
	return time.Now().Add(off)
}

// skew is the last offset learned: how far the server's clock is ahead of
// this machine's (negative: behind).
func (c *serverClock) skew() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset, c.known
}

// cosSignBackdate is how far before the server's "now" a COS signature's
// window opens: the offset is known to a second or so, and a window that
// opened a moment in the future would be refused.
const cosSignBackdate = time.Minute

// cosSignLife is how long a COS signature's window stays open (the SDK's own).
const cosSignLife = time.Hour

// cosSigner signs COS requests as the SDK's AuthorizationTransport does
// (cos.AddAuthorizationHeader, the SDK's own signing) but in the server's
// time, with the temporary credentials of the moment.
type cosSigner struct {
	clock *serverClock
	next  http.RoundTripper

	mu             sync.RWMutex
	id, key, token string
}

// SetCredential installs new temporary credentials.
func (t *cosSigner) SetCredential(id, key, token string) {
	t.mu.Lock()
	t.id, t.key, t.token = id, key, token
	t.mu.Unlock()
}

// RoundTrip implements http.RoundTripper.
func (t *cosSigner) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context()) // the RoundTripper contract: leave the caller's request alone
	t.mu.RLock()
	id, key, token := t.id, t.key, t.token
	t.mu.RUnlock()
	start := t.clock.now().Add(-cosSignBackdate)
	cos.AddAuthorizationHeader(id, key, token, req, &cos.AuthTime{
		SignStartTime: start, SignEndTime: start.Add(cosSignLife),
		KeyStartTime: start, KeyEndTime: start.Add(cosSignLife),
	})
	return t.next.RoundTrip(req)
}

// clockSkewCode is the permanent error code of a job refused because two
// clocks are too far apart: retrying cannot help until the clock is set
// right; then the dead letter can be requeued.
const clockSkewCode = "clock_skew"

// clockErr tells a refusal of a signature's times (err, after its renewal)
// against VOD's clock: which clock is off, by about how much, and that it
// is the clock to fix. sigAt is the signature's currentTimeStamp. Other
// errors pass unchanged.
func clockErr(err error, sigAt time.Time) error {
	var api *vod.APIError
	if !errors.As(err, &api) {
		return err
	}
	var d time.Duration
	if !api.ServerTime.IsZero() && !sigAt.IsZero() {
		d = sigAt.Sub(api.ServerTime).Round(time.Second)
	}
	switch {
	case errors.Is(err, vod.ErrSignatureNotYetValid):
		return permanent(clockSkewCode, fmt.Errorf("upload: VOD refused the signature as issued in the future: the signature service's clock (ingest) "+
			"is %s ahead of VOD's, more than the %s VOD tolerates; set that clock right (NTP), then requeue the job: %w", d, vod.DefaultClockSkew, err))
	case errors.Is(err, vod.ErrSignatureExpired):
		return permanent(clockSkewCode, fmt.Errorf("upload: VOD found a fresh signature expired: the signature service's clock (ingest) "+
			"is %s behind VOD's, more than the signature's validity; set that clock right (NTP), then requeue the job: %w", -d, err))
	}
	return err
}

// cosClockErr tells COS's refusal of a request's time against the worker's
// clock. Other errors pass unchanged.
func (c *serverClock) cosClockErr(err error) error {
	var e *cos.ErrorResponse
	if !errors.As(err, &e) {
		return err
	}
	if e.Code != "RequestTimeTooSkewed" && !(e.Code == "AccessDenied" && e.Message == "Request has expired") {
		return err
	}
	skew, known := c.skew()
	what := "this worker's clock and COS's disagree"
	if known {
		what = fmt.Sprintf("this worker's clock is %s off VOD's (%s ahead of it)", skew.Abs().Round(time.Second), (-skew).Round(time.Second))
	}
	return permanent(clockSkewCode, fmt.Errorf("upload: COS refused the request's time (%s): %s; set the clock right (NTP), then requeue the job: %w", e.Code, what, err))
}
