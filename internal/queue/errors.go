package queue

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// The queue's errors, matched with errors.Is.
var (
	// ErrNotFound is returned for an unknown job id or FileId.
	ErrNotFound = errors.New("queue: not found")
	// ErrConflict is returned when a job's state, or a cancel pending on
	// it, does not allow the request.
	ErrConflict = errors.New("queue: job state does not allow this")
	// ErrNotCreated reports that a stream, bucket or the workers' consumer of
	// the layout does not exist yet: ingest, which creates it, has not run.
	// NotReady counts it as not ready, so a worker or notify started before
	// ingest waits.
	ErrNotCreated = errors.New("queue: the JetStream layout is not created yet (ingest creates it)")
)

// JetStream's error codes the queue tells apart (nats-server's errors.json).
const (
	// errCodeWrongLastSeq is JSStreamWrongLastSequenceErr: an expected
	// last sequence per subject (a key's revision) did not match.
	errCodeWrongLastSeq = jetstream.JSErrCodeStreamWrongLastSequence
	// errCodeWrongLastSeqConst is JSStreamWrongLastSequenceConstantErr, the
	// same refusal as newer nats-server versions word it for some writes.
	errCodeWrongLastSeqConst jetstream.ErrorCode = 10164
)

// Status codes of JetStream's direct-get replies (a NATS "Status" header)
// that a batched read tells apart.
const (
	statusEndOfBatch   = "204" // the batch is complete; Nats-Num-Pending says what is left
	statusNotFound     = "404" // nothing matched the request
	statusNoResponders = "503" // no server answers for the stream
)

// lostRace reports whether err is a compare-and-set write that lost to
// another writer (a key created or updated since it was read).
func lostRace(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeWrongLastSeq || apiErr.ErrorCode == errCodeWrongLastSeqConst) {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}
