package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/retry"
)

// A bucket followed without a consumer. A key-value watch is a push
// consumer, and nats-server does not check a push consumer's deliver
// subject against its creator's rights (nats-io/nats-server#8274): a user
// that may create one can have the server deliver a stream's messages on
// any subject of the account, the jobs subject among them. So the services
// that only need a bucket's values follow it without one: a key-value write
// is a message on $KV.<bucket>.<key>, to which they subscribe, and the
// current values come from batched direct gets.
//
// A write reaches such subscribers as it is published: stored or refused
// (a compare-and-set another write came first to), and, across NATS
// servers, not always in the order the stream stored it. A bucket with a
// RePublish (FollowRepublished) is followed through that instead: the
// stream's leader publishes each write again once stored, in stream order,
// with its sequence.

// KVChange is one key's value, or its deletion.
type KVChange struct {
	Key     string
	Value   []byte
	Deleted bool
	// conditional: the write was made on a condition (a compare-and-set on
	// the key's last sequence, expect). A subscriber gets such a write as
	// it is published, whether or not JetStream stores it.
	conditional bool
	expect      uint64
	live        bool   // seen as it was published, not read from the stream
	seq         uint64 // the entry's stream sequence, when read or republished (0: unknown)
	republished bool   // published again by the bucket's RePublish: stored
}

// A FollowOption changes how Follow follows.
type FollowOption func(*followOptions)

type followOptions struct {
	settleOver  func(value []byte) bool
	republished string // where the bucket's RePublish publishes its writes ("" for none)
	// wait and recheck: when the leader is asked about a write whose
	// republish did not come (republishWait, freshFor).
	wait, recheck time.Duration
	// settled, if set, learns of each key settled with the leader for
	// want of a republish, and whether that changed the view, before the
	// change applies (tests).
	settled func(key string, applied bool)
}

// FollowRepublished has Follow apply the bucket's writes as its RePublish
// publishes them again under prefix (Destination without its ">"): only
// the stored ones, in the order stored. A write seen as published whose
// republish has not come within republishWait is asked of the stream's
// leader (refused, it changes nothing); when the leader has it stored,
// the RePublish is off (an ingest older than 0.10 set the bucket up
// without it, or lacks the right to the subjects) and Follow applies the
// writes as published from then on, as without this option, until a
// republished one comes again.
func FollowRepublished(prefix string) FollowOption {
	return func(o *followOptions) { o.republished = prefix }
}

// republishWait is how long Follow waits for the republish of a write it
// saw published (see FollowRepublished); the leader republishes a write
// as it stores it, so within milliseconds.
const republishWait = time.Second

// goneFor is how long Follow remembers the sequence of a key's deletion,
// so that an older value (a lagging replica's read) does not bring the key
// back.
const goneFor = 10 * time.Minute

// streamInfo tells whether bucket's stream republishes its writes under
// prefix, and when the stream was created, as its leader answers
// (STREAM.INFO).
func streamInfo(ctx context.Context, nc *nats.Conn, bucket, prefix string) (bool, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO.KV_"+bucket, nil)
	if err != nil {
		return false, time.Time{}, fmt.Errorf("queue: %s: %w", bucket, err)
	}
	var resp struct {
		Config struct {
			RePublish *jetstream.RePublish `json:"republish"`
		} `json:"config"`
		Created time.Time           `json:"created"`
		Error   *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return false, time.Time{}, fmt.Errorf("queue: %s: %w", bucket, err)
	}
	if resp.Error != nil {
		return false, time.Time{}, fmt.Errorf("queue: %s: %w", bucket, resp.Error)
	}
	rp := resp.Config.RePublish
	return rp != nil && rp.Source == "$KV."+bucket+".>" && rp.Destination == prefix+">" && !rp.HeadersOnly, resp.Created, nil
}

// FollowSettlingWritesOver has Follow make sure of a conditional write (a
// compare-and-set put or delete) to a key whose value it holds and keep
// reports as one not to lose, before it applies it: JetStream may have
// refused the write (another came first), and subscribers get it all the
// same. It asks the stream's leader what the key holds once the leader
// has dealt with the write, and applies that; when the leader cannot say,
// it keeps the value. Followers of the control bucket keep a cancel so (a
// resume racing a cancel would otherwise take it out of their view).
func FollowSettlingWritesOver(keep func(value []byte) bool) FollowOption {
	return func(o *followOptions) { o.settleOver = keep }
}

// settle returns what a conditional write seen as it was published (c)
// stands for: the key's entry at the stream's leader once the leader has
// dealt with the write (its last sequence is no longer the one the write
// expected; a sequence only grows). It asks for about a second at most,
// and reports false when the leader did not say by then.
func settle(ctx context.Context, nc *nats.Conn, bucket string, c KVChange) (KVChange, bool) {
	wait := time.Millisecond
	for range 10 {
		last, err := lastFromLeader(ctx, nc, bucket, c.Key)
		if err != nil {
			return c, false
		}
		if last.seq != c.expect {
			return last, true
		}
		// Not dealt with yet: the subscriber got the write before the stream.
		if !retry.Sleep(ctx, wait) {
			return c, false
		}
		wait *= 2
	}
	return c, false
}

// freshFor is how recently a key must have been applied for Follow to keep
// it when a read after a reconnect misses it, without asking the leader: a
// write a subscriber got may not be stored yet.
const freshFor = 5 * time.Second

// followInterval is how often a follower checks whether its connection
// was re-established, which may have lost messages: it then reads the
// current values again.
const followInterval = 2 * time.Second

// Follow calls apply with every key's current value in bucket, then calls
// loaded, then calls apply with every change until ctx ends. Changes made
// while it reads the current values are applied after them, in the order
// published, so the view ends at the latest value of each key. After a
// reconnect it reads the current values again; a key it has a value of
// that the read no longer has (its deletion missed and its marker purged
// since, see SweepBucket, or the read answered by a lagging replica) is
// asked of the stream's leader, and applied as it says (as deleted when it
// has no such key), unless it was applied within freshFor. With
// FollowRepublished the changes come from the bucket's RePublish, and a
// value read or republished never replaces a newer one held. apply is never
// called concurrently. It returns an error only if the first read fails
// for good (or ctx ends before it succeeds).
func Follow(ctx context.Context, nc *nats.Conn, bucket string, apply func(KVChange), loaded func(), opts ...FollowOption) error {
	var o followOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.wait == 0 {
		o.wait = republishWait
	}
	if o.recheck == 0 {
		o.recheck = freshFor
	}
	type held struct {
		value []byte
		at    time.Time // when applied, if seen as it was published
		seq   uint64    // its stream sequence, if known
	}
	type marker struct {
		seq uint64    // the deletion's stream sequence
		at  time.Time // when applied
	}
	// With a RePublish, a write seen as published waits for its republish.
	type wait struct {
		since time.Time // the last such write to the key
		n     int       // such writes whose republish has not come
		asked bool      // the leader was asked once already
	}
	var (
		mu        sync.Mutex
		buffering = true
		buffer    []KVChange
		present   = map[string]held{}   // the keys whose last change applied is a value
		gone      = map[string]marker{} // the keys deleted within goneFor, by a stored deletion
		pending   = map[string]*wait{}
		// direct: the bucket has no RePublish (onto o.republished): its
		// writes apply as published.
		direct bool
		// suspect: a republish came older than the value held, which only
		// a stream created anew explains (or a former leader's late one);
		// reload: the main loop reads the bucket again.
		suspect, reload atomic.Bool
		// lastRepublished is the sequence of the last republish seen (0:
		// none since the last read). Every write the stream stores is
		// republished, so they come one sequence after another: one that
		// skips some tells of republishes lost, which a connection that
		// stayed open through a partition (no reconnect, so no new read)
		// loses without a trace; the bucket is read again.
		lastRepublished uint64
		// verifyFrom: the view is not known to hold every write stored
		// from this sequence on (0: it is). A read of the bucket may come
		// from a replica that lags (just restarted, or cut off from its
		// peers while this connection stayed up), and the republishes of
		// what it lacks were made before this follower subscribed: with
		// no later write nothing else would tell. The rest is read from
		// the stream's leader (verify), at verifyAt, after tries failed.
		verifyFrom  uint64
		verifyAt    time.Time
		verifyTries int
		// reverify: the view is to be verified once more, a while after
		// the leader first said it was whole: a stream leader cut off
		// from its peers answers for some seconds before it steps down,
		// with only what it had stored (a new leader takes writes
		// meanwhile).
		reverify bool
		// unreached: the server refused this user the republishes (the
		// NATS rights of 0.9, not yet those of the upgrade): writes apply
		// as published, as in 0.9, rather than wait for republishes never
		// coming, until a republish comes after all (rights granted).
		unreached bool
	)
	track := func(c KVChange) {
		if h, ok := present[c.Key]; ok && c.conditional && o.settleOver != nil && o.settleOver(h.value) {
			var settled bool
			if c, settled = settle(ctx, nc, bucket, c); !settled {
				return // the value held stays
			}
		}
		switch {
		case c.Deleted:
			delete(present, c.Key)
			if c.seq != 0 && o.republished != "" { // pruned by settlePending, which runs only then
				gone[c.Key] = marker{c.seq, time.Now()}
			}
		case c.live:
			present[c.Key] = held{value: c.Value, at: time.Now()}
		default: // read from the stream or republished: stored
			present[c.Key] = held{value: c.Value, seq: c.seq}
		}
		if !c.Deleted {
			delete(gone, c.Key)
		}
		apply(c)
	}
	// heldSeq is the stream sequence of what the view holds of key: its
	// value's, or its deletion's while remembered (0: unknown, or nothing).
	heldSeq := func(key string) uint64 {
		if h, ok := present[key]; ok {
			return h.seq
		}
		return gone[key].seq
	}
	// older tells whether stored change c is older than, or the same as,
	// what the view holds of its key (a lagging replica's read).
	older := func(c KVChange) bool {
		h := heldSeq(c.Key)
		return c.seq != 0 && h != 0 && c.seq <= h
	}
	// see takes a change in (mu held, not buffering).
	see := func(c KVChange) {
		switch {
		case o.republished == "" || c.live && direct:
			delete(pending, c.Key) // applied as published: no asking the leader later
			track(c)
		case c.live: // its republish, if stored, applies it
			w := pending[c.Key]
			if w == nil {
				w = &wait{}
				pending[c.Key] = w
			}
			w.since, w.n, w.asked = time.Now(), w.n+1, false
		default:
			if c.republished {
				if lastRepublished != 0 && c.seq > lastRepublished+1 {
					reload.Store(true)
				}
				lastRepublished = max(lastRepublished, c.seq)
				if w := pending[c.Key]; w != nil {
					if w.n--; w.n <= 0 {
						delete(pending, c.Key)
					}
				}
				direct, unreached = false, false
			}
			if !older(c) {
				track(c)
			} else if c.republished && heldSeq(c.Key) != c.seq { // not the entry itself, which the leader's answer brought first
				suspect.Store(true)
			}
		}
	}
	take := func(c KVChange) {
		mu.Lock()
		defer mu.Unlock()
		if buffering {
			buffer = append(buffer, c)
			return
		}
		see(c)
	}
	sub, err := changes(nc, bucket, ">", take)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if o.republished != "" {
		before := nc.LastError()
		rsub, err := changesOn(nc, bucket, o.republished, ">", take)
		if err != nil {
			return err
		}
		defer func() { _ = rsub.Unsubscribe() }()
		if refusedSubscription(nc, before, o.republished+">") {
			mu.Lock()
			unreached, direct = true, true
			mu.Unlock()
		}
	}
	// checkStream sets direct from the bucket's stream configuration, as
	// its leader answers, and tells whether the stream was created anew
	// since the last look (its sequences start again: the sequences held
	// are forgotten, and the bucket must be read again); ok is false when
	// the leader did not answer (nothing changes). Unknown before, the
	// creation counts as anew when suspected.
	var (
		created time.Time
		known   bool
	)
	checkStream := func(suspected bool) (anew, ok bool) {
		on, at, err := streamInfo(ctx, nc, bucket, o.republished)
		if err != nil {
			return false, false
		}
		mu.Lock()
		defer mu.Unlock()
		direct = o.republished != "" && (!on || unreached)
		if anew = known && !at.Equal(created) || !known && suspected; anew {
			for k, h := range present {
				h.seq = 0
				present[k] = h
			}
			clear(gone)
		}
		created, known = at, true
		return anew, true
	}
	// same tells whether the view holds the same of key k as before (h,
	// held: present[k] then).
	same := func(k string, h held, isHeld bool) bool {
		h2, isHeld2 := present[k]
		return isHeld == isHeld2 && h.seq == h2.seq && bytes.Equal(h.value, h2.value)
	}
	// settlePending asks the leader about keys written as seen published
	// whose republish has not come: after o.wait, and once more after
	// o.recheck (such a write may not have been stored yet). The leader's
	// entry applies when the view lacks it (a republish lost, or none
	// made: the bucket's RePublish is off, which its configuration, read
	// first, then tells); a refused write changes nothing.
	settlePending := func() {
		const most = 100 // keys asked about a tick
		mu.Lock()
		now := time.Now()
		for k, g := range gone {
			if now.Sub(g.at) > goneFor {
				delete(gone, k)
			}
		}
		type ask struct {
			key    string
			h      held // the view's when asked
			isHeld bool
		}
		var due []ask
		for k, w := range pending {
			if since := now.Sub(w.since); since >= o.wait && (!w.asked || since >= o.recheck) && len(due) < most {
				h, isHeld := present[k]
				due = append(due, ask{k, h, isHeld})
			}
		}
		mu.Unlock()
		checked := false
		for _, a := range due {
			k, h, isHeld := a.key, a.h, a.isHeld
			c, err := lastFromLeader(ctx, nc, bucket, k)
			if err != nil {
				break // no leader to answer: the next tick asks again
			}
			var lacks bool
			switch {
			case c.Deleted:
				lacks = isHeld && (c.seq == 0 && h.seq == 0 || c.seq != 0 && (h.seq == 0 || c.seq > h.seq))
			case isHeld:
				lacks = h.seq == 0 && !bytes.Equal(h.value, c.Value) || h.seq != 0 && c.seq > h.seq
			default:
				mu.Lock()
				lacks = !older(c)
				mu.Unlock()
			}
			if lacks && !checked {
				// Stored, and no republish brought it: lost, or the
				// bucket has no RePublish (then the writes after it
				// apply as published). Known before it applies.
				checked = true
				if anew, _ := checkStream(false); anew {
					reload.Store(true)
				}
			}
			mu.Lock()
			w, ok := pending[k]
			if !ok || now.Sub(w.since) < o.wait || !same(k, h, isHeld) {
				// Its republish came, a newer write, or the view
				// changed meanwhile: the answer may be older than the
				// view. Asked again if still pending.
				mu.Unlock()
				continue
			}
			done := lacks || w.asked
			if done {
				delete(pending, k)
			} else {
				w.asked = true
			}
			if o.settled != nil && done {
				o.settled(k, lacks)
			}
			if lacks || isHeld && h.seq == 0 && !c.Deleted {
				track(c)
			}
			mu.Unlock()
		}
		if suspect.Swap(false) {
			anew, ok := checkStream(true)
			if !ok {
				suspect.Store(true) // asked again at the next tick
			}
			if anew {
				reload.Store(true)
			}
		}
	}
	prefix := "$KV." + bucket + "."
	load := func() (leader bool, err error) {
		mu.Lock()
		buffering, buffer, lastRepublished, verifyFrom = true, nil, 0, 0
		mu.Unlock()
		_, leader = checkStream(false)
		read := map[string]bool{} // of the keys present: those read
		var through uint64        // the highest sequence read
		err = Scan(ctx, nc, "KV_"+bucket, prefix+">", func(m *nats.Msg) {
			c := storedChange(m, prefix)
			mu.Lock()
			defer mu.Unlock()
			through = max(through, c.seq)
			if _, ok := present[c.Key]; ok || !c.Deleted {
				read[c.Key] = true
			}
			if !older(c) { // else held already, or newer (a lagging replica answered)
				track(c)
			}
		})
		var missed []string // held, not read: asked of the leader
		mu.Lock()
		if err == nil {
			changed := map[string]bool{}
			for _, c := range buffer {
				changed[c.Key] = true
			}
			for k, h := range present {
				if read[k] || changed[k] || time.Since(h.at) < freshFor {
					continue // a change seen meanwhile is applied below; a fresh one may not be stored yet
				}
				missed = append(missed, k)
			}
		}
		mu.Unlock()
		// Asked without holding mu (changes seen meanwhile are buffered);
		// unanswered, a key is kept as before the read.
		answers := make([]KVChange, 0, len(missed))
		for _, k := range missed {
			c, err := lastFromLeader(ctx, nc, bucket, k)
			if err != nil {
				break
			}
			answers = append(answers, c)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, c := range answers {
			track(c)
		}
		if err == nil && o.republished != "" && !direct {
			// Every write stored after the read is republished, the
			// first one sequence after it: one that skips some tells
			// that the read lacked them. The leader is asked for them
			// too, for the case of no later write.
			lastRepublished = through
			verifyFrom, verifyAt, verifyTries, reverify = through+1, time.Now(), 0, true
		}
		// On an error the changes seen meanwhile still apply; the next
		// check reads the current values again.
		for _, c := range buffer {
			see(c)
		}
		buffering, buffer = false, nil
		return leader, err
	}
	// verify reads the writes stored after the view's last known sequence
	// from the stream's leader, a bounded number a call, and applies those
	// the view lacks, until the leader has none after it: then the view is
	// known whole. When the leader cannot answer (cut off, or not allowed
	// to be asked: 0.9's NATS configuration), it is asked again later, less
	// and less often.
	verify := func() {
		const most = 256 // entries read a call
		for range most {
			mu.Lock()
			if verifyFrom != 0 && direct {
				// Writes apply as published now (held without their
				// sequences, which older cannot weigh): nothing to verify.
				verifyFrom = 0
			}
			if verifyFrom == 0 || time.Now().Before(verifyAt) {
				mu.Unlock()
				return
			}
			from := max(verifyFrom, lastRepublished+1) // republished since: one after another, or the bucket is read again
			mu.Unlock()
			c, found, err := nextFromLeader(ctx, nc, bucket, from)
			mu.Lock()
			switch {
			case err != nil:
				verifyTries++
				verifyAt = time.Now().Add(verifyBackoff(verifyTries))
			case !found && reverify:
				reverify, verifyFrom, verifyAt = false, from, time.Now().Add(reverifyAfter)
			case !found:
				verifyFrom = 0
			default:
				if !older(c) {
					track(c)
				}
				verifyFrom = c.seq + 1
				lastRepublished = max(lastRepublished, c.seq)
			}
			done := err != nil || !found
			mu.Unlock()
			if done {
				return
			}
		}
	}
	reconnects := nc.Stats().Reconnects
	// The first read is tried again while JetStream is not ready (a stream
	// leader being elected, a node cut off): a service starting meanwhile
	// waits rather than ending.
	for b := retry.Request.New(); ; {
		leader, err := load()
		if err == nil {
			if leader { // else asked later, not holding up the start
				verify()
			}
			break
		}
		if !NotReady(err) || !retry.Sleep(ctx, b.NextBackOff()) {
			return err
		}
	}
	loaded()
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	var settleTick <-chan time.Time
	if o.republished != "" {
		t := time.NewTicker(o.wait / 4)
		defer t.Stop()
		settleTick = t.C
	}
	failed := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-settleTick:
			settlePending()
			verify()
			continue
		case <-tick.C:
		}
		if r := nc.Stats().Reconnects; r != reconnects || failed || reload.Swap(false) {
			reconnects = r
			_, err := load()
			failed = err != nil
		}
	}
}

// verifyBackoff is the wait before a follower asks the stream's leader
// again after tries failed: 2 s, 4 s, ... a minute at most.
func verifyBackoff(tries int) time.Duration {
	if tries >= 6 {
		return time.Minute
	}
	return time.Second << tries
}

// reverifyAfter is how long after the leader first said a follower's view
// was whole that it is asked once more: longer than a stream leader cut
// off from its peers goes on answering before it steps down (10 s).
const reverifyAfter = 30 * time.Second

// refusedSubscription tells whether the server refused nc's subscription
// to subject: it sends the permissions violation before it answers the
// flush that followed the subscription, so the connection's last error is
// then that violation (not before, the last error until then).
func refusedSubscription(nc *nats.Conn, before error, subject string) bool {
	err := nc.LastError()
	return err != nil && err != before && errors.Is(err, nats.ErrPermissionViolation) &&
		strings.Contains(strings.ToLower(err.Error()), strings.ToLower(`subscription to "`+subject+`"`))
}

// changes subscribes to the changes of key (">" for every key) in bucket
// and calls apply for each, in order, from the subscription's goroutine.
// It never drops one for a slow apply. The subscription is in place when
// it returns (the server has it), so a change published after that is seen.
func changes(nc *nats.Conn, bucket, key string, apply func(KVChange)) (*nats.Subscription, error) {
	return changesOn(nc, bucket, "$KV."+bucket+".", key, apply)
}

// changesOn is changes on the subjects under prefix where the bucket's
// writes are published (its own, or those of its RePublish).
func changesOn(nc *nats.Conn, bucket, prefix, key string, apply func(KVChange)) (*nats.Subscription, error) {
	republished := prefix != "$KV."+bucket+"."
	sub, err := nc.Subscribe(prefix+key, func(m *nats.Msg) {
		c := KVChange{Key: strings.TrimPrefix(m.Subject, prefix), Value: m.Data, Deleted: deletion(m.Header), live: true}
		if republished {
			// Stored: the republish keeps the write's headers and adds the
			// stream's (its sequence among them).
			c.live, c.republished = false, true
			c.seq, _ = strconv.ParseUint(ServerHeader(m.Header, jetstream.SequenceHeader), 10, 64)
		} else if e := m.Header.Get(jetstream.ExpectedLastSubjSeqHeader); e != "" {
			c.expect, _ = strconv.ParseUint(e, 10, 64)
			c.conditional = true
		}
		apply(c)
	})
	if err == nil {
		err = sub.SetPendingLimits(-1, -1)
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		if sub != nil {
			_ = sub.Unsubscribe()
		}
		return nil, fmt.Errorf("queue: follow %s: %w", bucket, err)
	}
	return sub, nil
}

// lastFromLeader reads key's last entry in bucket from the stream's leader
// (the message-get API; a direct get may come from a lagging replica): its
// value, or its deletion when its last entry is a marker or it has none,
// with the entry's sequence (seq; 0: none).
func lastFromLeader(ctx context.Context, nc *nats.Conn, bucket, key string) (KVChange, error) {
	c, found, err := leaderGet(ctx, nc, bucket, map[string]any{"last_by_subj": "$KV." + bucket + "." + key})
	switch {
	case err != nil:
		return KVChange{}, fmt.Errorf("queue: %s %s: %w", bucket, key, err)
	case !found:
		return KVChange{Key: key, Deleted: true}, nil
	}
	return c, nil
}

// nextFromLeader reads the first entry of bucket stored at or after
// sequence seq, of any key, from the stream's leader; found is false when
// the leader has none.
func nextFromLeader(ctx context.Context, nc *nats.Conn, bucket string, seq uint64) (c KVChange, found bool, err error) {
	c, found, err = leaderGet(ctx, nc, bucket, map[string]any{"seq": seq, "next_by_subj": "$KV." + bucket + ".>"})
	if err != nil {
		return KVChange{}, false, fmt.Errorf("queue: %s from %d: %w", bucket, seq, err)
	}
	return c, found, nil
}

// leaderGet asks bucket's stream leader for the entry req names (a
// message-get request) and returns it as the change it stands for (a
// deletion for a marker); found is false when there is none.
func leaderGet(ctx context.Context, nc *nats.Conn, bucket string, req map[string]any) (KVChange, bool, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return KVChange{}, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+bucket, body)
	if err != nil {
		return KVChange{}, false, err
	}
	var resp struct {
		Message *struct {
			Subject string `json:"subject"`
			Seq     uint64 `json:"seq"`
			Header  []byte `json:"hdrs"`
			Data    []byte `json:"data"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return KVChange{}, false, err
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound, resp.Error == nil && resp.Message == nil:
		return KVChange{}, false, nil
	case resp.Error != nil:
		return KVChange{}, false, resp.Error
	}
	msg := resp.Message
	c := KVChange{Key: strings.TrimPrefix(msg.Subject, "$KV."+bucket+"."), Value: msg.Data, seq: msg.Seq}
	if len(msg.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(msg.Header)
		if err != nil {
			return KVChange{}, false, err
		}
		c.Deleted = deletion(h)
	}
	if len(c.Value) == 0 { // a marker
		c.Deleted, c.Value = true, nil
	}
	return c, true, nil
}

// storedChange is the change a key-value entry read from the stream (a
// direct get, with its subject in a header) stands for; prefix is the
// bucket's subject prefix.
func storedChange(m *nats.Msg, prefix string) KVChange {
	seq, _ := strconv.ParseUint(ServerHeader(m.Header, jetstream.SequenceHeader), 10, 64)
	return KVChange{Key: strings.TrimPrefix(ServerHeader(m.Header, jetstream.SubjectHeader), prefix), Value: m.Data, Deleted: deletion(m.Header), seq: seq}
}

// ServerHeader is the value the NATS server gave header key (Nats-Sequence,
// Nats-Subject, Nats-Time-Stamp, ...) of a message it answered a direct get
// with or republished: the last one. The server appends its own to the
// headers the message was published with, so the first would be the
// writer's if it set one itself, and a writer could then have the message
// read as another key's, at another sequence (a follower would hold it as
// newer than every later write; a sweep would purge another key up to it).
func ServerHeader(h nats.Header, key string) string {
	v := h.Values(key)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// deletion tells whether a key-value message deletes or purges its key.
func deletion(h nats.Header) bool {
	op := h.Get("KV-Operation")
	return op == "DEL" || op == "PURGE"
}

// ReadBucket reads every key's current value (and deletion marker) in
// bucket, a batch at a time, in the order written. It needs no consumer.
func ReadBucket(ctx context.Context, nc *nats.Conn, bucket string) ([]KVChange, error) {
	prefix := "$KV." + bucket + "."
	var out []KVChange
	err := Scan(ctx, nc, "KV_"+bucket, prefix+">", func(m *nats.Msg) {
		out = append(out, storedChange(m, prefix))
	})
	return out, err
}

// Scan calls fn with every message of stream on subjects matching filter,
// oldest first, read with batched direct gets (no consumer: the stream
// must allow direct gets). The message's own subject and sequence are in
// its Nats-Subject and Nats-Sequence headers.
func Scan(ctx context.Context, nc *nats.Conn, stream, filter string, fn func(*nats.Msg)) error {
	return scan(ctx, nc, stream, filter, map[string]any{"seq": 1}, func(m *nats.Msg) bool { fn(m); return true })
}

// ScanSince is Scan from the first message stored at or after since; fn
// returns false to stop.
func ScanSince(ctx context.Context, nc *nats.Conn, stream, filter string, since time.Time, fn func(*nats.Msg) bool) error {
	return scan(ctx, nc, stream, filter, map[string]any{"start_time": since.UTC()}, fn)
}

// scan reads from start (a direct get's "seq" or "start_time"), a batch at
// a time, until the stream has no more or fn returns false.
func scan(ctx context.Context, nc *nats.Conn, stream, filter string, start map[string]any, fn func(*nats.Msg) bool) error {
	const batch = 4096
	req := start
	for {
		req["batch"], req["next_by_subj"] = batch, filter
		msgs, pending, err := directBatch(ctx, nc, stream, req, batch)
		if err != nil {
			return err
		}
		var next uint64
		for _, m := range msgs {
			if !fn(m) {
				return nil
			}
			if s, err := strconv.ParseUint(ServerHeader(m.Header, jetstream.SequenceHeader), 10, 64); err == nil {
				next = s + 1
			}
		}
		if len(msgs) == 0 || pending == 0 || next == 0 {
			return nil
		}
		req = map[string]any{"seq": next}
	}
}
