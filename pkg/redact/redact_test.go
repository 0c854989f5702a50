package redact_test

import (
	"testing"

	"github.com/vodpipe/vodpipe/pkg/redact"
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
		{"", ""},
	} {
		if got := redact.URL(tc.raw); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}
