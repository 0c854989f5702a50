package resume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/upload"
)

// KV keeps job leases and resume state in a NATS JetStream key-value bucket,
// for the single-process mode that runs without Redis. Every change is a
// compare-and-set on the entry's revision, retried on conflict.
//
// A job has two entries:
//
//	lease.<job>  {"token","owner","expires"}: the holder, and the token counter,
//	             which the entry keeps after a release
//	state.<job>  {"fence","state"}: the resume state, and the token of the
//	             newest lease that touched it
//
// A job id that is not a valid key token ([A-Za-z0-9_.-], no leading,
// trailing or double dot) is replaced by "=" and its base64url encoding.
//
// Lease expiry is judged by this process's clock against the "expires" time
// in the entry: fine for one process, or for processes on one host.
//
// A write checks the lease entry and then writes the state entry; another
// worker can take the lease over between the two. So Acquire, before it
// returns, raises the state entry's fence to the new token, and a write
// requires the fence to be no newer than its own token, in the same
// compare-and-set: a stale write either lands before the takeover completed or
// fails with upload.ErrLeaseLost.
//
// The state entry holds every part record (about 100 bytes each), so the
// server's max_payload bounds the parts of one upload: 1 MB, NATS's default,
// is about 10 000 parts, COS's limit per multipart upload.
type KV struct {
	writes
	kv jetstream.KeyValue

	// mu guards written.
	mu sync.Mutex
	// written holds, per job this process writes, the state entry as its
	// last write left it: a job's writes go one at a time (its own lock),
	// and each starts from that entry instead of reading and decoding it
	// again. The state holds every part record, so reading it back made
	// an upload's part records cost the square of their number (a tenth of
	// a worker's CPU at 128 parts). The compare-and-set on the entry's
	// revision still catches any other writer: a conflict reads it again.
	written map[string]*lastWrite
}

// lastWrite is a job's state entry as this process last wrote it.
type lastWrite struct {
	mu    sync.Mutex
	users int
	entry stateEntry // valid when rev > 0; its fence is the lease that wrote it
	rev   uint64
}

// maxWritten bounds KV.written: a job's entry goes with its lease
// (Release) or its state (Delete), and one left by a worker that never
// released costs only a read later, when the map starts over.
const maxWritten = 1024

var (
	_ upload.Leaser      = (*KV)(nil)
	_ upload.ResumeStore = (*KV)(nil)
)

// NewKV creates the bucket if it does not exist (or updates its configuration
// if it does) with one revision per key, entries expiring DefaultStateTTL
// after their last write and the given replicas (0 means 1; 3 in a NATS
// cluster, like the queue's streams, so the loss of a node keeps the state),
// and returns a KV on it.
func NewKV(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (*KV, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "vodpipe resume state and job leases",
		History:     1,
		TTL:         DefaultStateTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("resume: key-value bucket %s: %w", bucket, err)
	}
	return WrapKV(kv), nil
}

// WrapKV returns a KV on a bucket the caller created. Its TTL is the state's
// lifetime; one revision of history is enough.
func WrapKV(kv jetstream.KeyValue) *KV {
	k := &KV{kv: kv}
	k.writes = writes{k}
	return k
}

// leaseEntry is the value of lease.<job>. A released lease keeps its token
// with an empty owner.
type leaseEntry struct {
	Token   int64     `json:"token"`
	Owner   string    `json:"owner,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
}

func (e leaseEntry) held(now time.Time) bool { return e.Owner != "" && now.Before(e.Expires) }

func (e leaseEntry) heldBy(l upload.Lease, now time.Time) bool {
	return e.Token == l.Token && e.Owner == l.Owner && now.Before(e.Expires)
}

// stateEntry is the value of state.<job>. State is nil when there is none.
type stateEntry struct {
	Fence int64         `json:"fence"`
	State *upload.State `json:"state,omitempty"`
}

// errConflict is a lost compare-and-set race: read again and retry.
var errConflict = errors.New("resume: revision conflict")

// Acquire takes the job's lease for ttl, or fails with upload.ErrLeaseHeld.
func (k *KV) Acquire(ctx context.Context, jobID, owner string, ttl time.Duration) (upload.Lease, error) {
	l, _, err := k.acquire(ctx, jobID, owner, ttl)
	return l, err
}

// AcquireLoad is Acquire returning the job's state as Acquire read it
// (nil when none is stored): no read more than Acquire's.
func (k *KV) AcquireLoad(ctx context.Context, jobID, owner string, ttl time.Duration) (upload.Lease, upload.Loaded, error) {
	l, st, err := k.acquire(ctx, jobID, owner, ttl)
	if err != nil {
		return upload.Lease{}, upload.Loaded{}, err
	}
	// A copy: the entry is also where the job's next write starts from.
	return l, upload.Loaded{State: cloneState(st.State)}, nil
}

// acquire takes the lease and returns the state entry as the new lease
// left it (its fence raised), which is also where the job's first write
// starts from.
func (k *KV) acquire(ctx context.Context, jobID, owner string, ttl time.Duration) (upload.Lease, stateEntry, error) {
	if err := checkAcquire(jobID, owner, ttl); err != nil {
		return upload.Lease{}, stateEntry{}, err
	}
	lk, sk := kvKeys(jobID)
	for {
		// The state's fence is read first: when the lease entry expired from the
		// bucket but the state did not, the token must still pass the fence.
		st, srev, err := k.getState(ctx, sk)
		if err != nil {
			return upload.Lease{}, stateEntry{}, err
		}
		cur, rev, err := k.getLease(ctx, lk)
		if err != nil {
			return upload.Lease{}, stateEntry{}, err
		}
		now := time.Now()
		if cur.held(now) {
			return upload.Lease{}, stateEntry{}, upload.ErrLeaseHeld
		}
		l := upload.Lease{JobID: jobID, Token: max(cur.Token, st.Fence) + 1, Owner: owner, TTL: ttl}
		err = k.put(ctx, lk, leaseEntry{Token: l.Token, Owner: owner, Expires: now.Add(ttl)}, rev)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return upload.Lease{}, stateEntry{}, err
		}
		st, srev, err = k.raiseFence(ctx, sk, l.Token, st, srev)
		if err != nil {
			// Do not leave the job locked for ttl by a lease nobody got.
			_ = k.Release(context.WithoutCancel(ctx), l)
			return upload.Lease{}, stateEntry{}, err
		}
		k.keepAcquired(jobID, st, srev)
		return l, st, nil
	}
}

// cloneState is a deep copy of st (nil for nil).
func cloneState(st *upload.State) *upload.State {
	if st == nil {
		return nil
	}
	out := *st
	if st.Session != nil {
		sess := *st.Session
		out.Session = &sess
	}
	out.Parts = maps.Clone(st.Parts)
	return &out
}

// Renew extends the lease by its TTL, or fails with upload.ErrLeaseLost.
func (k *KV) Renew(ctx context.Context, l upload.Lease) error {
	if err := checkLease(l); err != nil {
		return err
	}
	lk, _ := kvKeys(l.JobID)
	for {
		cur, rev, err := k.getLease(ctx, lk)
		if err != nil {
			return err
		}
		now := time.Now()
		if !cur.heldBy(l, now) {
			return upload.ErrLeaseLost
		}
		cur.Expires = now.Add(l.TTL)
		if err := k.put(ctx, lk, cur, rev); !errors.Is(err, errConflict) {
			return err
		}
	}
}

// Release gives the lease up if it is still held with l; otherwise it does
// nothing and returns nil.
func (k *KV) Release(ctx context.Context, l upload.Lease) error {
	if err := checkLease(l); err != nil {
		return err
	}
	k.forgetWritten(l)
	lk, _ := kvKeys(l.JobID)
	for {
		cur, rev, err := k.getLease(ctx, lk)
		if err != nil {
			return err
		}
		if cur.Token != l.Token || cur.Owner != l.Owner {
			return nil
		}
		if err := k.put(ctx, lk, leaseEntry{Token: cur.Token}, rev); !errors.Is(err, errConflict) {
			return err
		}
	}
}

// Load returns the job's state, or upload.ErrNoState.
func (k *KV) Load(ctx context.Context, jobID string) (*upload.State, error) {
	if jobID == "" {
		return nil, fmt.Errorf("%w: empty job id", ErrInvalid)
	}
	_, sk := kvKeys(jobID)
	st, _, err := k.getState(ctx, sk)
	if err != nil {
		return nil, err
	}
	if st.State == nil {
		return nil, upload.ErrNoState
	}
	return st.State, nil
}

// fenced replaces the job's state with what change makes of it, if l still
// holds the lease and no newer lease has touched the state.
func (k *KV) fenced(ctx context.Context, l upload.Lease, change change) error {
	if err := checkLease(l); err != nil {
		return err
	}
	lk, sk := kvKeys(l.JobID)
	w := k.lockWritten(l.JobID)
	defer k.unlockWritten(l.JobID, w)
	for {
		cur, _, err := k.getLease(ctx, lk)
		if err != nil {
			return err
		}
		if !cur.heldBy(l, time.Now()) {
			return upload.ErrLeaseLost
		}
		st, rev := w.entry, w.rev
		if rev == 0 || st.Fence != l.Token {
			if st, rev, err = k.getState(ctx, sk); err != nil {
				return err
			}
		}
		// change may alter the state in place: until the write lands,
		// the entry kept is no longer the stored one.
		w.rev = 0
		if st.Fence > l.Token {
			return upload.ErrLeaseLost
		}
		next, err := change(st.State)
		if err != nil {
			return err
		}
		entry := stateEntry{Fence: l.Token, State: next}
		rev, err = k.putRev(ctx, sk, entry, rev)
		if err == nil {
			w.entry, w.rev = entry, rev
			return nil
		}
		if !errors.Is(err, errConflict) {
			return err
		}
	}
}

// lockWritten returns the job's last write, locked for the caller's write.
func (k *KV) lockWritten(jobID string) *lastWrite {
	k.mu.Lock()
	k.roomLocked()
	w := k.written[jobID]
	if w == nil {
		w = &lastWrite{}
		k.written[jobID] = w
	}
	w.users++
	k.mu.Unlock()
	w.mu.Lock()
	return w
}

// keepAcquired keeps the state entry a new lease left (its fence raised,
// with or without a state) as the job's last write: its first write
// starts from it. A write of an older lease still under way keeps its own
// record, and its next write reads the entry the fence made it lose to.
func (k *KV) keepAcquired(jobID string, entry stateEntry, rev uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.roomLocked()
	k.written[jobID] = &lastWrite{entry: entry, rev: rev}
}

// roomLocked makes room in k.written: at maxWritten it starts over (see
// maxWritten). k.mu held.
func (k *KV) roomLocked() {
	if k.written == nil || len(k.written) >= maxWritten {
		k.written = make(map[string]*lastWrite)
	}
}

// forgetWritten drops the job's last write when l wrote it (its fence) and
// no write is under way: l is given up. A later lease's entry stays.
func (k *KV) forgetWritten(l upload.Lease) {
	k.mu.Lock()
	if w := k.written[l.JobID]; w != nil && w.users == 0 && w.entry.Fence == l.Token {
		delete(k.written, l.JobID)
	}
	k.mu.Unlock()
}

// unlockWritten ends the caller's write; a job whose state is gone
// (Delete, the end of an upload) or was left unknown keeps no entry.
func (k *KV) unlockWritten(jobID string, w *lastWrite) {
	drop := w.rev == 0 || w.entry.State == nil
	w.mu.Unlock()
	k.mu.Lock()
	w.users--
	if w.users == 0 && drop && k.written[jobID] == w {
		delete(k.written, jobID)
	}
	k.mu.Unlock()
}

// raiseFence sets the state entry's fence to token unless it is already
// there or beyond, creating the entry if needed; st and rev are the entry
// as last read (rev 0: none). It returns the entry as it stands.
func (k *KV) raiseFence(ctx context.Context, sk string, token int64, st stateEntry, rev uint64) (stateEntry, uint64, error) {
	for {
		if st.Fence >= token {
			return st, rev, nil
		}
		st.Fence = token
		nrev, err := k.putRev(ctx, sk, st, rev)
		if err == nil {
			return st, nrev, nil
		}
		if !errors.Is(err, errConflict) {
			return stateEntry{}, 0, err
		}
		if st, rev, err = k.getState(ctx, sk); err != nil {
			return stateEntry{}, 0, err
		}
	}
}

// getLease reads lease.<job>; revision 0 means there is none.
func (k *KV) getLease(ctx context.Context, key string) (leaseEntry, uint64, error) {
	var e leaseEntry
	rev, err := k.get(ctx, key, &e)
	return e, rev, err
}

// getState reads state.<job>; revision 0 means there is none.
func (k *KV) getState(ctx context.Context, key string) (stateEntry, uint64, error) {
	var e stateEntry
	rev, err := k.get(ctx, key, &e)
	return e, rev, err
}

func (k *KV) get(ctx context.Context, key string, v any) (uint64, error) {
	e, err := k.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("resume: get %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("resume: decode %s: %w: %w", key, upload.ErrBadState, err)
	}
	return e.Revision(), nil
}

// put writes v at key if the key is still at revision rev (0: absent), or
// fails with errConflict.
func (k *KV) put(ctx context.Context, key string, v any, rev uint64) error {
	_, err := k.putRev(ctx, key, v, rev)
	return err
}

// putRev is put returning the key's new revision.
func (k *KV) putRev(ctx context.Context, key string, v any, rev uint64) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	if rev == 0 {
		rev, err = k.kv.Create(ctx, key, b)
	} else {
		rev, err = k.kv.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, errConflict
	}
	if err != nil {
		return 0, fmt.Errorf("resume: put %s: %w", key, err)
	}
	return rev, nil
}

func kvKeys(jobID string) (lease, state string) {
	id := escapeID(jobID, kvSafe)
	return "lease." + id, "state." + id
}

// kvSafe reports whether id is a valid key token on its own.
func kvSafe(id string) bool {
	prevDot := true // a leading dot is as bad as a double one
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c == '.':
			if prevDot {
				return false
			}
			prevDot = true
			continue
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
		prevDot = false
	}
	return !prevDot
}
