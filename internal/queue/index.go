package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// The job index: a stream that lists jobs a page at a time, so that a
// listing costs the page it answers, not the jobs stored (the status
// bucket alone can only be read whole).
//
// Two kinds of entries, each a message whose payload is a job id:
//   - vodpipe.index.created, one per job, written when its status is
//     created: the stream's sequence orders jobs by creation;
//   - vodpipe.index.state.<state>, one per job and state it entered,
//     written each time its state changes.
//
// A status records the sequences of its two current entries (LogSeq,
// IndexSeq), and an entry counts only while its status points at it. An
// entry is written before the status that points at it, so a job is never
// missing from its state's list; the entry it leaves is deleted after the
// status moved on. A write that loses its compare-and-set deletes the entry
// it made, and a crash between the two writes leaves at most a stray entry,
// which listings skip (the status does not point at it) and delete, and
// ingest's sweep deletes once it is older than StrayGrace. So
// listings are correct under concurrent transitions and from any number of
// ingest replicas: the status decides, the index only finds candidates.
//
// Reads are JetStream batched direct gets: a page of entries after a
// sequence on one subject is one request, the statuses of the page one
// more (a multi-subject last-message get on the status bucket's stream;
// more again for statuses the server held back, see lastOfKeys).
// Counts per state are the stream's message counts per subject, one
// request for all states.
const (
	IndexStream  = "VODPIPE_INDEX"
	IndexPrefix  = "vodpipe.index"
	indexCreated = IndexPrefix + ".created"
	indexState   = IndexPrefix + ".state."
)

// Index is the job index stream.
type Index struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// indexSubject is the subject of the entries of jobs in state st, or of
// every job by creation when st is "".
func indexSubject(st job.State) string {
	if st == "" {
		return indexCreated
	}
	return indexState + string(st)
}

// add writes an entry and returns its sequence; ttl > 0 has it expire.
func (ix *Index) add(ctx context.Context, subject, jobID string, ttl time.Duration) (uint64, error) {
	var opts []jetstream.PublishOpt
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	ack, err := ix.js.Publish(ctx, subject, []byte(jobID), opts...)
	if err != nil {
		return 0, fmt.Errorf("queue: index %s: %w", jobID, err)
	}
	return ack.Sequence, nil
}

// remove deletes an entry the index no longer needs (best effort: a stray
// entry is skipped by listings).
func (ix *Index) remove(ctx context.Context, seq uint64) {
	if seq == 0 {
		return
	}
	_ = ix.stream.DeleteMsg(context.WithoutCancel(ctx), seq)
}

// indexEntry is one entry read back.
type indexEntry struct {
	seq   uint64
	jobID string
	time  time.Time // when it was written
}

// entries reads up to n entries on subject after sequence after, oldest
// first; more says whether the stream holds others beyond them.
func (ix *Index) entries(ctx context.Context, subject string, after uint64, n int) (out []indexEntry, more bool, err error) {
	req := map[string]any{"seq": after + 1, "next_by_subj": subject, "batch": n}
	msgs, pending, err := directBatch(ctx, ix.js.Conn(), IndexStream, req, n)
	if err != nil {
		return nil, false, err
	}
	for _, m := range msgs {
		seq, _ := strconv.ParseUint(ServerHeader(m.Header, jetstream.SequenceHeader), 10, 64)
		at, _ := time.Parse(time.RFC3339Nano, ServerHeader(m.Header, jetstream.TimeStampHeaer))
		out = append(out, indexEntry{seq: seq, jobID: string(m.Data), time: at})
	}
	return out, pending > 0, nil
}

// Counts returns how many jobs are in each state, and in all (key ""),
// from the index's message counts per subject: one request, whatever the
// number of jobs. An entry that a crash left behind counts until a listing
// meets and deletes it, or ingest's sweep does (Statuses.SweepStrays, within
// minutes of StrayGrace).
func (ix *Index) Counts(ctx context.Context) (map[job.State]uint64, error) {
	info, err := ix.stream.Info(ctx, jetstream.WithSubjectFilter(IndexPrefix+".>"))
	if err != nil {
		return nil, fmt.Errorf("queue: index counts: %w", err)
	}
	out := map[job.State]uint64{}
	for subj, n := range info.State.Subjects {
		switch {
		case subj == indexCreated:
			out[""] = n
		case strings.HasPrefix(subj, indexState):
			out[job.State(strings.TrimPrefix(subj, indexState))] = n
		}
	}
	return out, nil
}

// lastOfKeys calls f with the current entry of each of keys in bucket that
// has one and is not a deletion: one batched direct get per thousand keys
// (under the server's bound of a multi-subject read, 1024), and more when
// the server holds some back. It answers a multi-subject read only up to
// its max_pending bytes (64 MiB by default; a thousand statuses of jobs
// with long URLs and metadata are more) and says in the end-of-batch marker
// how many it held back: those keys are asked for again, until a read holds
// none back. So a key f was not called with has no entry (or a deletion),
// never one held back; callers delete index entries on that. An error
// leaves some keys unread: a caller must then conclude nothing from f's
// silence.
func lastOfKeys(ctx context.Context, nc *nats.Conn, bucket string, keys []string, f func(key string, rev uint64, value []byte) error) error {
	const chunk = 1000
	prefix := "$KV." + bucket + "."
	for start := 0; start < len(keys); start += chunk {
		part := keys[start:min(start+chunk, len(keys))]
		subjects := make([]string, len(part))
		for i, k := range part {
			subjects[i] = prefix + k
		}
		// The server sends at least one message per read (it stops once
		// past max_pending), so each read asks for fewer subjects than the
		// last and len(part) reads are enough.
		for reads := 0; len(subjects) > 0; reads++ {
			if reads == len(part) {
				return fmt.Errorf("queue: direct get %s: entries still held back after %d reads", "KV_"+bucket, reads)
			}
			msgs, pending, err := directBatch(ctx, nc, "KV_"+bucket, map[string]any{"multi_last": subjects, "batch": len(subjects)}, len(subjects))
			if err != nil {
				return err
			}
			for _, m := range msgs {
				subject := ServerHeader(m.Header, jetstream.SubjectHeader)
				if deletion(m.Header) || len(m.Data) == 0 {
					continue
				}
				rev, _ := strconv.ParseUint(ServerHeader(m.Header, jetstream.SequenceHeader), 10, 64)
				if err := f(strings.TrimPrefix(subject, prefix), rev, m.Data); err != nil {
					return err
				}
			}
			if pending == 0 {
				break
			}
			if len(msgs) == 0 {
				return fmt.Errorf("queue: direct get %s: %d entries held back, none sent", "KV_"+bucket, pending)
			}
			// Ask again for the subjects not answered: those held back,
			// and those with no entry, which the next read leaves out too.
			// (Only now is the set of answered ones built: a read that
			// holds nothing back, the rule, needs none.)
			got := make(map[string]bool, len(msgs))
			for _, m := range msgs {
				got[ServerHeader(m.Header, jetstream.SubjectHeader)] = true
			}
			subjects = slices.DeleteFunc(subjects, func(s string) bool { return got[s] })
		}
	}
	return nil
}

// directBatch sends a batched direct get of up to n messages to stream and
// collects them until the end-of-batch marker; pending is what the stream
// holds beyond them. A batch that finds nothing is empty, not an error.
func directBatch(ctx context.Context, nc *nats.Conn, stream string, req any, n int) (msgs []*nats.Msg, pending uint64, err error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, 0, err
	}
	inbox := nc.NewInbox()
	// Room for the whole batch and its end marker: a full channel drops
	// messages (a slow consumer), the marker among them.
	ch := make(chan *nats.Msg, n+2)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, 0, fmt.Errorf("queue: direct get %s: %w", stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return nil, 0, fmt.Errorf("queue: direct get %s: %w", stream, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	for {
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("queue: direct get %s: %w", stream, ctx.Err())
		case m := <-ch:
			if ServerHeader(m.Header, jetstream.SequenceHeader) != "" { // stored: whatever headers its writer set
				msgs = append(msgs, m)
				continue
			}
			switch m.Header.Get("Status") {
			case "":
				msgs = append(msgs, m)
			case statusEndOfBatch:
				pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				return msgs, pending, nil
			case statusNotFound:
				return nil, 0, nil
			case statusNoResponders:
				return nil, 0, fmt.Errorf("queue: direct get %s: %w", stream, nats.ErrNoResponders)
			default:
				return nil, 0, fmt.Errorf("queue: direct get %s: %s %s", stream, m.Header.Get("Status"), m.Header.Get("Description"))
			}
		}
	}
}

// Page is one page of a job listing.
type Page struct {
	Statuses []*job.Status
	// Next is the cursor of the following page, 0 when this one is the last.
	Next uint64
}
