package ingest_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestBatchRefusesAnOversizedLineAlone: one NDJSON line longer than a job
// may be (job.MaxMessageSize, 64 KiB) is that item's refusal, as in a JSON
// array: the big one invalid, the others queued. Until 0.10 it made POST
// /v1/jobs:batch refuse the whole batch (400 invalid_batch, "NDJSON:
// bufio.Scanner: token too long"), naming neither the line nor the field.
func TestBatchRefusesAnOversizedLineAlone(t *testing.T) {
	a := startIngest(t)
	big := fmt.Sprintf(`{"id":"big-%%s","source":"file:///in/big.mp4","metadata":{"x":"%s"}}`, strings.Repeat("a", 70<<10))
	for _, c := range []struct{ ctype, sep, open, close string }{
		{"application/json", ",", "[", "]"},
		{"application/x-ndjson", "\n", "", "\n"},
	} {
		tag := strings.ReplaceAll(c.ctype, "/", "-")
		body := c.open + fmt.Sprintf(`{"id":"first-%s","source":"file:///in/1.mp4"}`, tag) + c.sep +
			fmt.Sprintf(big, tag) + c.sep + fmt.Sprintf(`{"id":"last-%s","source":"file:///in/3.mp4"}`, tag) + c.close
		r := a.do("POST", "/v1/jobs:batch", adminKey, c.ctype, body)
		if r.status != 207 || r.body["queued"] != 2.0 || r.body["invalid"] != 1.0 {
			t.Errorf("%s: a batch of two good jobs and one too big: %d %s", c.ctype, r.status, r.raw)
			continue
		}
		items := r.body["items"].([]any)
		if m := items[1].(map[string]any); m["result"] != "invalid" || m["index"] != 1.0 {
			t.Errorf("%s: the big job's item: %v", c.ctype, m)
		}
	}
}
