package testharness_test

import (
	"fmt"
	"testing"

	"github.com/vodpipe/vodpipe/internal/testharness"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Helper() {}

// The checker finds the route of a path, and refuses a body its schema
// refuses and a status the document does not list; it passes a body that
// matches, and leaves undocumented routes alone.
func TestOpenAPICheckerRefusesWhatTheDocumentDoesNot(t *testing.T) {
	o := testharness.LoadOpenAPI(t, "openapi.json")
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
		fails        bool
	}{
		{"GET", "/v1/jobs/abc", 200, `{"id":"abc","state":"queued","job":{"v":1,"id":"abc","source":"file:///a.mp4"}}`, false},
		{"GET", "/v1/jobs/abc", 200, `{"id":42}`, true},
		{"GET", "/v1/jobs/abc", 418, `{}`, true},
		{"GET", "/v1/jobs/abc", 404, `{"error":{"code":"not_found","message":"no job abc"}}`, false},
		{"GET", "/v1/jobs/abc", 404, `{"error":{"code":"no_such_code","message":"x"}}`, true},
		{"GET", "/healthz", 200, `ok`, false},
	} {
		r := &recorder{TB: t}
		o.CheckResponse(r, tc.method, tc.path, tc.status, "application/json", []byte(tc.body))
		if (len(r.errs) > 0) != tc.fails {
			t.Errorf("%s %s %d %s: errors %v, want failure %v", tc.method, tc.path, tc.status, tc.body, r.errs, tc.fails)
		}
	}
}
