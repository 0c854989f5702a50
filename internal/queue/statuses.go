package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/tracing"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// Statuses is the status bucket: one record per job (its message, state,
// progress, runs, outcome), written with compare-and-set through the job
// state machine's transitions.
type Statuses struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	index   *Index
	control *Control
	files   *Files
	// retention is how long a finished status is kept (0: forever).
	retention time.Duration
	// entryMargin is how long a finished job's state entry outlives its
	// status (entryTTLMargin; tests shorten it).
	entryMargin time.Duration
}

// entryTTLMargin is how much longer than its status a finished job's state
// entry is kept: the entry is written before the status, and must not go
// before it (a listing of the state would miss the job).
const entryTTLMargin = time.Minute

// Get returns a job's status and its revision, or ErrNotFound.
func (ss *Statuses) Get(ctx context.Context, jobID string) (*job.Status, uint64, error) {
	e, err := ss.kv.Get(ctx, jobID)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		// An id the bucket cannot hold names no job either.
		return nil, 0, fmt.Errorf("%w: job %s", ErrNotFound, jobID)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("queue: status %s: %w", jobID, err)
	}
	s, err := job.UnmarshalStatus(e.Value())
	if err != nil {
		return nil, 0, err
	}
	return s, e.Revision(), nil
}

// Create records a new job as queued, unless a status already exists
// (then it returns that one and created=false): the first submit wins.
func (ss *Statuses) Create(ctx context.Context, j *job.Job) (st *job.Status, created bool, err error) {
	now := time.Now().UTC()
	s := &job.Status{Job: *j, State: job.StateQueued, CreatedAt: now, UpdatedAt: now}
	made, err := ss.indexEntries(ctx, j.ID, s, "")
	if err != nil {
		return nil, false, err
	}
	b, err := job.MarshalStatus(s)
	if err != nil {
		return nil, false, err
	}
	if _, err := ss.kv.Create(ctx, j.ID, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			made.remove(ctx, ss.index)
			old, _, gerr := ss.Get(ctx, j.ID)
			return old, false, gerr
		}
		return nil, false, fmt.Errorf("queue: create status %s: %w", j.ID, err)
	}
	return s, true, nil
}

// Update applies f to the job's status with optimistic concurrency,
// retrying on conflicting writes. f returns an error to abort, or
// errUnchanged to write nothing (the status, as the stream's leader has it,
// needs no change): Update then returns that status and no error. A missing
// status is created from the zero Status (f sees State "") if f gives it a
// state; otherwise the answer is ErrNotFound and nothing is written.
func (ss *Statuses) Update(ctx context.Context, jobID string, f func(*job.Status) error) (*job.Status, error) {
	s, _, err := ss.updateStatus(ctx, jobID, Known{}, f)
	if errors.Is(err, errUnchanged) {
		if s == nil || s.State == "" {
			return nil, fmt.Errorf("%w: job %s", ErrNotFound, jobID)
		}
		return s, nil
	}
	return s, err
}

// errUnchanged is what an update function passed to Update returns when
// the status needs no write. Every write of a status counts: a finished
// one's gives it a fresh TTL, and with it a fresh state entry
// (indexEntries). Like any refusal, it is decided again on the leader's
// copy when a replica's was read, so a replica that lags never has a
// change skipped.
var errUnchanged = errors.New("queue: status unchanged")

// put writes a status over revision rev (0: a new key). A finished job's
// status expires after the retention: it is written with a TTL of its own.
func (ss *Statuses) put(ctx context.Context, jobID string, b []byte, rev uint64, finished bool) (rev2 uint64, err error) {
	// A span under the caller's (a worker's job), when it has one.
	ctx, span := tracing.Start(ctx, "status write")
	defer func() { tracing.End(span, err) }()
	switch {
	case (!finished || ss.retention <= 0) && rev == 0:
		return ss.kv.Create(ctx, jobID, b)
	case !finished || ss.retention <= 0:
		return ss.kv.Update(ctx, jobID, b, rev)
	case rev == 0: // Create also takes the place of a key deleted or expired
		return ss.kv.Create(ctx, jobID, b, jetstream.KeyTTL(ss.retention))
	}
	m := &nats.Msg{Subject: "$KV." + StatusBucket + "." + jobID, Data: b, Header: nats.Header{}}
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	ack, err := ss.js.PublishMsg(ctx, m, jetstream.WithMsgTTL(ss.retention))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// madeEntries are the index entries a status write made before it wrote.
type madeEntries struct{ log, state uint64 }

// remove deletes them: the write they were made for lost.
func (m madeEntries) remove(ctx context.Context, ix *Index) {
	ix.remove(ctx, m.log)
	ix.remove(ctx, m.state)
}

// indexEntries writes the index entries s needs before s is written: its
// entry by creation when it has none, and its entry in its state when the
// state changed from was, when it has none, or when s is finished and
// expires. s is pointed at them. A finished status's every write gives it
// a TTL of the retention from then (put), so each write gives it a state
// entry that outlives it (by entryMargin) too: its first entry would
// otherwise expire while a status written again later is still kept, and
// the job would drop out of its state's listing and count.
func (ss *Statuses) indexEntries(ctx context.Context, jobID string, s *job.Status, was job.State) (madeEntries, error) {
	var made madeEntries
	var err error
	if s.LogSeq == 0 {
		if made.log, err = ss.index.add(ctx, indexCreated, jobID, 0); err != nil {
			return madeEntries{}, err
		}
		s.LogSeq = made.log
	}
	expires := s.State.Terminal() && ss.retention > 0
	if s.State != "" && (s.State != was || s.IndexSeq == 0 || expires) {
		// A finished job's entry expires entryMargin after its status (put).
		var ttl time.Duration
		if expires {
			ttl = ss.retention + ss.entryMargin
		}
		if made.state, err = ss.index.add(ctx, indexSubject(s.State), jobID, ttl); err != nil {
			made.remove(ctx, ss.index)
			return madeEntries{}, err
		}
		s.IndexSeq = made.state
	}
	return made, nil
}

// Page lists up to limit jobs after the cursor after (0: from the start):
// every job by creation when state is "", otherwise the jobs in state by
// when they entered it. Its cost is the page's, whatever the number of
// jobs stored: a read of index entries and one of their statuses, again
// only for entries that turn out stale. Entries of jobs whose status
// expired (ingest's sweep deletes them every few minutes) are deleted as
// met, as are strays, up to pageRemovals a call; past pageRounds reads
// the page ends short, with a cursor to go on from.
func (ss *Statuses) Page(ctx context.Context, state job.State, after uint64, limit int) (Page, error) {
	subject := indexSubject(state)
	var page Page
	read, removals := limit, pageRemovals
	for round := 0; ; round++ {
		if round == pageRounds {
			page.Next = after
			return page, nil
		}
		entries, more, err := ss.index.entries(ctx, subject, after, read)
		if err != nil {
			return Page{}, err
		}
		if len(entries) == 0 {
			return page, nil
		}
		ids := make([]string, len(entries))
		for i, e := range entries {
			ids[i] = e.jobID
		}
		statuses, err := ss.many(ctx, ids)
		if err != nil {
			return Page{}, err
		}
		for _, e := range entries {
			if len(page.Statuses) == limit {
				// Read ahead past a full page: the rest is the next page's.
				more = true
				break
			}
			after = e.seq
			s := statuses[e.jobID]
			switch {
			case s == nil:
				// Its status is being created, the entry is a crash's
				// stray, or the job expired: only the last is certain
				// from the entry alone, by its age.
				if removals > 0 && ss.expiredEntry(e) {
					ss.index.remove(ctx, e.seq)
					removals--
				}
			case pointsAt(s, state, e.seq):
				page.Statuses = append(page.Statuses, s)
			case e.seq < entryOf(s, state) && removals > 0:
				// The status moved past it (entries are written before
				// the status that points at them): a stray.
				ss.index.remove(ctx, e.seq)
				removals--
			}
		}
		if !more {
			return page, nil
		}
		if len(page.Statuses) == limit {
			page.Next = after
			return page, nil
		}
		// Some entries were stale: read further ahead.
		read = max(limit-len(page.Statuses), pageReadAhead)
	}
}

// A page's bounds (see Page): how many index reads it makes at most, how
// many entries a read takes once some turned out stale, how many entries
// of expired jobs it deletes.
const (
	pageRounds    = 8
	pageReadAhead = 200
	pageRemovals  = 256
)

// expiredEntry reports whether e, an index entry whose job has no status,
// is an expired job's: older than the retention, since a status expires
// the retention after its last write, which came after its entries.
func (ss *Statuses) expiredEntry(e indexEntry) bool {
	return ss.retention > 0 && e.time.Before(time.Now().Add(-ss.retention))
}

// many reads the statuses of ids, a request per thousand; a missing or
// deleted one is absent from the map.
func (ss *Statuses) many(ctx context.Context, ids []string) (map[string]*job.Status, error) {
	out := make(map[string]*job.Status, len(ids))
	err := lastOfKeys(ctx, ss.js.Conn(), StatusBucket, ids, func(_ string, _ uint64, value []byte) error {
		s, err := job.UnmarshalStatus(value)
		if err == nil {
			out[s.Job.ID] = s
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Known is a job status its holder read or wrote at revision Rev. Passed to
// TransitionFrom it saves the read: the write is tried against Rev first and
// only a conflicting write in between costs a fresh read.
type Known struct {
	Status *job.Status
	Rev    uint64
}

func (ss *Statuses) updateStatus(ctx context.Context, jobID string, known Known, f func(*job.Status) error) (*job.Status, uint64, error) {
	fromLeader := false  // the status is read from the stream's leader
	var refused struct { // the first refusal, before the leader was asked
		s   *job.Status
		rev uint64
		err error
	}
	for attempt := 0; ; attempt++ {
		var (
			s   *job.Status
			rev uint64
			err error
		)
		switch {
		case attempt == 0 && known.Status != nil && known.Rev > 0:
			c := *known.Status
			s, rev = &c, known.Rev
		case fromLeader:
			s, rev, err = ss.leaderStatus(ctx, jobID)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return refused.s, refused.rev, refused.err // the leader cannot say: the refusal stands
			}
		default:
			s, rev, err = ss.Get(ctx, jobID)
		}
		if errors.Is(err, ErrNotFound) {
			s, rev, err = &job.Status{CreatedAt: time.Now().UTC()}, 0, nil
		}
		if err != nil {
			return nil, 0, err
		}
		was := s.State
		if err := f(s); err != nil {
			// A refusal decided on a status a direct get read (or the
			// caller knew) may be a lagging replica's: the status a
			// worker's own "running" replaced, say. It stands once the
			// leader's copy refuses too, or when the leader cannot be
			// asked (a NATS user of 0.9's configuration may not).
			if !fromLeader {
				fromLeader, refused.s, refused.rev, refused.err = true, s, rev, err
				continue
			}
			return s, rev, err
		}
		if s.State == "" {
			// A missing status that f gave no state: nothing to store. A
			// status with no state is no job's, and no worker could move
			// it (an update meant for a status that was never stored).
			return nil, 0, fmt.Errorf("%w: job %s", ErrNotFound, jobID)
		}
		left := s.IndexSeq
		made, err := ss.indexEntries(ctx, jobID, s, was)
		if err != nil {
			return nil, 0, err
		}
		s.UpdatedAt = time.Now().UTC()
		b, err := job.MarshalStatus(s)
		if err != nil {
			return nil, 0, err
		}
		rev, err = ss.put(ctx, jobID, b, rev, s.State.Terminal())
		if err == nil {
			if made.state != 0 && left != 0 {
				ss.index.remove(ctx, left) // the entry of the state it left
			}
			return s, rev, nil
		}
		if lostRace(err) {
			made.remove(ctx, ss.index)
		}
		if !lostRace(err) || attempt >= 20 {
			return nil, 0, fmt.Errorf("queue: update status %s: %w", jobID, err)
		}
	}
}

// Transition moves a job to state `to` through the state machine, then applies f.
func (ss *Statuses) Transition(ctx context.Context, jobID string, to job.State, f func(*job.Status)) (*job.Status, error) {
	s, _, err := ss.TransitionFrom(ctx, jobID, Known{}, to, f)
	return s, err
}

// TransitionFrom is Transition starting from a status the caller knows
// (see Known); it returns the new status and its revision.
func (ss *Statuses) TransitionFrom(ctx context.Context, jobID string, known Known, to job.State, f func(*job.Status)) (*job.Status, uint64, error) {
	return ss.updateStatus(ctx, jobID, known, transition(to, f))
}

// TransitionIf is Transition applied only while ok holds for the job's
// current status (read again on every compare-and-set retry); when it does
// not, nothing is written, the error is ErrConflict and the status returned
// is the one read.
func (ss *Statuses) TransitionIf(ctx context.Context, jobID string, ok func(*job.Status) bool, to job.State, f func(*job.Status)) (*job.Status, error) {
	move := transition(to, f)
	s, _, err := ss.updateStatus(ctx, jobID, Known{}, func(s *job.Status) error {
		if !ok(s) {
			return fmt.Errorf("%w: job %s is %s", ErrConflict, jobID, s.State)
		}
		return move(s)
	})
	return s, err
}

// transition is the update that moves a status to `to` through the state
// machine, then applies f (may be nil).
func transition(to job.State, f func(*job.Status)) func(*job.Status) error {
	return func(s *job.Status) error {
		if err := job.CheckTransition(s.State, to); err != nil {
			return err
		}
		s.State = to
		if f != nil {
			f(s)
		}
		return nil
	}
}

// SweepIndex deletes the entries by creation of jobs whose status expired
// (see Config.StatusRetention): the entries older than the retention, oldest
// first, whose status is gone. It stops at the first entry younger than the
// retention, so its cost is the expired jobs' and the old jobs still kept
// (paused or running for longer than the retention). Ingest runs it from
// time to time; it returns how many entries it deleted.
func (ss *Statuses) SweepIndex(ctx context.Context) (int, error) {
	if ss.retention <= 0 {
		return 0, nil
	}
	cutoff := time.Now().Add(-ss.retention)
	deleted := 0
	for after := uint64(0); ; {
		entries, more, err := ss.index.entries(ctx, indexCreated, after, 500)
		if err != nil || len(entries) == 0 {
			return deleted, err
		}
		ids := make([]string, 0, len(entries))
		for _, e := range entries {
			if e.time.After(cutoff) {
				break
			}
			ids = append(ids, e.jobID)
		}
		if len(ids) == 0 {
			return deleted, nil
		}
		statuses, err := ss.many(ctx, ids)
		if err != nil {
			return deleted, err
		}
		for _, e := range entries[:len(ids)] {
			if s := statuses[e.jobID]; s == nil || s.LogSeq != e.seq {
				ss.index.remove(ctx, e.seq)
				deleted++
			}
		}
		if len(ids) < len(entries) || !more {
			return deleted, nil
		}
		after = entries[len(entries)-1].seq
	}
}

// Reindex gives every status written before the job index existed its
// index entries (by creation in the order met, and in its state): the
// upgrade of a deployment whose statuses predate the index. It reads the
// bucket in one pass and writes only the statuses that need it; running it
// again, or from two ingest replicas at once, is harmless. It returns how
// many statuses it indexed.
func (ss *Statuses) Reindex(ctx context.Context) (int, error) {
	w, err := ss.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return 0, err
	}
	defer func() { _ = w.Stop() }()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case e := <-w.Updates():
			if e == nil { // the replay of current values is done
				return n, nil
			}
			s, err := job.UnmarshalStatus(e.Value())
			if err != nil || s.LogSeq != 0 && s.IndexSeq != 0 {
				continue
			}
			if _, _, err := ss.updateStatus(ctx, e.Key(), Known{Status: s, Rev: e.Revision()}, func(*job.Status) error { return nil }); err != nil {
				return n, err
			}
			n++
		}
	}
}

// oldestUnindexed reports whether the oldest status in the bucket has no
// index entries: one written before the job index existed. Such statuses
// are the oldest, since every later write of a status gives it its entries
// (indexEntries) and moves it to the end of the bucket's stream, Reindex's
// among them; so the first status in the stream says whether any is
// left. It reads from the start of the stream, past the markers of
// statuses that expired (at most a minute's worth, LimitMarkerTTL), and
// answers true past oldestReadBudget of them, where it cannot tell.
func (ss *Statuses) oldestUnindexed(ctx context.Context) (bool, error) {
	const batch = 16
	stream := "KV_" + StatusBucket
	for after, read := uint64(0), 0; read < oldestReadBudget; {
		// No subject filter (the stream holds the bucket's subjects only):
		// the server then counts what is pending from the stream's first
		// sequence in constant time, where a filter has it match every key.
		msgs, pending, err := directBatch(ctx, ss.js.Conn(), stream, map[string]any{"seq": after + 1, "batch": batch}, batch)
		if err != nil {
			return false, err
		}
		for _, m := range msgs {
			after, _ = strconv.ParseUint(ServerHeader(m.Header, jetstream.SequenceHeader), 10, 64)
			read++
			if deletion(m.Header) || m.Header.Get(jetstream.MarkerReasonHeader) != "" || len(m.Data) == 0 {
				continue // an expired status's marker
			}
			s, err := job.UnmarshalStatus(m.Data)
			if err != nil {
				return false, err
			}
			return s.LogSeq == 0 || s.IndexSeq == 0, nil
		}
		if pending == 0 || len(msgs) == 0 || after == 0 {
			return false, nil // markers alone
		}
	}
	return true, nil
}

// oldestReadBudget bounds the messages oldestUnindexed reads.
const oldestReadBudget = 10_000

// SigningJob returns the job while a worker may be processing it: running,
// or unfinished with a cancel pending (aborting its multipart upload takes
// the session's credentials); otherwise an error wrapping job.ErrNotActive.
// The signature service signs only for such a job.
func (ss *Statuses) SigningJob(ctx context.Context, jobID string) (*job.Job, error) {
	s, _, err := ss.Get(ctx, jobID)
	if err == nil && s.State == job.StateRunning {
		return &s.Job, nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	// A replicated bucket's reads may be answered by a replica that has not
	// seen the worker's latest write yet: ask the leader before refusing.
	if s, _, err = ss.leaderStatus(ctx, jobID); errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", job.ErrNotActive, err)
	} else if err != nil {
		return nil, err
	}
	if s.State == job.StateRunning {
		return &s.Job, nil
	}
	if !s.State.Terminal() {
		if c, err := ss.control.Get(ctx, jobID); err != nil {
			return nil, err
		} else if c == job.ControlCancel {
			return &s.Job, nil
		}
	}
	return nil, fmt.Errorf("%w: job %s is %s", job.ErrNotActive, jobID, s.State)
}

// leaderStatus reads a job's status and its revision through the status
// stream's leader (the JetStream message-get API), never from a lagging
// replica.
func (ss *Statuses) leaderStatus(ctx context.Context, jobID string) (*job.Status, uint64, error) {
	c, err := lastFromLeader(ctx, ss.js.Conn(), StatusBucket, jobID)
	switch {
	case err != nil:
		return nil, 0, fmt.Errorf("queue: status %s: %w", jobID, err)
	case c.Deleted:
		return nil, 0, fmt.Errorf("%w: job %s", ErrNotFound, jobID)
	}
	s, err := job.UnmarshalStatus(c.Value)
	return s, c.seq, err
}

// Complete records a job's commit: the FileId → job mapping and the
// transition to completed (from known, see TransitionFrom), the two writes
// in flight together. The mapping's failure is returned only when the
// status was written (a caller retrying then writes both again).
func (ss *Statuses) Complete(ctx context.Context, jobID string, known Known, fileID string, f func(*job.Status)) error {
	rec := make(chan error, 1)
	go func() { rec <- ss.files.Record(ctx, fileID, jobID) }()
	_, _, err := ss.TransitionFrom(ctx, jobID, known, job.StateCompleted, f)
	if rerr := <-rec; err == nil {
		err = rerr
	}
	return err
}

// StrayGrace is how old an index entry must be before a sweep may judge it
// a crash's stray: an entry is written before the status that points at
// it, and a status write still in flight that long has long timed out.
const StrayGrace = 10 * time.Minute

// StrayCursor is where SweepStrays goes on from on each subject of the
// index; its zero value starts from the oldest entries.
type StrayCursor struct{ after map[string]uint64 }

// SweepStrays deletes index entries that no status points at and that are
// older than grace: those a process left when it died between writing an
// entry and the status (an ingest before a status's creation, a worker
// before a transition), and those whose removal after a transition was
// lost. Listings skip such entries, but per-state counts (Counts) include
// them until they go, so a worker crash left "running" one higher. It reads
// at most budget entries, going on from cur on every subject in turn and
// starting a subject over at its oldest entry when it meets its end or an
// entry younger than grace, so its cost per call is bounded whatever the
// number of jobs, and every stray goes within a few rounds of all entries.
// It returns how many entries it deleted.
func (ss *Statuses) SweepStrays(ctx context.Context, cur *StrayCursor, budget int, grace time.Duration) (int, error) {
	if cur.after == nil {
		cur.after = map[string]uint64{}
	}
	subjects := []job.State{""}
	subjects = append(subjects, job.States()...)
	cutoff := time.Now().Add(-grace)
	deleted := 0
	per := max(budget/len(subjects), 1)
	for _, state := range subjects {
		subject := indexSubject(state)
		for left := per; left > 0; {
			entries, more, err := ss.index.entries(ctx, subject, cur.after[subject], min(left, 500))
			if err != nil {
				return deleted, err
			}
			left -= len(entries)
			ids := make([]string, 0, len(entries))
			for _, e := range entries {
				if e.time.After(cutoff) {
					break
				}
				ids = append(ids, e.jobID)
			}
			if len(ids) > 0 {
				statuses, err := ss.many(ctx, ids)
				if err != nil {
					return deleted, err
				}
				for _, e := range entries[:len(ids)] {
					stray, err := ss.isStray(ctx, statuses[e.jobID], state, e)
					if err != nil {
						return deleted, err
					}
					if stray {
						ss.index.remove(ctx, e.seq)
						deleted++
					}
					cur.after[subject] = e.seq
				}
			}
			if len(ids) < len(entries) || !more || len(entries) == 0 {
				cur.after[subject] = 0 // the end, or the young entries: start over next time
				break
			}
		}
	}
	return deleted, nil
}

// isStray judges an aged entry e of state's subject given its job's status
// s as a batched read found it (nil: none). An entry the status has moved
// past is stale (entries are written before the status that points at
// them, so a status only moves forward). One the status does not point at
// yet, or of a job with no status, may only look so to a replica that has
// not seen the latest write: the stream's leader decides.
func (ss *Statuses) isStray(ctx context.Context, s *job.Status, state job.State, e indexEntry) (bool, error) {
	if s != nil && e.seq < entryOf(s, state) {
		return true, nil
	}
	if s != nil && pointsAt(s, state, e.seq) {
		return false, nil
	}
	if s == nil && ss.expiredEntry(e) {
		return true, nil // an expired job's: no status to ask the leader for
	}
	s, _, err := ss.leaderStatus(ctx, e.jobID)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return !pointsAt(s, state, e.seq), nil
}

// entryOf is the sequence of the entry s points at on state's subject ("":
// the entries by creation; otherwise its current state's entry).
func entryOf(s *job.Status, state job.State) uint64 {
	if state == "" {
		return s.LogSeq
	}
	return s.IndexSeq
}

// pointsAt reports whether s points at the entry seq of the subject of
// state ("" the entries by creation).
func pointsAt(s *job.Status, state job.State, seq uint64) bool {
	return entryOf(s, state) == seq && (state == "" || s.State == state)
}
