package resume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/internal/upload"
)

// Redis keeps job leases and resume state in Redis. It takes a
// redis.UniversalClient, so a single node, Sentinel or Cluster is a matter of
// client configuration.
//
// A job has three keys, all with the job id as hash tag so that they live in
// one Cluster slot and one Lua script can touch them all:
//
//	<prefix>:{<job>}:fence  counter of lease acquisitions: the fencing token
//	<prefix>:{<job>}:lease  "<token>:<owner>" of the holder, expiring with the lease
//	<prefix>:{<job>}:state  hash: session, uploadId, part:<n>, videoDone, coverDone, commit
//
// A job id containing "{" or "}" (which would change the hash tag) or starting
// with "=" is replaced in keys by "=" and its base64url encoding.
//
// Every successful Acquire, Renew and state write pushes the expiry of the
// fence and state keys to the state TTL from now, so a job's keys vanish
// together one state TTL after its last activity.
type Redis struct {
	c        redis.UniversalClient
	prefix   string
	stateTTL time.Duration
	// replicas is how many replicas must hold a lease, a session and the
	// state before a commit (WAIT), within replicaWait; 0: none.
	replicas    int
	replicaWait time.Duration

	acquire *script
	acqLoad *script
	renew   *script
	release *script
	write   *script
	// sessionCommit is SaveSessionBeforeCommit's.
	sessionCommit *script
}

// script is a Lua script with its source, which a pipeline sends when the
// server does not know the script yet.
type script struct {
	*redis.Script
	src string
}

func newScript(src string) *script { return &script{redis.NewScript(src), src} }

var (
	_ upload.Leaser        = (*Redis)(nil)
	_ upload.ResumeStore   = (*Redis)(nil)
	_ upload.CommitBarrier = (*Redis)(nil)

	_ upload.SessionCommitBarrier = (*Redis)(nil)
)

// ErrNotReplicated is wrapped by the error of a write that fewer replicas
// than WithReplicas asks for acknowledged in time: it stands on the primary
// but a failover could lose it, so the worker does not go on on it.
var ErrNotReplicated = errors.New("resume: write not acknowledged by enough Redis replicas")

// Option configures Redis.
type Option func(*Redis)

// WithPrefix sets the first segment of every key (default DefaultPrefix). It
// must not contain "{" or "}".
func WithPrefix(prefix string) Option {
	return func(r *Redis) { r.prefix = prefix }
}

// WithStateTTL sets how long state outlives the job's last write (default
// DefaultStateTTL). Values under a millisecond are ignored.
func WithStateTTL(ttl time.Duration) Option {
	return func(r *Redis) {
		if ttl >= time.Millisecond {
			r.stateTTL = ttl
		}
	}
}

// WithReplicas makes the writes a failover must not lose wait (Redis WAIT)
// until n replicas hold them, for up to wait each: taking a lease, saving a
// session and the barrier before a commit (BeforeCommit). Redis replicates
// asynchronously, so without it a primary that dies right after answering
// can take a lease or a session with it, and the next worker starts a second
// VOD session while the first commits its own: two files. With it a lost
// write costs at most a re-sent part. A write short of replicas fails with
// ErrNotReplicated (the job runs again). n ≤ 0: no waiting.
func WithReplicas(n int, wait time.Duration) Option {
	return func(r *Redis) {
		r.replicas, r.replicaWait = max(n, 0), wait
		if r.replicaWait <= 0 {
			r.replicaWait = DefaultReplicaWait
		}
	}
}

// DefaultReplicaWait bounds each WAIT of WithReplicas.
const DefaultReplicaWait = 2 * time.Second

// NewRedis returns a Redis on c. The caller keeps ownership of c.
func NewRedis(c redis.UniversalClient, opts ...Option) *Redis {
	r := &Redis{
		c:             c,
		prefix:        DefaultPrefix,
		stateTTL:      DefaultStateTTL,
		acquire:       newScript(acquireLua),
		acqLoad:       newScript(acquireLoadLua),
		renew:         newScript(renewLua),
		release:       newScript(releaseLua),
		write:         newScript(writeLua),
		sessionCommit: newScript(sessionCommitLua),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// The scripts name every key they touch in KEYS and all of a job's keys share
// one hash tag, which is what Redis Cluster requires of a script.
const (
	// acquireLua takes the lease if nobody holds it. The fence is incremented
	// only on success, so tokens grow by one per acquisition, and strictly: they
	// never repeat while the fence key lives (it expires with the state, one
	// state TTL after the job's last activity).
	// KEYS: fence, lease, state. ARGV: owner, lease TTL ms, fence TTL ms, state TTL ms.
	// Returns the token, or 0 when the lease is held.
	acquireLua = `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], string.format('%d:%s', token, ARGV[1]), 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return token`

	// acquireLoadLua is acquireLua that also returns the job's state, so a
	// worker starting a job needs one round trip for both.
	// KEYS and ARGV as acquireLua. Returns {token, state hash as field/value
	// pairs}, or {0} when the lease is held.
	acquireLoadLua = `
if redis.call('EXISTS', KEYS[2]) == 1 then return {0} end
local token = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], string.format('%d:%s', token, ARGV[1]), 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return {token, redis.call('HGETALL', KEYS[3])}`

	// renewLua extends the lease if it is still the caller's.
	// KEYS: lease, fence, state. ARGV: lease value, lease TTL ms, fence TTL ms, state TTL ms.
	// Returns 1, or 0 when the lease is lost.
	renewLua = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return 1`

	// sessionCommitLua is the barrier before a commit (renewLua) with the
	// session recorded as writeLua's replace does, in one script.
	// KEYS: lease, fence, state. ARGV: lease value, lease TTL ms, fence TTL
	// ms, state TTL ms, session. Returns 1, or 0 when the lease is lost.
	sessionCommitLua = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[3], 'session', ARGV[5])
for _, f in ipairs(redis.call('HKEYS', KEYS[3])) do
  if f ~= 'session' then redis.call('HDEL', KEYS[3], f) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return 1`

	// releaseLua deletes the lease if it is still the caller's.
	// KEYS: lease. ARGV: lease value.
	releaseLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

	// writeLua is every state write, fenced by the lease value. Modes:
	// replace (set the pairs, then drop every other field), update (set the pairs),
	// session (set the pairs if the hash has a session), release (update,
	// then give the lease up) and delete.
	// KEYS: lease, fence, state. ARGV: lease value, fence TTL ms, state TTL ms,
	// mode, then field/value pairs.
	// Returns 1, 0 when the lease is lost, -1 when mode session finds none.
	// A release whose lease is gone but whose pair is already stored is the
	// client's retry of a release that ran (its answer was lost): 1 again.
	writeLua = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  if ARGV[4] == 'release' and redis.call('HGET', KEYS[3], ARGV[5]) == ARGV[6] then return 1 end
  return 0
end
local mode = ARGV[4]
if mode == 'delete' then
  redis.call('DEL', KEYS[3])
else
  if mode == 'session' and redis.call('HEXISTS', KEYS[3], 'session') == 0 then
    return -1
  end
  redis.call('HSET', KEYS[3], unpack(ARGV, 5))
  if mode == 'replace' then
    -- The other fields go after the new ones are in: the key never stops
    -- existing mid-script, which a slot being migrated would refuse.
    local keep = {}
    for i = 5, #ARGV, 2 do keep[ARGV[i]] = true end
    for _, f in ipairs(redis.call('HKEYS', KEYS[3])) do
      if not keep[f] then redis.call('HDEL', KEYS[3], f) end
    end
  end
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  if mode == 'release' then redis.call('DEL', KEYS[1]) end
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1`
)

var _ upload.CommitReleaser = (*Redis)(nil)

// Hash fields of the state key.
const (
	fieldSession   = "session"
	fieldUploadID  = "uploadId"
	fieldPart      = "part:"
	fieldVideoDone = "videoDone"
	fieldCoverDone = "coverDone"
	fieldCommit    = "commit"
)

// Acquire takes the job's lease for ttl, or fails with upload.ErrLeaseHeld.
func (r *Redis) Acquire(ctx context.Context, jobID, owner string, ttl time.Duration) (upload.Lease, error) {
	if err := checkAcquire(jobID, owner, ttl); err != nil {
		return upload.Lease{}, err
	}
	k := r.keys(jobID)
	cmd, werr := r.durable(ctx, r.acquire, []string{k.fence, k.lease, k.state},
		owner, ms(ttl), ms(r.fenceTTL(ttl)), ms(r.stateTTL))
	token, err := cmd.Int64()
	if err == nil && token != 0 {
		err = werr // a lease taken but not replicated: it expires unused
	}
	if err != nil {
		return upload.Lease{}, fmt.Errorf("resume: acquire lease of job %s: %w", jobID, err)
	}
	if token == 0 {
		return upload.Lease{}, upload.ErrLeaseHeld
	}
	return upload.Lease{JobID: jobID, Token: token, Owner: owner, TTL: ttl}, nil
}

// AcquireLoad is Acquire and Load in one round trip: the lease, and the
// job's state as it was read (nil when none is stored; a state that cannot be
// decoded is reported in Loaded.Err, as Load would, with the lease held).
func (r *Redis) AcquireLoad(ctx context.Context, jobID, owner string, ttl time.Duration) (upload.Lease, upload.Loaded, error) {
	if err := checkAcquire(jobID, owner, ttl); err != nil {
		return upload.Lease{}, upload.Loaded{}, err
	}
	k := r.keys(jobID)
	cmd, werr := r.durable(ctx, r.acqLoad, []string{k.fence, k.lease, k.state},
		owner, ms(ttl), ms(r.fenceTTL(ttl)), ms(r.stateTTL))
	res, err := cmd.Slice()
	if err == nil && werr != nil && len(res) > 0 && res[0] != int64(0) {
		err = werr // a lease taken but not replicated: it expires unused
	}
	if err != nil {
		return upload.Lease{}, upload.Loaded{}, fmt.Errorf("resume: acquire lease of job %s: %w", jobID, err)
	}
	var token int64
	ok := len(res) > 0
	if ok {
		token, ok = res[0].(int64)
	}
	if !ok {
		// Types only: the answer may hold the job's state.
		return upload.Lease{}, upload.Loaded{}, fmt.Errorf("resume: acquire lease of job %s: unexpected answer (%d values, first %T)",
			jobID, len(res), firstOf(res))
	}
	if token == 0 {
		return upload.Lease{}, upload.Loaded{}, upload.ErrLeaseHeld
	}
	l := upload.Lease{JobID: jobID, Token: token, Owner: owner, TTL: ttl}
	var pairs []any
	if len(res) > 1 {
		pairs, _ = res[1].([]any)
	}
	if len(pairs) == 0 {
		return l, upload.Loaded{}, nil
	}
	h := make(map[string]string, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		f, _ := pairs[i].(string)
		v, _ := pairs[i+1].(string)
		h[f] = v
	}
	st, err := decodeHash(h)
	if err != nil {
		return l, upload.Loaded{Err: fmt.Errorf("resume: load state of job %s: %w: %w", jobID, upload.ErrBadState, err)}, nil
	}
	return l, upload.Loaded{State: st}, nil
}

func firstOf(vs []any) any {
	if len(vs) == 0 {
		return nil
	}
	return vs[0]
}

// Renew extends the lease by its TTL, or fails with upload.ErrLeaseLost.
func (r *Redis) Renew(ctx context.Context, l upload.Lease) error {
	if err := checkLease(l); err != nil {
		return err
	}
	k := r.keys(l.JobID)
	ok, err := r.renew.Run(ctx, r.c, []string{k.lease, k.fence, k.state},
		leaseValue(l), ms(l.TTL), ms(r.fenceTTL(l.TTL)), ms(r.stateTTL)).Int64()
	if err != nil {
		return fmt.Errorf("resume: renew lease of job %s: %w", l.JobID, err)
	}
	if ok != 1 {
		return upload.ErrLeaseLost
	}
	return nil
}

// Release gives the lease up if it is still held with l; otherwise it does
// nothing and returns nil.
func (r *Redis) Release(ctx context.Context, l upload.Lease) error {
	if err := checkLease(l); err != nil {
		return err
	}
	k := r.keys(l.JobID)
	if err := r.release.Run(ctx, r.c, []string{k.lease}, leaseValue(l)).Err(); err != nil {
		return fmt.Errorf("resume: release lease of job %s: %w", l.JobID, err)
	}
	return nil
}

// Load returns the job's state, or upload.ErrNoState.
func (r *Redis) Load(ctx context.Context, jobID string) (*upload.State, error) {
	if jobID == "" {
		return nil, fmt.Errorf("%w: empty job id", ErrInvalid)
	}
	h, err := r.c.HGetAll(ctx, r.keys(jobID).state).Result()
	if err != nil {
		return nil, fmt.Errorf("resume: load state of job %s: %w", jobID, err)
	}
	if len(h) == 0 {
		return nil, upload.ErrNoState
	}
	s, err := decodeHash(h)
	if err != nil {
		return nil, fmt.Errorf("resume: load state of job %s: %w: %w", jobID, upload.ErrBadState, err)
	}
	return s, nil
}

// SaveSession replaces the job's state with a new session and nothing else.
func (r *Redis) SaveSession(ctx context.Context, l upload.Lease, s upload.Session) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return r.fencedDurable(ctx, l, true, "replace", fieldSession, b)
}

// SetUploadID records the multipart UploadId of the current session, or fails
// with upload.ErrNoState when there is no session.
func (r *Redis) SetUploadID(ctx context.Context, l upload.Lease, uploadID string) error {
	// A field of its own rather than an edit of the session JSON: Lua's cjson
	// would rewrite the session's 64-bit sizes as doubles. Durable as the
	// session is: a failover that lost it would have the next run open
	// another upload and send every part again (one WAIT a multipart job).
	return r.fencedDurable(ctx, l, true, "session", fieldUploadID, uploadID)
}

// SavePart records one acknowledged part.
func (r *Redis) SavePart(ctx context.Context, l upload.Lease, p upload.PartRecord) error {
	if err := checkPart(p); err != nil {
		return err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return r.fenced(ctx, l, "update", fieldPart+strconv.Itoa(p.Number), b)
}

// MarkVideoDone records that the video object is complete in COS.
func (r *Redis) MarkVideoDone(ctx context.Context, l upload.Lease) error {
	return r.fenced(ctx, l, "update", fieldVideoDone, "1")
}

// MarkCoverDone records that the cover object is in COS.
func (r *Redis) MarkCoverDone(ctx context.Context, l upload.Lease) error {
	return r.fenced(ctx, l, "update", fieldCoverDone, "1")
}

// SaveCommit records what CommitUploadUGC answered.
func (r *Redis) SaveCommit(ctx context.Context, l upload.Lease, fileID, mediaURL, coverURL string) error {
	b, err := json.Marshal(commit{FileID: fileID, MediaURL: mediaURL, CoverURL: coverURL})
	if err != nil {
		return err
	}
	return r.fenced(ctx, l, "update", fieldCommit, b)
}

// SaveCommitRelease is SaveCommit and Release in one round trip: the commit
// recorded under the lease, then the lease given up. A worker that finds the
// lease free afterwards finds the commit too, so it finishes the job
// without uploading or committing again. Sent twice (go-redis retries a
// command whose answer was lost), it succeeds twice.
func (r *Redis) SaveCommitRelease(ctx context.Context, l upload.Lease, fileID, mediaURL, coverURL string) error {
	b, err := json.Marshal(commit{FileID: fileID, MediaURL: mediaURL, CoverURL: coverURL})
	if err != nil {
		return err
	}
	return r.fenced(ctx, l, "release", fieldCommit, b)
}

// Delete removes the job's state. The fence stays, so tokens keep growing.
func (r *Redis) Delete(ctx context.Context, l upload.Lease) error {
	return r.fenced(ctx, l, "delete")
}

// BeforeCommit checks that the lease is still l and, with WithReplicas,
// waits until the replicas hold everything written so far: the lease and
// the session the commit is about to close. A failover after it keeps both,
// so whoever runs the job next commits the same VOD session again (the
// same file). It renews the lease as Renew does.
func (r *Redis) BeforeCommit(ctx context.Context, l upload.Lease) error {
	if err := checkLease(l); err != nil {
		return err
	}
	return r.barrier(ctx, l, r.renew, "check lease")
}

// SaveSessionBeforeCommit is SaveSession and BeforeCommit in one round
// trip (upload.SessionCommitBarrier), WAIT included with WithReplicas.
func (r *Redis) SaveSessionBeforeCommit(ctx context.Context, l upload.Lease, s upload.Session) error {
	if err := checkLease(l); err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return r.barrier(ctx, l, r.sessionCommit, "record the session", b)
}

// barrier runs s, a script that renews l's lease as renewLua does (and
// writes what extra holds), durably: upload.ErrLeaseLost when the lease is
// not l's, ErrNotReplicated when too few replicas hold it in time.
func (r *Redis) barrier(ctx context.Context, l upload.Lease, s *script, what string, extra ...any) error {
	k := r.keys(l.JobID)
	args := append([]any{leaseValue(l), ms(l.TTL), ms(r.fenceTTL(l.TTL)), ms(r.stateTTL)}, extra...)
	cmd, werr := r.durable(ctx, s, []string{k.lease, k.fence, k.state}, args...)
	ok, err := cmd.Int64()
	switch {
	case err != nil:
		return fmt.Errorf("resume: %s of job %s before its commit: %w", what, l.JobID, err)
	case ok != 1:
		return upload.ErrLeaseLost
	case werr != nil:
		return fmt.Errorf("resume: before the commit of job %s: %w", l.JobID, werr)
	}
	return nil
}

// durable runs s like Script.Run and, with WithReplicas, WAITs on the same
// connection (WAIT counts the replicas holding the connection's own
// writes, and everything the primary had before them). The error is the
// replication's (ErrNotReplicated, or WAIT's own); the script's is in cmd.
func (r *Redis) durable(ctx context.Context, s *script, keys []string, args ...any) (*redis.Cmd, error) {
	if r.replicas == 0 {
		return s.Run(ctx, r.c, keys, args...), nil
	}
	for try := 0; ; try++ {
		node, err := r.primaryFor(ctx, keys[0])
		if err != nil {
			cmd := redis.NewCmd(ctx)
			cmd.SetErr(err)
			return cmd, nil
		}
		pipe := node.Pipeline()
		var cmd *redis.Cmd
		if try == 0 {
			cmd = s.EvalSha(ctx, pipe, keys, args...)
		} else {
			cmd = s.Eval(ctx, pipe, keys, args...)
		}
		wait := pipe.Do(ctx, "wait", r.replicas, ms(r.replicaWait))
		_, _ = pipe.Exec(ctx)
		err = cmd.Err()
		if try < 3 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			continue
		}
		if try < 20 && r.moved(ctx, err) {
			// A slot being migrated: the keys settle within moments.
			if !retry.Sleep(ctx, time.Duration(try+1)*10*time.Millisecond) {
				return cmd, nil
			}
			continue
		}
		if err != nil {
			return cmd, nil
		}
		n, err := wait.Int64()
		if err != nil {
			return cmd, fmt.Errorf("%w: WAIT: %w", ErrNotReplicated, err)
		}
		if n < int64(r.replicas) {
			return cmd, fmt.Errorf("%w: %d of %d replicas within %s", ErrNotReplicated, n, r.replicas, r.replicaWait)
		}
		return cmd, nil
	}
}

// primaryFor is the client of the primary that holds key: r.c itself, but
// for a Cluster the node of the key's slot, so that the script and its WAIT
// share one connection.
func (r *Redis) primaryFor(ctx context.Context, key string) (redis.Cmdable, error) {
	cc, ok := r.c.(*redis.ClusterClient)
	if !ok {
		return r.c, nil
	}
	return cc.MasterForKey(ctx, key)
}

// moved reports whether err is a Cluster redirection (the slot moved, or is
// moving, to another node) and, for a Cluster, reloads the slot map so that
// the next try goes to the slot's node.
func (r *Redis) moved(ctx context.Context, err error) bool {
	if !redis.HasErrorPrefix(err, "MOVED") && !redis.HasErrorPrefix(err, "ASK") && !redis.HasErrorPrefix(err, "TRYAGAIN") {
		return false
	}
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		cc.ReloadState(ctx)
	}
	return true
}

// fenced runs writeLua for l.
func (r *Redis) fenced(ctx context.Context, l upload.Lease, mode string, pairs ...any) error {
	return r.fencedDurable(ctx, l, false, mode, pairs...)
}

// fencedDurable runs writeLua for l, with WithReplicas's WAIT when durable.
func (r *Redis) fencedDurable(ctx context.Context, l upload.Lease, durable bool, mode string, pairs ...any) error {
	if err := checkLease(l); err != nil {
		return err
	}
	k := r.keys(l.JobID)
	args := append([]any{leaseValue(l), ms(r.fenceTTL(l.TTL)), ms(r.stateTTL), mode}, pairs...)
	var cmd *redis.Cmd
	var werr error
	if durable {
		cmd, werr = r.durable(ctx, r.write, []string{k.lease, k.fence, k.state}, args...)
	} else {
		cmd = r.write.Run(ctx, r.c, []string{k.lease, k.fence, k.state}, args...)
	}
	res, err := cmd.Int64()
	if err == nil && res == 1 && werr != nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("resume: write state of job %s: %w", l.JobID, err)
	}
	switch res {
	case 1:
		return nil
	case -1:
		return upload.ErrNoState
	default:
		return upload.ErrLeaseLost
	}
}

type redisKeys struct{ fence, lease, state string }

func (r *Redis) keys(jobID string) redisKeys {
	base := r.prefix + ":{" + escapeID(jobID, redisSafe) + "}:"
	return redisKeys{fence: base + "fence", lease: base + "lease", state: base + "state"}
}

// fenceTTL keeps the fence at least as long as a lease it counted.
func (r *Redis) fenceTTL(leaseTTL time.Duration) time.Duration {
	return max(r.stateTTL, leaseTTL)
}

// redisSafe reports whether id leaves the hash tag of its keys alone.
func redisSafe(id string) bool { return !strings.ContainsAny(id, "{}") }

func leaseValue(l upload.Lease) string {
	return strconv.FormatInt(l.Token, 10) + ":" + l.Owner
}

// ms is d in whole milliseconds, at least 1: PX and PEXPIRE refuse 0.
func ms(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

func decodeHash(h map[string]string) (*upload.State, error) {
	s := &upload.State{}
	for f, v := range h {
		switch {
		case f == fieldSession:
			s.Session = &upload.Session{}
			if err := json.Unmarshal([]byte(v), s.Session); err != nil {
				return nil, fmt.Errorf("field %s: %w", f, err)
			}
		case f == fieldVideoDone:
			s.VideoDone = v == "1"
		case f == fieldCoverDone:
			s.CoverDone = v == "1"
		case f == fieldCommit:
			var c commit
			if err := json.Unmarshal([]byte(v), &c); err != nil {
				return nil, fmt.Errorf("field %s: %w", f, err)
			}
			s.FileID, s.MediaURL, s.CoverURL = c.FileID, c.MediaURL, c.CoverURL
		case strings.HasPrefix(f, fieldPart):
			var p upload.PartRecord
			if err := json.Unmarshal([]byte(v), &p); err != nil {
				return nil, fmt.Errorf("field %s: %w", f, err)
			}
			if s.Parts == nil {
				s.Parts = make(map[int]upload.PartRecord)
			}
			s.Parts[p.Number] = p
		}
	}
	// Applied after the loop: map order would otherwise let the session's own
	// (empty) UploadID overwrite it.
	if id, ok := h[fieldUploadID]; ok && s.Session != nil {
		s.Session.UploadID = id
	}
	return s, nil
}
