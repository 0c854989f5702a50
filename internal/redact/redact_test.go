package redact_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/internal/redact"
)

func TestURL(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"https://cdn.example.com/a/b.mp4?sign=s3cret&t=1", "https://cdn.example.com/a/b.mp4?REDACTED"},
		{"https://user:s3cret@cdn.example.com/b.mp4", "https://REDACTED@cdn.example.com/b.mp4"},
		{"https://s3cret@cdn.example.com/b.mp4?x=s3cret#s3cret", "https://REDACTED@cdn.example.com/b.mp4?REDACTED"},
		{"http://notify:8081/v1/vod/callback?token=s3cret", "http://notify:8081/v1/vod/callback?REDACTED"},
		{"https://cdn.example.com/b.mp4?", "https://cdn.example.com/b.mp4?REDACTED"},
		{"https://cdn.example.com/b.mp4", "https://cdn.example.com/b.mp4"},
		{"file:///media/in/a.mp4", "file:///media/in/a.mp4"},
		{"http://[::1%s3cret/", "REDACTED"},
		{"http://h/%zz?sign=s3cret", "REDACTED"},
		{"", ""},
	} {
		if got := redact.URL(tc.raw); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

// A transport error names what went wrong, not the URL and its token.
func TestErr(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:1/hook?token=s3cret", nil)
	_, err := http.DefaultClient.Do(req)
	if err == nil || !strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the transport's error %v does not repeat the URL: nothing to check", err)
	}
	if got := redact.Err(err); strings.Contains(got.Error(), "s3cret") || !errors.Is(got, context.Canceled) {
		t.Fatalf("Err = %v, want context.Canceled without the token", got)
	}
	plain := errors.New("plain")
	if redact.Err(plain) != plain {
		t.Fatal("an error without a URL changed")
	}
}
