package vod

import (
	"fmt"
	"testing"
)

// The answers that refuse the signature itself, and only those, say that
// another signature may do.
func TestSignatureRefused(t *testing.T) {
	for code, info := range Codes {
		want := code == CodeSignatureInvalid || code == CodeSignatureExpired || code == CodeSignatureUsed ||
			code == CodeSignatureFromFuture
		err := fmt.Errorf("apply: %w", &APIError{Action: "ApplyUploadUGC", Code: code, Message: info.Message})
		if got := SignatureRefused(err); got != want {
			t.Errorf("code %d (%s): SignatureRefused = %v, want %v", code, info.Message, got, want)
		}
	}
	if SignatureRefused(nil) || SignatureRefused(ErrTransport) {
		t.Error("no answer or a transport failure counted as a refused signature")
	}
}
