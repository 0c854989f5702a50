package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// watchTypes are the events `submit --watch` follows.
var watchTypes = []string{job.EventStarted, job.EventProgress, job.EventCompleted, job.EventFailed,
	job.EventCanceled, job.EventPaused}

// eventsIdleUsage is the help of --events-idle.
const eventsIdleUsage = "reconnect the event stream after this long without a byte from notify, not even its heartbeat " +
	"(sent every VODPIPE_SSE_HEARTBEAT, 15s by default): a connection that went silent without closing; keep it a few heartbeats"

// eventsIdleOK checks an --events-idle value, reporting a bad one.
func eventsIdleOK(stderr io.Writer, cmd string, d time.Duration) bool {
	if d > 0 {
		return true
	}
	fmt.Fprintln(stderr, cmd+": --events-idle must be a duration above 0")
	return false
}

// followEvents reads the event stream es into a channel until ctx ends
// (then it closes the stream it reads and the channel), opening it again
// after the last event seen when the connection breaks (so nothing is
// missed while the events are kept). A stream silent for c's idle bound
// (client.WithEventStreamIdle: no event and no heartbeat) is broken too,
// and so is one whose reopening gets no answer within it.
func followEvents(ctx context.Context, cmd string, c *client.Client, es *client.EventStream, types []string, stderr io.Writer) <-chan *job.Event {
	out := make(chan *job.Event, 256)
	go func() {
		defer close(out)
		for {
			e, err := es.Next()
			if err == nil {
				select {
				case out <- e:
					continue
				case <-ctx.Done():
					_ = es.Close()
					return
				}
			}
			_ = es.Close()
			if ctx.Err() != nil {
				return
			}
			fmt.Fprintf(stderr, "%s: event stream broke (%v); reconnecting after event %s\n", cmd, err, es.LastID)
			last := es.LastID
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				if es, err = c.Events(ctx, types, last); err == nil {
					break
				}
				fmt.Fprintf(stderr, "%s: event stream: %v; trying again\n", cmd, err)
			}
		}
	}()
	return out
}

// jobKey stands for a job id in the watch, which keeps one per job not yet
// ended, with no string: for an id submit made (walkSources: "f-" and
// twenty hex digits) the ten bytes of hash it is made of, for any other
// the first ten bytes of its SHA-256.
type jobKey [10]byte

func (k jobKey) id() string { return "f-" + hex.EncodeToString(k[:]) }

func keyOf(id string) (k jobKey) {
	if len(id) == 2+2*len(k) && id[:2] == "f-" {
		if _, err := hex.Decode(k[:], []byte(id[2:])); err == nil {
			return k
		}
	}
	h := sha256.Sum256([]byte(id))
	return jobKey(h[:10])
}

// running is a job the watch saw start: its bar, and what the overall bar
// counts for it.
type running struct {
	name  string
	size  int64 // bytes the overall bar counts for the job
	done  int64 // of them, done
	start time.Time
	bar   *mpb.Bar
}

// watcher is what `submit --watch` keeps while it follows its jobs over the
// event stream: a key and a size per job submitted and not yet started or
// ended (35–56 bytes of heap each: with a million pending, the process
// peaked at 136 MiB, where a record per file took 4.3 GiB), a record per
// job running (a bar for the first maxBars), the keys of the last maxEnded
// jobs that ended (a file named twice counts once), and the counts. A
// job's row is printed as it ends and then forgotten; the file it names comes from
// the job's metadata, which submit sets ({"file": ...}) and the job's
// events carry.
type watcher struct {
	mu       sync.Mutex
	pending  map[jobKey]int64
	active   map[jobKey]*running
	ended    recentKeys // the jobs that ended in this watch, the last maxEnded
	bars     int        // of the running, how many have a bar
	p        *mpb.Progress
	overall  *mpb.Bar
	total    int64 // the overall bar's total
	rows     *rowWriter
	buf      bytes.Buffer // rows not yet printed
	out      io.Writer    // where rows go
	outcomes map[string]int
	jobs     int // submitted (or refused)
	bytes    int64
	// ids are the ids of open jobs that a key does not spell (key.id()):
	// the demo's; submit's jobs have none here.
	ids map[jobKey]string
	// recheckQuiet: see recheckQuiet (tests shorten it).
	recheckQuiet time.Duration
}

func newWatcher(p *mpb.Progress, out io.Writer, asJSON bool) *watcher {
	w := &watcher{pending: map[jobKey]int64{}, active: map[jobKey]*running{}, p: p, out: out, outcomes: map[string]int{},
		ids: map[jobKey]string{}, recheckQuiet: recheckQuiet}
	w.rows = &rowWriter{w: &w.buf, json: asJSON, fixed: true}
	w.overall = overallBar(p, 0)
	return w
}

// newProgress is the bars' container of a watch, drawn on stderr.
func newProgress(ctx context.Context, stderr io.Writer) *mpb.Progress {
	return mpb.NewWithContext(ctx, mpb.WithOutput(stderr), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
}

// overallBar is the bar of every job's bytes, total bytes to begin with.
func overallBar(p *mpb.Progress, total int64) *mpb.Bar {
	return p.AddBar(max(total, 1), mpb.PrependDecorators(
		decor.Name("all ", decor.WCSyncSpaceR),
		decor.CountersKibiByte("% .1f / % .1f"),
	), mpb.AppendDecorators(decor.Percentage(), decor.Name(" "), decor.AverageSpeed(decor.SizeB1024(0), "% .1f")))
}

// jobBar is a running job's bar, removed when it completes.
func jobBar(p *mpb.Progress, size int64, name string) *mpb.Bar {
	return p.AddBar(max(size, 1), mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(shorten(name, 28), decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.Percentage(), decor.Name(" "), decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", 30)))
}

// open is how many jobs submitted have not ended.
func (w *watcher) open() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending) + len(w.active)
}

// grow moves the overall bar's total by d.
func (w *watcher) grow(d int64) {
	if d != 0 {
		w.total += d
		w.overall.SetTotal(max(w.total, 1), false)
	}
}

// maxEnded bounds the jobs a watch remembers as ended (recentKeys): 65,536
// keys, about 2 MiB of heap at most (go test ./internal/cli -run
// WatchRemembersEndedJobsBounded -v); a file named again after more than
// that many jobs ended since its own job did counts twice.
const maxEnded = 1 << 16

// recentKeys is a set of the last maxEnded keys put in it: a ring of them
// and a map to find them in, the oldest forgotten first. Forgetting can
// count a job twice; it never leaves a job unfollowed, as a filter's false
// positive would.
type recentKeys struct {
	ring []jobKey
	next int // where the next key goes once the ring is full
	set  map[jobKey]struct{}
}

func (r *recentKeys) add(k jobKey) {
	if r.set == nil {
		r.set = map[jobKey]struct{}{}
	}
	if _, ok := r.set[k]; ok {
		return
	}
	if len(r.ring) < maxEnded {
		r.ring = append(r.ring, k)
	} else {
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = k
		r.next = (r.next + 1) % maxEnded
	}
	r.set[k] = struct{}{}
}

func (r *recentKeys) has(k jobKey) bool {
	_, ok := r.set[k]
	return ok
}

// add records a batch before it is submitted: its jobs' events may come
// before the batch's answer. A job already followed or ended in this watch
// (a file named twice: a list with a path twice, a folder and a file in
// it) counts once, unless more than maxEnded jobs ended since it did.
func (w *watcher) add(items []*item) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, it := range items {
		if _, ok := w.active[it.key]; ok {
			continue
		}
		if _, ok := w.pending[it.key]; ok {
			continue
		}
		if w.ended.has(it.key) {
			continue
		}
		w.pending[it.key] = it.size
		if it.id != it.key.id() {
			w.ids[it.key] = it.id
		}
		w.jobs++
		w.grow(it.size)
	}
}

// drop forgets a batch that could not be submitted.
func (w *watcher) drop(items []*item) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, it := range items {
		if size, ok := w.pending[it.key]; ok {
			delete(w.pending, it.key)
			delete(w.ids, it.key)
			w.jobs--
			w.grow(-size)
		}
	}
}

// answered takes a batch's answer: a refused job ends with its reason, a
// duplicate that already ended (an earlier run's) ends with the state the
// answer carries, one running gets its bar; queued ones wait for events.
func (w *watcher) answered(items []*item, resp client.BatchResponse) (refused int) {
	refused = recordBatch(items, resp)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, it := range items {
		size, pending := w.pending[it.key]
		switch {
		case !pending:
			// Ended already (its events came first), or counted once before.
		case it.outcome != "queued" && it.outcome != "duplicate":
			delete(w.pending, it.key)
			w.ended.add(it.key)
			w.grow(-size)
			w.end(it.outcome, rowOf(it))
		case it.view.State.Terminal() || it.view.State == job.StatePaused:
			// The answer carried its view: no read.
			delete(w.pending, it.key)
			w.ended.add(it.key)
			it.outcome = string(it.view.State)
			if it.view.State == job.StateCompleted {
				sent := max(it.view.BytesTotal, size)
				w.grow(sent - size)
				w.overall.IncrInt64(sent)
				w.bytes += sent
			} else {
				w.grow(-size)
			}
			w.end(string(it.view.State), rowOf(it))
		case it.view.State == job.StateRunning:
			w.start(it.key, it.display, time.Now())
		}
	}
	return refused
}

// maxBars bounds the bars of running jobs on screen: a job whose run
// failed for a moment waits for its retry without an event saying so, and
// keeps its place among the running until it ends; past maxBars a job
// counts in the overall bar only.
const maxBars = 24

// start moves a pending job among the running, with a bar while there are
// fewer than maxBars.
func (w *watcher) start(k jobKey, name string, at time.Time) *running {
	size, ok := w.pending[k]
	if !ok {
		return nil
	}
	delete(w.pending, k)
	r := &running{name: name, size: size, start: at}
	if name == "" {
		name = "(a job)"
	}
	if w.bars < maxBars {
		w.bars++
		r.bar = jobBar(w.p, size, name)
	}
	w.active[k] = r
	return r
}

// skipped takes a path the walk could not take: a row, and a count that
// keeps the run from ending as all completed.
func (w *watcher) skipped(it *item) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.jobs++
	w.end(it.outcome, rowOf(it))
}

// end counts a job's outcome and queues its row; a refusal counts as
// "refused" and a skipped path as "skipped" whatever the reason (the row
// has it).
func (w *watcher) end(outcome string, row summary) {
	switch {
	case strings.HasPrefix(outcome, "refused"):
		outcome = "refused"
	case strings.HasPrefix(outcome, "skipped"):
		outcome = "skipped"
	}
	w.outcomes[outcome]++
	w.rows.add(row)
}

// fileOf is the "file" of a job's metadata (set by submit), or "".
func fileOf(meta json.RawMessage) string {
	var m struct {
		File string `json:"file"`
	}
	if len(meta) > 0 {
		_ = json.Unmarshal(meta, &m)
	}
	return m.File
}

// event takes one event of the stream; events of other jobs are ignored.
// It reports whether the event was of one of the watch's open jobs.
func (w *watcher) event(e *job.Event) (ours bool) {
	if e.JobID == "" {
		return false
	}
	k := keyOf(e.JobID)
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.active[k]
	if r == nil {
		if _, ok := w.pending[k]; !ok {
			return false // not one of ours, or ended
		}
	}
	ours = true
	switch e.Type {
	case job.EventStarted:
		var d job.StartedData
		_ = json.Unmarshal(e.Data, &d)
		if r == nil {
			w.start(k, fileOf(d.Metadata), time.Now())
		}
	case job.EventProgress:
		var d job.ProgressData
		if json.Unmarshal(e.Data, &d) != nil {
			return
		}
		if r == nil { // started before this watch opened its stream
			r = w.start(k, "", time.Now())
		}
		if d.BytesTotal > r.size {
			w.grow(d.BytesTotal - r.size)
			r.size = d.BytesTotal
		}
		if r.bar != nil {
			r.bar.SetTotal(max(d.BytesTotal, 1), false)
			r.bar.SetCurrent(d.BytesDone)
		}
		if n := min(d.BytesDone, r.size); n > r.done {
			w.overall.IncrInt64(n - r.done)
			r.done = n
		}
	case job.EventCompleted:
		var d job.CompletedData
		_ = json.Unmarshal(e.Data, &d)
		row := w.finish(e.JobID, k, r, job.StateCompleted, fileOf(d.Metadata), d.Bytes)
		row.FileID, row.MediaURL = d.FileID, d.MediaURL
		if r != nil && row.Seconds > 0 {
			row.MBps = float64(row.Size) / row.Seconds / 1e6
		}
		w.end(row.Outcome, row)
	case job.EventFailed:
		var d job.FailedData
		_ = json.Unmarshal(e.Data, &d)
		row := w.finish(e.JobID, k, r, job.StateFailed, fileOf(d.Metadata), 0)
		row.Error = d.Error.Code + ": " + d.Error.Message
		w.end(row.Outcome, row)
	case job.EventCanceled, job.EventPaused:
		var d job.StoppedData
		_ = json.Unmarshal(e.Data, &d)
		st := job.StateCanceled
		if e.Type == job.EventPaused {
			st = job.StatePaused
		}
		row := w.finish(e.JobID, k, r, st, fileOf(d.Metadata), 0)
		w.end(row.Outcome, row)
	}
	return ours
}

// sample returns the ids of at most n open jobs, running ones first (in
// the maps' order, which varies: rechecks come round to every job).
func (w *watcher) sample(n int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]string, 0, min(n, len(w.active)+len(w.pending)))
	add := func(k jobKey) bool {
		if id, ok := w.ids[k]; ok {
			ids = append(ids, id)
		} else {
			ids = append(ids, k.id())
		}
		return len(ids) < n
	}
	for k := range w.active {
		if !add(k) {
			return ids
		}
	}
	for k := range w.pending {
		if !add(k) {
			return ids
		}
	}
	return ids
}

// recheckQuiet and recheckBatch: once the walk is done, jobs are open and
// the event stream has brought nothing of theirs for recheckQuiet, the
// watch asks ingest for recheckBatch of them, and again after as long while
// it stays so: at most recheckBatch requests every recheckQuiet, under one
// a second. An end whose event the stream will not bring is found so: a
// duplicate answered from a lagging replica's status as still running,
// though its job.completed was published before the stream opened; events
// gone from the EVENTS stream (its age and byte limits). Without it, the
// watch would wait for them for good.
const (
	recheckQuiet = 30 * time.Second
	recheckBatch = 20
)

// recheck asks c for each of ids' status and sends the end event of each
// that ended (endEvent), until ctx ends.
func recheck(ctx context.Context, c *client.Client, ids []string, out chan<- *job.Event) {
	for _, id := range ids {
		v, err := c.Get(ctx, id)
		if err != nil {
			continue // gone, or ingest away: the next recheck
		}
		if e := endEvent(v); e != nil {
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}
}

// endEvent is the event a job's view says it ended with (as the watch
// takes it: a pause ends a job's watch too), or nil while it has not.
func endEvent(v client.JobView) *job.Event {
	var (
		typ  string
		data any
	)
	switch v.State {
	case job.StateCompleted:
		typ, data = job.EventCompleted, job.CompletedData{FileID: v.FileID, MediaURL: v.MediaURL, CoverURL: v.CoverURL,
			Bytes: v.BytesTotal, Metadata: v.Job.Metadata}
	case job.StateFailed:
		d := job.FailedData{Attempt: v.Attempt, Metadata: v.Job.Metadata}
		if v.Error != nil {
			d.Error = *v.Error
		}
		typ, data = job.EventFailed, d
	case job.StateCanceled:
		typ, data = job.EventCanceled, job.StoppedData{Metadata: v.Job.Metadata}
	case job.StatePaused:
		typ, data = job.EventPaused, job.StoppedData{Metadata: v.Job.Metadata}
	default:
		return nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil
	}
	return &job.Event{Type: typ, JobID: v.ID, Time: v.UpdatedAt, Data: b}
}

// finish ends a job's bar and its share of the overall bar (the rest of a
// completed job, of sent bytes in all when its event says more than the
// walk found, counts as done; of any other as never coming) and returns the
// start of its row.
func (w *watcher) finish(id string, k jobKey, r *running, st job.State, file string, sent int64) summary {
	size, done := w.pending[k], int64(0)
	delete(w.pending, k)
	delete(w.active, k)
	delete(w.ids, k)
	w.ended.add(k)
	row := summary{JobID: id, File: file, Outcome: string(st)}
	if r != nil {
		size, done = r.size, r.done
		if row.File == "" {
			row.File = r.name
		}
		row.Seconds = time.Since(r.start).Seconds()
		if r.bar != nil {
			r.bar.SetTotal(-1, true)
			w.bars--
		}
	}
	row.Size = size
	if st == job.StateCompleted {
		if sent > size {
			w.grow(sent - size)
			row.Size, size = sent, sent
		}
		w.overall.IncrInt64(size - done)
		w.bytes += size
	} else {
		w.grow(done - size)
	}
	return row
}

// flush prints the rows queued since the last flush, outside the lock:
// above the bars a write waits for their next refresh.
func (w *watcher) flush() {
	w.mu.Lock()
	w.rows.flush()
	b := bytes.Clone(w.buf.Bytes())
	w.buf.Reset()
	w.mu.Unlock()
	if len(b) > 0 {
		_, _ = w.out.Write(b)
	}
}

// summary is the last line: how many jobs ended how, and the bytes.
func (w *watcher) summaryLine(elapsed time.Duration) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := fmt.Sprintf("%d jobs:", w.jobs)
	sep := " "
	for _, o := range []string{string(job.StateCompleted), string(job.StateFailed), string(job.StateCanceled), string(job.StatePaused)} {
		if n := w.outcomes[o]; n > 0 {
			s += fmt.Sprintf("%s%d %s", sep, n, o)
			sep = ", "
		}
	}
	for _, o := range []string{"refused", "skipped"} {
		if n := w.outcomes[o]; n > 0 {
			s += fmt.Sprintf("%s%d %s", sep, n, o)
			sep = ", "
		}
	}
	if n := len(w.pending) + len(w.active); n > 0 {
		s += fmt.Sprintf("%s%d not ended", sep, n)
	}
	secs := elapsed.Seconds()
	s += fmt.Sprintf("; %s uploaded in %s", humanBytes(w.bytes), elapsed.Round(time.Second))
	if secs > 0 && w.bytes > 0 {
		s += fmt.Sprintf(" (%s/s)", humanBytes(int64(float64(w.bytes)/secs)))
	}
	return s
}

// allCompleted reports whether every job submitted completed.
func (w *watcher) allCompleted() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.jobs > 0 && w.outcomes[string(job.StateCompleted)] == w.jobs
}

// submitAll walks the sources and submits them in batches, each recorded
// before it is sent (its jobs' events may come before its answer); it
// returns how many sources it found and the walk's or the API's error
// (errSubmit).
func (w *watcher) submitAll(ctx context.Context, c *client.Client, args []string, list string, newJob func(*item) *job.Job,
	bt batching) (int, error) {
	return submitWalk(ctx, c, args, list, newJob, bt, batchHooks{before: w.add, failed: w.drop,
		answered: func(b []*item, resp client.BatchResponse) { w.answered(b, resp) }, skipped: w.skipped})
}

// rowsOut is where the rows go: stdout, or above the bars when both
// stdout and stderr are the terminal (a table written past the bars would
// tear them).
func rowsOut(p *mpb.Progress, stdout, stderr io.Writer, asJSON bool) io.Writer {
	if !asJSON && isTerminal(stdout) && isTerminal(stderr) {
		return p
	}
	return stdout
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// watchStream opens the event stream of events (notify), then runs submit,
// which submits jobs (recording each batch with the watcher before sending
// it), and follows the jobs over the stream (opened before the first
// batch, so no job's event can come before it): an overall bar, a bar per running job,
// a row per job as it ends, a summary line at the end. Memory holds a key
// per job not ended (see watcher), never the list of files. Interrupted,
// it says so; the jobs keep running and a second run finds them
// (duplicates).
func watchStream(ctx context.Context, cmd string, events, api *client.Client, submit func(context.Context, *watcher) (int, error),
	stdout, stderr io.Writer, asJSON bool, opts ...func(*watcher)) int {
	// The follower's streams end with fctx: nothing is written or
	// reconnected once this returns.
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	es, err := events.Events(fctx, watchTypes, "")
	if err != nil {
		fmt.Fprintln(stderr, cmd+": event stream:", err)
		return 1
	}
	stream := followEvents(fctx, cmd, events, es, watchTypes, stderr)
	defer func() {
		stop()
		for range stream {
		}
	}()
	began := time.Now()
	p := newProgress(ctx, stderr)
	w := newWatcher(p, rowsOut(p, stdout, stderr, asJSON), asJSON)
	for _, o := range opts {
		o(w)
	}
	type walked struct {
		n   int
		err error
	}
	walkDone := make(chan walked, 1)
	go func() {
		n, err := submit(ctx, w)
		walkDone <- walked{n, err}
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var (
		wk         *walked
		heard      = time.Now() // the last event of the watch's jobs, or recheck
		rechecked  = make(chan *job.Event)
		rechecking = false
		recheckEnd = make(chan struct{})
	)
	for wk == nil || w.open() > 0 {
		var e *job.Event
		select {
		case <-ctx.Done():
		case e = <-stream: // nil once ctx ended
			if e != nil && w.event(e) {
				heard = time.Now()
			}
			if e != nil {
				continue
			}
		case e = <-rechecked:
			w.event(e)
			continue
		case <-recheckEnd:
			rechecking, heard = false, time.Now()
			continue
		case r := <-walkDone:
			wk = &r
			continue
		case <-tick.C:
			w.flush()
			if wk != nil && !rechecking && api != nil && time.Since(heard) >= w.recheckQuiet {
				if ids := w.sample(recheckBatch); len(ids) > 0 {
					rechecking = true
					go func() {
						recheck(fctx, api, ids, rechecked)
						select {
						case recheckEnd <- struct{}{}:
						case <-fctx.Done():
						}
					}()
				}
			}
			continue
		}
		if e == nil {
			if wk == nil { // the walk stops on ctx; its batch is recorded or dropped
				<-walkDone
			}
			w.closeRows()
			p.Shutdown()
			fmt.Fprintln(stderr, cmd+": interrupted; jobs keep running (see `vodpipe jobs`); run it again to follow them")
			fmt.Fprintln(stderr, cmd+":", w.summaryLine(time.Since(began)))
			return 1
		}
	}
	w.closeRows()
	w.overall.SetTotal(-1, true)
	p.Wait()
	code, ok := walkOutcome(stderr, cmd, wk.n, wk.err)
	if wk.n == 0 && !ok {
		return code
	}
	fmt.Fprintln(stderr, cmd+":", w.summaryLine(time.Since(began)))
	switch {
	case !ok:
		return code
	case !w.allCompleted():
		return 1
	}
	return 0
}

// closeRows ends the rows (the JSON array's bracket) and prints what is left.
func (w *watcher) closeRows() {
	w.mu.Lock()
	w.rows.close()
	w.mu.Unlock()
	w.flush()
}
