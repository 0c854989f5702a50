package notify_test

import (
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/notify"
)

// TestSecurityCallbackBadFileIdIsABadRequest: a NewFileUpload whose FileId is
// no valid key of the files bucket (a space, '*', '>', kilobytes) is
// answered 400 bad_event naming the field. Until 0.10 it reached the bucket
// lookup unchecked: JetStream refused the key and notify answered 503,
// which VOD's retries cannot fix.
// (Reachable with the callback token, or by anyone with
// VODPIPE_CALLBACK_AUTH=none.)
func TestSecurityCallbackBadFileIdIsABadRequest(t *testing.T) {
	e := newEnv(t, func(c *notify.Config) { c.CallbackToken = "tok-abc"; c.CorrelationWait = 200 * time.Millisecond })
	in := e.start()
	// The last one, valid characters but past NATS's 4 KiB control line,
	// has the server close notify's own connection (the KV lookup's subject
	// holds the key).
	for _, id := range []string{"a b", "x*", "x>", strings.Repeat("1", 5000)} {
		code, _, ea := postCallback(t, in, "?token=tok-abc", fileUploadBody(id))
		if code != 400 {
			t.Errorf("FileId %.20q (%d bytes): %d %+v, want 400 bad_event", id, len(id), code, ea)
		}
	}
}
