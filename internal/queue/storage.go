package queue

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrStorageFull is wrapped by the error of a write JetStream refused for
// want of storage: the jobs stream at its byte limit (VODPIPE_JOBS_MAX_BYTES,
// new messages refused), or the server's or account's JetStream storage
// limit reached. It passes when space returns (workers finishing jobs free
// the jobs stream; an operator raising a limit or freeing disk).
var ErrStorageFull = errors.New("NATS JetStream storage is full")

// Server error codes of a full store.
const (
	codeResourcesExceeded jetstream.ErrorCode = 10002 // "resource limits exceeded for account"
	codeStoreFailed       jetstream.ErrorCode = 10077 // "maximum bytes exceeded" among others
)

// storageFull marks err with ErrStorageFull when JetStream refused the
// write for want of storage; other errors pass unchanged.
func storageFull(err error) error {
	if err == nil || errors.Is(err, ErrStorageFull) {
		return err
	}
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return err
	}
	switch {
	case api.ErrorCode == codeInsufficientResources, api.ErrorCode == codeResourcesExceeded,
		api.ErrorCode == codeStoreFailed && strings.Contains(api.Description, "maximum bytes"):
		return fmt.Errorf("%w: %w", ErrStorageFull, err)
	}
	return err
}
