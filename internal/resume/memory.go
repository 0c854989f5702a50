package resume

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/vodpipe/vodpipe/internal/upload"
)

// Memory keeps leases and resume state in this process: for tests of the
// worker and the upload core that need no Redis, and for a single process
// that may lose its resume state with it (it keeps a small entry per job it
// has seen, for the fence). It keeps the promises of Redis and
// KV (the contract suite in store_test.go runs against all three): leases
// with fencing tokens that only grow, writes refused to a lease that lost the
// job, and state read back as a copy.
type Memory struct {
	writes
	mu   sync.Mutex
	jobs map[string]*memJob
}

// memJob is one job's lease, fence and state.
type memJob struct {
	lease leaseEntry
	fence int64
	state []byte // the state as JSON, so no caller shares it
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	m := &Memory{jobs: make(map[string]*memJob)}
	m.writes = writes{m}
	return m
}

func (m *Memory) job(id string) *memJob {
	j := m.jobs[id]
	if j == nil {
		j = &memJob{}
		m.jobs[id] = j
	}
	return j
}

// Acquire takes the job's lease for ttl, or fails with upload.ErrLeaseHeld.
func (m *Memory) Acquire(_ context.Context, jobID, owner string, ttl time.Duration) (upload.Lease, error) {
	if err := checkAcquire(jobID, owner, ttl); err != nil {
		return upload.Lease{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	j, now := m.job(jobID), time.Now()
	if j.lease.held(now) {
		return upload.Lease{}, upload.ErrLeaseHeld
	}
	l := upload.Lease{JobID: jobID, Token: max(j.lease.Token, j.fence) + 1, Owner: owner, TTL: ttl}
	j.lease = leaseEntry{Token: l.Token, Owner: owner, Expires: now.Add(ttl)}
	j.fence = l.Token
	return l, nil
}

// Renew extends the lease by its TTL, or fails with upload.ErrLeaseLost.
func (m *Memory) Renew(_ context.Context, l upload.Lease) error {
	if err := checkLease(l); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	j, now := m.job(l.JobID), time.Now()
	if !j.lease.heldBy(l, now) {
		return upload.ErrLeaseLost
	}
	j.lease.Expires = now.Add(l.TTL)
	return nil
}

// Release gives the lease up if it is still held with l; otherwise it does
// nothing and returns nil.
func (m *Memory) Release(_ context.Context, l upload.Lease) error {
	if err := checkLease(l); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.job(l.JobID)
	if j.lease.Token == l.Token && j.lease.Owner == l.Owner {
		j.lease = leaseEntry{Token: j.lease.Token}
	}
	return nil
}

// Load returns a copy of the job's state, or upload.ErrNoState.
func (m *Memory) Load(_ context.Context, jobID string) (*upload.State, error) {
	if jobID == "" {
		return nil, fmt.Errorf("%w: empty job id", ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.jobs[jobID]
	if j == nil || j.state == nil {
		return nil, upload.ErrNoState
	}
	var st upload.State
	if err := json.Unmarshal(j.state, &st); err != nil {
		return nil, fmt.Errorf("%w: %w", upload.ErrBadState, err)
	}
	return &st, nil
}

// fenced replaces the job's state with what change makes of a copy of it,
// if l still holds the lease and no newer lease has touched the state.
func (m *Memory) fenced(_ context.Context, l upload.Lease, change change) error {
	if err := checkLease(l); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.job(l.JobID)
	if !j.lease.heldBy(l, time.Now()) || j.fence > l.Token {
		return upload.ErrLeaseLost
	}
	var cur *upload.State
	if j.state != nil {
		cur = new(upload.State)
		if err := json.Unmarshal(j.state, cur); err != nil {
			return fmt.Errorf("%w: %w", upload.ErrBadState, err)
		}
	}
	next, err := change(cur)
	if err != nil {
		return err
	}
	j.fence = l.Token
	if next == nil {
		j.state = nil
		return nil
	}
	b, err := json.Marshal(next)
	if err != nil {
		return err
	}
	j.state = b
	return nil
}
