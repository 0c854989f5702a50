// Package resume keeps the resume state and job leases that internal/upload needs:
// Redis implements upload.Leaser and upload.ResumeStore for deployments, KV
// implements them on a NATS JetStream key-value bucket for the single-process
// mode that runs without Redis.
//
// Both fence every write with the lease: a worker whose lease expired or was
// taken over gets upload.ErrLeaseLost and changes nothing, so a worker that
// paused (GC, network partition) and wakes up after another worker resumed the
// job cannot corrupt the new worker's state.
package resume

import (
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/vodpipe/vodpipe/internal/upload"
)

const (
	// DefaultPrefix starts every Redis key.
	DefaultPrefix = "vodpipe"
	// DefaultStateTTL is how long a job's state outlives its last write: VOD keeps
	// an upload session resumable for one day, after which the state is useless.
	DefaultStateTTL = 24 * time.Hour
)

// ErrInvalid is wrapped by errors about arguments no store could accept (an
// empty job id, a lease TTL under a millisecond, a part number below 1).
var ErrInvalid = errors.New("resume: invalid argument")

// commit is what CommitUploadUGC answered, stored as one value.
type commit struct {
	FileID   string `json:"fileId"`
	MediaURL string `json:"mediaUrl,omitempty"`
	CoverURL string `json:"coverUrl,omitempty"`
}

func checkAcquire(jobID, owner string, ttl time.Duration) error {
	if jobID == "" {
		return fmt.Errorf("%w: empty job id", ErrInvalid)
	}
	if owner == "" {
		return fmt.Errorf("%w: empty lease owner", ErrInvalid)
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("%w: lease TTL %v is under 1ms", ErrInvalid, ttl)
	}
	return nil
}

func checkLease(l upload.Lease) error {
	if l.Token < 1 {
		return fmt.Errorf("%w: lease without a token", ErrInvalid)
	}
	return checkAcquire(l.JobID, l.Owner, l.TTL)
}

func checkPart(p upload.PartRecord) error {
	if p.Number < 1 {
		return fmt.Errorf("%w: part number %d", ErrInvalid, p.Number)
	}
	return nil
}

// escapeID returns id when safe says it can stand in a key as it is, and
// "=" followed by its unpadded base64url encoding otherwise. No safe id may
// start with "=", so two different ids never share a key.
func escapeID(id string, safe func(string) bool) string {
	if id != "" && id[0] != '=' && safe(id) {
		return id
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(id))
}
