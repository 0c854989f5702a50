package vod

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// The answer is decoded in one pass into the caller's value: a refusal whose
// data has another shape is still the refusal, and a retried call starts
// from a clean value, so an earlier answer leaves nothing behind.
func TestClientDecodesAnswersInOnePass(t *testing.T) {
	answers := []string{
		// A refusal with data of another shape (fileId a number).
		`{"code":500,"message":"busy","requestId":"r1","data":{"fileId":7,"video":{"url":"stale"}}}`,
		// A refusal carrying a session key in its data: must not survive into the next attempt.
		`{"code":500,"message":"busy","requestId":"r2","data":{"fileId":"stale","video":{"url":"stale"}}}`,
		`{"code":0,"message":"","requestId":"r3","data":{"fileId":"f-1"}}`,
	}
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		if i >= len(answers) {
			i = len(answers) - 1
		}
		_, _ = w.Write([]byte(answers[i]))
	}))
	defer srv.Close()
	c := NewClient(WithEndpoint(srv.URL), WithRetry(3, time.Millisecond))
	sign := func(context.Context) (string, error) { return "sig", nil }

	cm, err := c.Commit(t.Context(), sign, "session")
	if err != nil {
		t.Fatal(err)
	}
	if cm.FileID != "f-1" || cm.MediaURL() != "" {
		t.Fatalf("commit = %+v (media %q); want FileId f-1 and no media URL from a refused attempt", cm, cm.MediaURL())
	}
	if n.Load() != 3 {
		t.Fatalf("%d attempts, want 3", n.Load())
	}

	// Not retryable: the first refusal is the answer, typed by its code.
	answers = []string{`{"code":10004,"message":"used","requestId":"r4","data":{"fileId":["x"]}}`}
	n.Store(0)
	_, err = c.Commit(t.Context(), sign, "session")
	var api *APIError
	if !errors.As(err, &api) || !errors.Is(err, ErrSignatureUsed) || api.RequestID != "r4" {
		t.Fatalf("err = %v, want the APIError of code 10004 (request r4)", err)
	}

	// A success without the data it needs is an unexpected response.
	answers = []string{`{"code":0,"requestId":"r5"}`}
	n.Store(0)
	if _, err = c.Commit(t.Context(), sign, "session"); !errors.Is(err, ErrUnexpectedResponse) {
		t.Fatalf("err = %v, want ErrUnexpectedResponse", err)
	}
}
