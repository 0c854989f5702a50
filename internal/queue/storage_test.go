package queue

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// JetStream's refusals for want of storage, whether the stream's byte limit
// (10077 "maximum bytes exceeded"), the server's store (10023) or the
// account's limits (10002), become ErrStorageFull, wrapped or not; other
// refusals stay what they are.
func TestStorageFullClassifiesJetStreamRefusals(t *testing.T) {
	for _, c := range []struct {
		err  error
		full bool
	}{
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum bytes exceeded"}, true},
		{fmt.Errorf("publish: %w", &jetstream.APIError{Code: 503, ErrorCode: 10023, Description: "insufficient resources"}), true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10002, Description: "resource limits exceeded for account"}, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "wrong last sequence: 4"}, false},
		{&jetstream.APIError{Code: 503, ErrorCode: 10071, Description: "wrong last sequence: 4"}, false},
		{errors.New("nats: timeout"), false},
	} {
		got := storageFull(c.err)
		if errors.Is(got, ErrStorageFull) != c.full {
			t.Errorf("%v: storage full %v, want %v", c.err, !c.full, c.full)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("%v: the cause is lost: %v", c.err, got)
		}
	}
	if storageFull(nil) != nil {
		t.Error("nil became an error")
	}
}
