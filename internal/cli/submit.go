package cli

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/pflag"

	"github.com/vbauerster/mpb/v8"
	"golang.org/x/time/rate"

	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/redact"
	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// videoExtensions are the files `vodpipe submit` picks up when walking folders.
var videoExtensions = map[string]bool{".mp4": true, ".mov": true, ".mkv": true, ".avi": true, ".flv": true,
	".ts": true, ".webm": true, ".wmv": true, ".m4v": true, ".mpg": true, ".mpeg": true, ".3gp": true}

// apiFlags are the flags of every command that talks to ingest.
type apiFlags struct {
	url, key, keyFile string
}

func (a *apiFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&a.url, "api", envOr("VODPIPE_API_URL", "http://127.0.0.1:8080"), "ingest API URL (VODPIPE_API_URL)")
	fs.StringVar(&a.key, "api-key", os.Getenv("VODPIPE_API_KEY"), "API key (VODPIPE_API_KEY)")
	fs.StringVar(&a.keyFile, "api-key-file", os.Getenv("VODPIPE_API_KEY_FILE"),
		"file holding the API key (VODPIPE_API_KEY_FILE), e.g. a mounted secret; keeps the key out of the command line")
}

// client is the API client; false (a message on stderr, never the key)
// when the key file cannot be read or both ways of giving the key are used.
func (a *apiFlags) client(stderr io.Writer) (*client.Client, bool) {
	key := a.key
	if a.keyFile != "" {
		if a.key != "" {
			fmt.Fprintln(stderr, "vodpipe: give the API key one way: --api-key (VODPIPE_API_KEY) or --api-key-file (VODPIPE_API_KEY_FILE)")
			return nil, false
		}
		b, err := os.ReadFile(a.keyFile)
		if err != nil {
			fmt.Fprintln(stderr, "vodpipe: --api-key-file:", err)
			return nil, false
		}
		key = strings.TrimSpace(string(b))
	}
	return client.NewClient(a.url, key), true
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// item is one file or URL being submitted and watched.
type item struct {
	source  string
	display string
	key     jobKey
	id      string
	size    int64
	start   time.Time
	end     time.Time
	view    client.JobView
	outcome string
	bar     *mpb.Bar
}

func runSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("submit", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var api apiFlags
	api.register(fs)
	var (
		list          = fs.String("list", "", "file with one path or URL per line")
		procedure     = fs.String("procedure", "", "task flow to run after upload")
		region        = fs.String("storage-region", "", "storage region")
		classID       = fs.Int64("class-id", 0, "media category id")
		sourceContext = fs.String("source-context", "", "passthrough returned in VOD's event")
		oneTime       = fs.Bool("one-time", false, "one-time upload signatures")
		cover         = fs.String("cover", "", "cover image (path or URL) for every job")
		batch         = fs.Int("batch", 1000, "jobs per batch request (halved while ingest's VODPIPE_BATCH_MAX refuses it)")
		batchRate     = fs.Float64("rate", defaultBatchRate, "most batch requests a second (0: as fast as ingest answers)")
		settle        = fs.Duration("settle", 0, "leave files modified within this long for a later run: they may still be being written (0: take every file)")
		retryFor      = fs.Duration("retry-for", defaultBatchRetryFor, "send a batch ingest did not take (no connection, 429, 502, 503, 504: a restart, an upgrade) again for up to this long before the run stops (0: never)")
		watch         = fs.Bool("watch", false, "show progress until every job finishes, then a summary")
		eventsURL     = fs.String("events", envOr("VODPIPE_NOTIFY_URL", ""), "notify's URL: --watch follows the jobs over its event stream (env VODPIPE_NOTIFY_URL); without it, --watch polls each job")
		eventsIdle    = fs.Duration("events-idle", client.DefaultEventStreamIdle, eventsIdleUsage)
		asJSON        = fs.Bool("json", false, "print results as JSON (for scripts)")
		poll          = fs.Duration("poll", 500*time.Millisecond, "how often --watch polls")
	)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vodpipe submit [flags] PATH|URL ...   (folders are walked for video files)")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if math.IsNaN(*batchRate) || *batchRate < 0 {
		fmt.Fprintln(stderr, "vodpipe submit: --rate must be a number of requests a second, 0 or more")
		return 2
	}
	if *settle < 0 || *retryFor < 0 {
		fmt.Fprintln(stderr, "vodpipe submit: --settle and --retry-for must be durations, 0 or more")
		return 2
	}
	if !eventsIdleOK(stderr, "vodpipe submit", *eventsIdle) {
		return 2
	}
	bt := batching{size: *batch, pace: pacer(*batchRate), settle: *settle, retryFor: *retryFor, warn: stderr}
	coverURL := ""
	if *cover != "" {
		var err error
		if coverURL, _, err = toSourceURL(*cover); err != nil {
			fmt.Fprintln(stderr, "vodpipe submit: --cover:", err)
			return 2
		}
	}
	newJob := func(it *item) *job.Job {
		return &job.Job{V: 1, ID: it.id, Source: it.source, Cover: coverURL, Procedure: *procedure, StorageRegion: *region,
			ClassID: *classID, SourceContext: *sourceContext, OneTimeSignature: *oneTime, Metadata: fileMetadata(it.display)}
	}
	c, ok := api.client(stderr)
	if !ok {
		return 2
	}
	if !*watch {
		return submitStream(ctx, c, fs.Args(), *list, newJob, bt, stdout, stderr, *asJSON)
	}
	if *eventsURL != "" {
		return watchStream(ctx, "vodpipe submit", client.NewClient(*eventsURL, api.key).WithEventStreamIdle(*eventsIdle), c, func(ctx context.Context, w *watcher) (int, error) {
			return w.submitAll(ctx, c, fs.Args(), *list, newJob, bt)
		}, stdout, stderr, *asJSON)
	}
	fmt.Fprintln(stderr, "vodpipe submit: polling each job: give --events (notify's URL, or VODPIPE_NOTIFY_URL) to follow one event stream instead")
	var items []*item
	n, err := submitWalk(ctx, c, fs.Args(), *list, newJob, bt, batchHooks{answered: func(b []*item, resp client.BatchResponse) {
		recordBatch(b, resp)
		items = append(items, b...)
	}, skipped: func(it *item) { items = append(items, it) }})
	if code, ok := walkOutcome(stderr, "vodpipe submit", n, err); !ok {
		return code
	}
	return watchJobs(ctx, c, items, stdout, stderr, *asJSON, *poll)
}

// recordBatch records a batch's answer on its items and returns how many
// were refused.
func recordBatch(items []*item, resp client.BatchResponse) (refused int) {
	for _, r := range resp.Items {
		x := items[r.Index]
		switch r.Result {
		case "queued", "duplicate":
			x.outcome, x.view.State = r.Result, r.State
			if r.Job != nil {
				x.view = *r.Job
			}
		default:
			x.outcome, refused = "refused: "+r.Error, refused+1
		}
	}
	return refused
}

// errSubmit marks a failure of the API (exit 1), as against a bad source (exit 2).
type errSubmit struct{ error }

// submitStream submits the sources in batches as the walk finds them and
// prints each batch's rows as it is answered: memory stays flat in the
// number of sources (a million files is a walk, not a list). Run again, it
// answers "duplicate" for every job the first run created.
func submitStream(ctx context.Context, c *client.Client, args []string, list string, newJob func(*item) *job.Job,
	bt batching, stdout, stderr io.Writer, asJSON bool) int {
	rows := &rowWriter{w: stdout, json: asJSON}
	refused, skipped := 0, 0
	n, err := submitWalk(ctx, c, args, list, newJob, bt, batchHooks{answered: func(batch []*item, resp client.BatchResponse) {
		refused += recordBatch(batch, resp)
		for _, it := range batch {
			rows.add(rowOf(it))
		}
		rows.flush()
	}, skipped: func(it *item) {
		skipped++
		rows.add(rowOf(it))
		rows.flush()
	}})
	rows.close()
	reportSkipped(stderr, "vodpipe submit", skipped)
	if code, ok := walkOutcome(stderr, "vodpipe submit", n, err); !ok {
		return code
	}
	if refused > 0 || skipped > 0 {
		return 1
	}
	return 0
}

// walkOutcome reports how a submit's walk ended: the API failed (exit 1),
// a source was bad (2), there was nothing to submit (2); ok when it
// submitted every source it found.
func walkOutcome(stderr io.Writer, cmd string, n int, err error) (code int, ok bool) {
	var se errSubmit
	switch {
	case errors.As(err, &se):
		fmt.Fprintln(stderr, cmd+":", se.error)
		return 1, false
	case err != nil:
		fmt.Fprintln(stderr, cmd+":", err)
		return 2, false
	case n == 0:
		fmt.Fprintln(stderr, cmd+": nothing to submit (give files, folders, URLs or --list)")
		return 2, false
	}
	return 0, true
}

// batchHooks are what a streamed submit does around each batch it sends.
type batchHooks struct {
	before   func([]*item) // before it is sent (nil: nothing)
	failed   func([]*item) // it could not be sent (nil: nothing)
	answered func([]*item, client.BatchResponse)
	skipped  func(*item) // a path the walk could not take, its outcome "skipped: why" (nil: nothing)
}

// isSkipped reports whether it is a path the walk could not take.
func isSkipped(it *item) bool { return strings.HasPrefix(it.outcome, "skipped") }

// reportSkipped says on stderr how many paths the walk could not take (in
// the folders, of the arguments or of the list).
func reportSkipped(stderr io.Writer, cmd string, n int) {
	switch {
	case n == 1:
		fmt.Fprintf(stderr, "%s: 1 path could not be taken (its row says why); run it again once it can\n", cmd)
	case n > 1:
		fmt.Fprintf(stderr, "%s: %d paths could not be taken (their rows say why); run it again once they can\n", cmd, n)
	}
}

// defaultBatchRate is how many batch requests a second submit sends at
// most: 8,000 jobs a second in batches of 1,000, more than workers take
// them, in fewer requests than a poll of each job would cost.
const defaultBatchRate = 8

// batching is how submit sends its jobs: size jobs a request, each request
// after pace (nil: at once).
type batching struct {
	size int
	pace func(context.Context) error
	// settle leaves the files a walk finds modified within it for a later
	// run (skipped, with their reason): a file still being copied in
	// would be uploaded cut short, and its next size and time would make
	// it a second job.
	settle time.Duration
	// retryFor is how long a batch ingest did not take for a reason that
	// passes (transient) is sent again, warn where each try is told.
	retryFor time.Duration
	warn     io.Writer
}

// defaultBatchRetryFor is --retry-for's default: longer than an ingest's
// restart or a rolling upgrade's.
const defaultBatchRetryFor = 5 * time.Minute

// retryWait is the wait before a batch is sent again once its items have
// waited spent: a second, then as long again as they waited, 30 s at most.
func retryWait(spent time.Duration) time.Duration {
	return min(max(spent, time.Second), 30*time.Second)
}

// splitErrored splits a batch and its answer into the items answered
// "error" (not queued: they may be sent again) and the rest, each with its
// own answer (items indexed and counted anew). An item the answer does not
// name stays with the rest, unanswered as before.
func splitErrored(b []*item, resp client.BatchResponse) (rest []*item, restResp client.BatchResponse, errored []*item, erroredResp client.BatchResponse) {
	named := make([]bool, len(b))
	for _, r := range resp.Items {
		if r.Index < 0 || r.Index >= len(b) || named[r.Index] {
			continue
		}
		named[r.Index] = true
		items, to := &rest, &restResp
		if r.Result == "error" {
			items, to = &errored, &erroredResp
		}
		*items = append(*items, b[r.Index])
		r.Index = len(*items) - 1
		to.Items = append(to.Items, r)
		switch r.Result {
		case "queued":
			to.Queued++
		case "duplicate":
			to.Duplicate++
		case "invalid":
			to.Invalid++
		case "error":
			to.Failed++
		}
	}
	for i, it := range b {
		if !named[i] {
			rest = append(rest, it)
		}
	}
	return rest, restResp, errored, erroredResp
}

// transient tells whether a batch's failure may pass by itself: ingest
// away (no connection, 502, 503, 504: a restart, a rolling upgrade, its
// store full) or asking to slow down (429). Sending a batch again is safe:
// its jobs' ids are their files', so what ingest took is answered as a
// duplicate.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return true // no answer: a connection refused, reset or timed out
}

// pacer returns a pace of at most perSecond requests a second, nil for 0.
func pacer(perSecond float64) func(context.Context) error {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), 1).Wait
}

// submitWalk walks the sources and submits them in batches (bt) as the
// walk finds them, so memory holds one batch however many sources there
// are; it returns how many it found and the walk's error or the API's
// (errSubmit).
func submitWalk(ctx context.Context, c *client.Client, args []string, list string, newJob func(*item) *job.Job,
	bt batching, h batchHooks) (int, error) {
	var batch []*item
	n, size := 0, max(bt.size, 1)
	// send submits b; an ingest whose VODPIPE_BATCH_MAX is under the
	// batch's size refuses it whole (413, batch_too_large): it is sent
	// again in halves, and later batches take the smaller size.
	// spent is the part of bt.retryFor its items waited already.
	var send func(b []*item, spent time.Duration) error
	send = func(b []*item, spent time.Duration) error {
		jobs := make([]*job.Job, len(b))
		for i, it := range b {
			jobs[i] = newJob(it)
		}
		if bt.pace != nil {
			if err := bt.pace(ctx); err != nil {
				return errSubmit{err}
			}
		}
		if h.before != nil {
			h.before(b)
		}
		resp, err := c.SubmitBatch(ctx, jobs)
		for err != nil && transient(ctx, err) && spent+retryWait(spent) <= bt.retryFor {
			wait := retryWait(spent)
			if bt.warn != nil {
				fmt.Fprintf(bt.warn, "vodpipe submit: a batch of %d not taken (%v); sending it again in %s\n", len(b), err, wait)
			}
			if !retry.Sleep(ctx, wait) {
				break
			}
			spent += wait
			resp, err = c.SubmitBatch(ctx, jobs)
		}
		if err != nil {
			if h.failed != nil {
				h.failed(b)
			}
			var ae *client.APIError
			if errors.As(err, &ae) && ae.Code == httpapi.CodeBatchTooLarge && len(b) > 1 {
				half := len(b) / 2
				size = min(size, half)
				if err := send(b[:half], spent); err != nil {
					return err
				}
				return send(b[half:], spent)
			}
			return errSubmit{err}
		}
		// Items answered "error" (not queued: a publish that failed, the
		// jobs stream full) are sent again as a batch of their own, within
		// the same bound.
		rest, restResp, errored, erroredResp := splitErrored(b, resp)
		wait := retryWait(spent)
		if len(errored) == 0 || spent+wait > bt.retryFor || ctx.Err() != nil {
			h.answered(b, resp)
			return nil
		}
		h.answered(rest, restResp)
		if bt.warn != nil {
			fmt.Fprintf(bt.warn, "vodpipe submit: %d jobs of a batch not queued (%s); sending them again in %s\n",
				len(errored), erroredResp.Items[0].Error, wait)
		}
		if !retry.Sleep(ctx, wait) {
			h.answered(errored, erroredResp)
			return nil
		}
		return send(errored, spent+wait)
	}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := send(batch, 0)
		batch = batch[:0]
		return err
	}
	err := walkSources(args, list, bt.settle, func(it *item) error {
		if err := ctx.Err(); err != nil {
			return errSubmit{fmt.Errorf("interrupted: %w", err)}
		}
		n++
		if batch = append(batch, it); len(batch) >= size {
			return flush()
		}
		return nil
	}, func(it *item) {
		if h.skipped != nil {
			h.skipped(it)
		}
	})
	if ctx.Err() == nil {
		// What the walk found before an argument it could not read is
		// submitted all the same.
		if ferr := flush(); err == nil {
			err = ferr
		}
	}
	return n, err
}

// rowWriter prints summary rows as they come: a table flushed per batch
// (or, fixed, in columns of set widths, which stay aligned however few
// rows each flush has), or one JSON array written an element at a time.
type rowWriter struct {
	w     io.Writer
	json  bool
	fixed bool
	tw    *tabwriter.Writer
	n     int
}

func (r *rowWriter) add(row summary) {
	if r.json {
		b, _ := json.MarshalIndent(row, "  ", "  ")
		sep := ",\n  "
		if r.n == 0 {
			sep = "[\n  "
		}
		fmt.Fprintf(r.w, "%s%s", sep, b)
	} else if r.fixed {
		if r.n == 0 {
			fmt.Fprintf(r.w, fixedRow, "FILE", "JOB ID", "FILE ID", "SIZE", "TIME", "MB/s", "OUTCOME")
		}
		writeRowAs(r.w, fixedRow, 28, row)
	} else {
		if r.tw == nil {
			r.tw = tabwriter.NewWriter(r.w, 2, 4, 2, ' ', 0)
			fmt.Fprintln(r.tw, "FILE\tJOB ID\tFILE ID\tSIZE\tTIME\tMB/s\tOUTCOME")
		}
		writeRow(r.tw, row)
	}
	r.n++
}

func (r *rowWriter) flush() {
	if r.tw != nil {
		_ = r.tw.Flush()
	}
}

func (r *rowWriter) close() {
	switch {
	case r.json && r.n > 0:
		fmt.Fprint(r.w, "\n]\n")
	case r.json:
		fmt.Fprint(r.w, "[]\n")
	default:
		r.flush()
	}
}

// walkSources calls f with each source of the arguments (files, folders,
// URLs) and of a list file, in order, as it finds them: folders are walked
// and the list is read a line at a time, so memory does not grow with the
// number of sources. A job id derives from a file's path, size and
// modification time (from a URL itself), so a second run finds the jobs of
// the first, whatever order the walk finds them in.
//
// A folder is read dirChunk entries at a time, each chunk visited in name
// order (a folder of at most dirChunk entries in name order, a larger one
// in the order the file system gives, a chunk at a time): memory holds a
// chunk per level of folders, however many entries a folder has, and the
// walk holds a folder open per level it is inside.
//
// A path that cannot be taken (inside a folder: a folder it cannot read, a
// file gone before it was read, a symlink to nothing or to a folder, which
// is not followed; anywhere: a named pipe, a socket or a device, which
// cannot be uploaded; a line of the list that is missing or cannot be
// read) is handed to skip, named with its reason, and the walk goes on; so
// is a file modified within settle (0: none), which may still be being
// written. A file that is a symlink is the file it points to, taken once:
// a link to a video in the same tree is left to the walk's visit of the
// file itself. An argument that cannot be read ends the walk with its
// error, and so does a list file that cannot be read (its error names the
// list's line).
func walkSources(args []string, list string, settle time.Duration, f func(*item) error, skip func(*item)) error {
	skipped := func(p, why string, err error) {
		if err != nil {
			why += ": " + err.Error()
		}
		skip(&item{display: p, outcome: "skipped: " + why})
	}
	add := func(src, display string, size int64, idSeed string) error {
		h := sha256.Sum256([]byte(idSeed))
		k := jobKey(h[:10])
		return f(&item{source: src, display: display, size: size, key: k, id: k.id()})
	}
	// file takes a file found, unless it is not a regular file (its upload
	// could only fail) or was modified within settle.
	file := func(p string, info fs.FileInfo) error {
		if !info.Mode().IsRegular() {
			skipped(p, "not a regular file", nil)
			return nil
		}
		if age := time.Since(info.ModTime()); settle > 0 && age < settle {
			skipped(p, fmt.Sprintf("modified %s ago, within --settle %s: it may still be being written; run again later", max(age, 0).Round(time.Second), settle), nil)
			return nil
		}
		src, _, _ := toSourceURL(p)
		return add(src, p, info.Size(), fmt.Sprintf("%s|%d|%d", p, info.Size(), info.ModTime().UnixNano()))
	}
	// entry takes an entry p of a folder walked, not a folder; realRoot is
	// the walk's root, its symlinks resolved ("" unknown).
	entry := func(p string, d fs.DirEntry, realRoot string) error {
		video := videoExtensions[strings.ToLower(filepath.Ext(p))]
		if d.Type()&fs.ModeSymlink == 0 {
			if !video {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				skipped(p, "gone before it was read", err)
				return nil
			}
			return file(p, info)
		}
		info, err := os.Stat(p)
		switch {
		case err != nil:
			if video {
				skipped(p, "a symlink to nothing", err)
			}
			return nil
		case info.IsDir():
			skipped(p, "a symlink to a folder, not followed (give the folder itself)", nil)
			return nil
		case !video:
			return nil
		}
		if target, err := filepath.EvalSymlinks(p); err == nil && videoExtensions[strings.ToLower(filepath.Ext(target))] &&
			realRoot != "" && strings.HasPrefix(target, realRoot+string(filepath.Separator)) {
			return nil // the walk takes the file itself: one job, not two
		}
		return file(p, info)
	}
	// folder walks the folder p; a folder it cannot read is handed to
	// unreadable, which ends the walk with an error or skips it.
	var folder func(p, realRoot string, unreadable func(error) error) error
	folder = func(p, realRoot string, unreadable func(error) error) error {
		dir, err := os.Open(p)
		if err != nil {
			return unreadable(err)
		}
		defer dir.Close()
		for {
			ents, rerr := dir.ReadDir(dirChunk)
			slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
			for _, d := range ents {
				cp := filepath.Join(p, d.Name())
				if d.IsDir() {
					err = folder(cp, realRoot, func(err error) error {
						skipped(cp, "the folder could not be read", err)
						return nil // the walk goes on after it
					})
				} else {
					err = entry(cp, d, realRoot)
				}
				if err != nil {
					return err
				}
			}
			switch {
			case errors.Is(rerr, io.EOF):
				return nil
			case rerr != nil:
				return unreadable(rerr)
			}
		}
	}
	// one takes a source: a URL, a file, or a folder it walks; a path it
	// cannot read is handed to unreadable with its reason.
	one := func(r string, unreadable func(p, why string, err error) error) error {
		if u, err := url.Parse(r); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			return add(r, r, 0, r)
		}
		abs, err := filepath.Abs(strings.TrimPrefix(r, "file://"))
		if err != nil {
			return unreadable(r, "could not be read", err)
		}
		st, err := os.Stat(abs)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return unreadable(abs, "not found", err)
		case err != nil:
			return unreadable(abs, "could not be read", err)
		case !st.IsDir():
			return file(abs, st)
		}
		// A folder given as a symlink is walked, under the link's name.
		realRoot, _ := filepath.EvalSymlinks(abs)
		return folder(abs, realRoot, func(err error) error { return unreadable(abs, "the folder could not be read", err) })
	}
	for _, r := range args {
		if err := one(r, func(_, _ string, err error) error { return err }); err != nil {
			return err
		}
	}
	if list == "" {
		return nil
	}
	lf, err := os.Open(list)
	if err != nil {
		return err
	}
	defer lf.Close()
	// A path of the list that cannot be read (removed since the list was
	// made, a typo) is skipped like one inside a folder.
	listed := func(p, why string, err error) error {
		skipped(p, why, err)
		return nil
	}
	sc := bufio.NewScanner(lf)
	n := 0
	for sc.Scan() {
		n++
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			if err := one(line, listed); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("--list %s: line %d: longer than %d KiB", list, n+1, bufio.MaxScanTokenSize>>10)
	} else if err != nil {
		return fmt.Errorf("--list %s: line %d: %w", list, n+1, err)
	}
	return nil
}

// dirChunk is how many entries of a folder the walk reads at a time.
const dirChunk = 1024

// maxMetadataFile bounds the file name fileMetadata keeps (its end).
const maxMetadataFile = 1024

// fileMetadata is the metadata submit gives a job: the file (or URL, less
// its userinfo and query) it was made from, which the job's events carry
// so that `submit --watch` need not keep a list of files.
func fileMetadata(display string) json.RawMessage {
	if u, err := url.Parse(display); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		display = redact.URL(display)
	}
	if len(display) > maxMetadataFile {
		// Well inside the job's metadata bound (job.MaxMetadataSize): a
		// name too long for it must not cost the job.
		display = "…" + display[len(display)-maxMetadataFile:]
	}
	b, _ := json.Marshal(struct {
		File string `json:"file"`
	}{display})
	return b
}

// toSourceURL turns a path into a file:// URL, leaving http(s) URLs alone.
func toSourceURL(s string) (string, string, error) {
	if u, err := url.Parse(s); err == nil && (u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "file") {
		return s, s, nil
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return "", "", err
	}
	return (&url.URL{Scheme: "file", Path: abs}).String(), abs, nil
}

// watchJobs shows an overall bar and one bar per active job until all finish.
func watchJobs(ctx context.Context, c *client.Client, items []*item, stdout, stderr io.Writer, asJSON bool, poll time.Duration) int {
	var total int64
	for _, it := range items {
		total += it.size
	}
	p := newProgress(ctx, stderr)
	overall := overallBar(p, total)
	var overallDone int64
	pending := map[string]*item{}
	for _, it := range items {
		if !strings.HasPrefix(it.outcome, "refused") && !isSkipped(it) {
			pending[it.id] = it
			it.start = time.Now()
		}
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			p.Shutdown()
			fmt.Fprintln(stderr, "vodpipe submit: interrupted; jobs keep running (see `vodpipe jobs`)")
			return report(items, stdout, asJSON, len(pending))
		case <-tick.C:
		}
		for id, it := range pending {
			v, err := c.Get(ctx, id)
			if err != nil {
				continue
			}
			it.view = v
			if v.BytesTotal > 0 && it.size == 0 { // a URL: its size is known once it runs
				it.size, total = v.BytesTotal, total+v.BytesTotal
				overall.SetTotal(max(total, 1), false)
			}
			if v.State == job.StateRunning && it.bar == nil {
				it.bar = jobBar(p, v.BytesTotal, it.display)
			}
			if it.bar != nil {
				it.bar.SetTotal(max(v.BytesTotal, 1), false)
				it.bar.EwmaSetCurrent(v.BytesDone, poll)
			}
			if v.State.Terminal() || v.State == job.StatePaused {
				// Server times: from submit to the final state.
				it.start, it.end, it.outcome = v.CreatedAt, v.UpdatedAt, string(v.State)
				if it.bar != nil {
					it.bar.SetTotal(-1, true)
				}
				delete(pending, id)
			}
		}
		var sum int64
		for _, it := range items {
			sum += min(it.view.BytesDone, max(it.view.BytesTotal, 0))
		}
		if sum > overallDone {
			overall.EwmaIncrInt64(sum-overallDone, poll)
			overallDone = sum
		}
	}
	return endWatch(p, overall, items, stdout, asJSON)
}

// endWatch completes the bars and prints the summary; every job not
// completed counts as failed.
func endWatch(p *mpb.Progress, overall *mpb.Bar, items []*item, stdout io.Writer, asJSON bool) int {
	overall.SetTotal(-1, true)
	p.Wait()
	failed := 0
	for _, it := range items {
		if it.outcome != string(job.StateCompleted) {
			failed++
		}
	}
	return report(items, stdout, asJSON, failed)
}

// shorten is a file's name for a bar or a row: its base, on one line
// without control characters (a name may hold a newline or a terminal's
// escape sequence, and a job's metadata names it as its publisher chose),
// at most n characters.
func shorten(s string, n int) string {
	return oneLineText(filepath.Base(s), n)
}

// summary is one row of the final table (and of --json output).
type summary struct {
	File     string  `json:"file"`
	JobID    string  `json:"jobId"`
	FileID   string  `json:"fileId,omitempty"`
	Size     int64   `json:"size"`
	Seconds  float64 `json:"seconds,omitempty"`
	MBps     float64 `json:"mbps,omitempty"`
	Outcome  string  `json:"outcome"`
	MediaURL string  `json:"mediaUrl,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// rowOf is an item's summary row.
func rowOf(it *item) summary {
	r := summary{File: it.display, JobID: it.id, FileID: it.view.FileID, Size: max(it.size, it.view.BytesTotal),
		Outcome: it.outcome, MediaURL: it.view.MediaURL}
	if it.view.Error != nil {
		r.Error = it.view.Error.Code + ": " + it.view.Error.Message
	}
	if !it.end.IsZero() {
		r.Seconds = it.end.Sub(it.start).Seconds()
		if r.Seconds > 0 {
			r.MBps = float64(r.Size) / r.Seconds / 1e6
		}
	}
	return r
}

// fixedRow is a row of the table in columns of set widths.
const fixedRow = "%-28s  %-22s  %-20s  %10s  %7s  %6s  %s\n"

// writeRow writes one row of the summary table.
func writeRow(tw io.Writer, r summary) {
	writeRowAs(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", 40, r)
}

// writeRowAs writes one row in format (seven strings), its file's name
// shortened to name characters.
func writeRowAs(w io.Writer, format string, name int, r summary) {
	secs, mbps := "-", "-"
	if r.Seconds > 0 {
		secs, mbps = fmt.Sprintf("%.1fs", r.Seconds), fmt.Sprintf("%.1f", r.MBps)
	}
	out := r.Outcome
	if r.Error != "" {
		out += " (" + r.Error + ")"
	}
	fmt.Fprintf(w, format, shorten(r.File, name), oneLineText(r.JobID, 128), oneLineText(orDash(r.FileID), 64), humanBytes(r.Size), secs, mbps,
		oneLineText(out, 1000))
}

func report(items []*item, w io.Writer, asJSON bool, failed int) int {
	rows := make([]summary, len(items))
	for i, it := range items {
		rows[i] = rowOf(it)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].File < rows[j].File })
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rows)
	} else {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FILE\tJOB ID\tFILE ID\tSIZE\tTIME\tMB/s\tOUTCOME")
		for _, r := range rows {
			writeRow(tw, r)
		}
		_ = tw.Flush()
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// runJobCommand implements status, jobs, pause, resume and cancel.
func runJobCommand(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var api apiFlags
	api.register(fs)
	// Each command shows only its own flags: the listing's belong to jobs.
	state, limit, all, after := new(string), new(int), new(bool), new(string)
	*limit = 100
	defOutput := "json"
	if cmd == "jobs" {
		state = fs.String("state", "", "only jobs in this state")
		limit = fs.Int("limit", 100, "page size")
		all = fs.Bool("all", false, "every page, not only the first (a library of millions is a long listing)")
		after = fs.String("cursor", "", "the page after this cursor (printed under a page that has more)")
		defOutput = "table"
	}
	output := fs.StringP("output", "o", defOutput, "table or json")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !outputOK(stderr, cmd, *output) {
		return 2
	}
	c, ok := api.client(stderr)
	if !ok {
		return 2
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if cmd == "jobs" && *output == "json" {
		return listJobsJSON(ctx, c, job.State(*state), *limit, *after, *all, stdout, stderr)
	}
	if cmd == "jobs" {
		// The counts first: one read, however many jobs there are.
		if n, err := c.Counts(ctx); err == nil {
			parts := make([]string, 0, len(n.States))
			for _, st := range job.States() {
				parts = append(parts, fmt.Sprintf("%d %s", n.States[st], st))
			}
			fmt.Fprintf(stdout, "%d jobs: %s\n", n.All, strings.Join(parts, ", "))
		} else {
			fmt.Fprintln(stderr, "vodpipe jobs: counts:", err)
		}
		cursor := *after
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "JOB ID\tSTATE\tPROGRESS\tFILE ID\tSOURCE")
		for {
			page, err := c.List(ctx, job.State(*state), *limit, cursor)
			if err != nil {
				fmt.Fprintln(stderr, "vodpipe jobs:", err)
				return 1
			}
			for _, j := range page.Jobs {
				prog := "-"
				if j.BytesTotal > 0 {
					prog = fmt.Sprintf("%d%%", j.BytesDone*100/j.BytesTotal)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j.ID, j.State, prog, orDash(j.FileID), j.Job.Source)
			}
			_ = tw.Flush() // a page at a time: --all of a million jobs holds one page
			if page.NextCursor == "" {
				break
			}
			if !*all {
				more := "vodpipe jobs --cursor " + page.NextCursor
				if *state != "" {
					more += " --state " + *state
				}
				fmt.Fprintf(stdout, "more: %s (or --all)\n", more)
				return 0
			}
			cursor = page.NextCursor
		}
		return 0
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "usage: vodpipe %s [flags] JOB_ID\n", cmd)
		return 2
	}
	var v client.JobView
	var err error
	if cmd == "status" {
		v, err = c.Get(ctx, fs.Arg(0))
	} else {
		v, err = c.Control(ctx, fs.Arg(0), cmd)
	}
	if err != nil {
		return apiFailed(stderr, "vodpipe "+cmd+":", err)
	}
	if *output == "table" {
		writeJobTable(stdout, v)
		return 0
	}
	_ = enc.Encode(v)
	return 0
}

// writeJobTable prints one job as a two-column table.
func writeJobTable(w io.Writer, v client.JobView) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	prog := "-"
	if v.BytesTotal > 0 {
		prog = fmt.Sprintf("%d%% (%s of %s)", v.BytesDone*100/v.BytesTotal, humanBytes(v.BytesDone), humanBytes(v.BytesTotal))
	}
	errText := "-"
	if v.Error != nil {
		errText = v.Error.Code + ": " + oneLineText(v.Error.Message, 200)
	}
	for _, row := range [][2]string{{"JOB ID", v.ID}, {"STATE", string(v.State)}, {"PROGRESS", prog}, {"FILE ID", orDash(v.FileID)},
		{"MEDIA URL", orDash(v.MediaURL)}, {"COVER URL", orDash(v.CoverURL)}, {"SOURCE", v.Job.Source}, {"RUNS", fmt.Sprint(v.Runs)},
		{"ERROR", errText}, {"CREATED", v.CreatedAt.UTC().Format(time.RFC3339)}, {"UPDATED", v.UpdatedAt.UTC().Format(time.RFC3339)}} {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	_ = tw.Flush()
}

// listJobsJSON prints the counts and a page of jobs (every page with all)
// as one JSON object: {"counts", "jobs", "nextCursor"}, the jobs as their
// pages come (an error leaves the object unended, and exits 1).
func listJobsJSON(ctx context.Context, c *client.Client, state job.State, limit int, cursor string, all bool, stdout, stderr io.Writer) int {
	out := arrayOut{w: stdout}
	if n, err := c.Counts(ctx); err == nil {
		out.open("jobs", "counts", &n)
	} else {
		out.open("jobs")
	}
	for {
		page, err := c.List(ctx, state, limit, cursor)
		if err != nil {
			fmt.Fprintln(stderr, "vodpipe jobs:", err)
			return 1
		}
		for _, j := range page.Jobs {
			out.add(j)
		}
		cursor = page.NextCursor
		if cursor == "" || !all {
			break
		}
	}
	if cursor != "" {
		out.close("nextCursor", cursor)
	} else {
		out.close()
	}
	return 0
}

// arrayOut writes one JSON object whose one array is written an element at
// a time, as `encoding/json` indents it: a listing of every page holds a
// page, not every row.
type arrayOut struct {
	w io.Writer
	n int // elements written
}

// open writes the object's fields before the array (key, value pairs) and
// the array's name.
func (a *arrayOut) open(name string, fields ...any) {
	_, _ = io.WriteString(a.w, "{\n")
	for i := 0; i+1 < len(fields); i += 2 {
		b, _ := json.MarshalIndent(fields[i+1], "  ", "  ")
		fmt.Fprintf(a.w, "  %q: %s,\n", fields[i], b)
	}
	fmt.Fprintf(a.w, "  %q: [", name)
}

func (a *arrayOut) add(v any) {
	b, _ := json.MarshalIndent(v, "    ", "  ")
	if a.n > 0 {
		_, _ = io.WriteString(a.w, ",")
	}
	fmt.Fprintf(a.w, "\n    %s", b)
	a.n++
}

// close ends the array and writes the fields after it.
func (a *arrayOut) close(fields ...any) {
	if a.n > 0 {
		_, _ = io.WriteString(a.w, "\n  ")
	}
	_, _ = io.WriteString(a.w, "]")
	for i := 0; i+1 < len(fields); i += 2 {
		b, _ := json.MarshalIndent(fields[i+1], "  ", "  ")
		fmt.Fprintf(a.w, ",\n  %q: %s", fields[i], b)
	}
	_, _ = io.WriteString(a.w, "\n}\n")
}

// runDeadLetters lists the dead-letter stream through ingest's API
// ("dead-letters") or prints one entry with its message ("dead-letter SEQ").
func runDeadLetters(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var api apiFlags
	api.register(fs)
	after := fs.Uint64("after", 0, "dead-letters: start after this seq")
	limit := fs.Int("limit", 100, "dead-letters: entries per request (every page is listed)")
	defOutput := "table"
	if cmd == "dead-letter" {
		defOutput = "json"
	}
	output := fs.StringP("output", "o", defOutput, "table or json")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !outputOK(stderr, cmd, *output) {
		return 2
	}
	c, ok := api.client(stderr)
	if !ok {
		return 2
	}
	if cmd == "dead-letters" && fs.Arg(0) == "requeue" {
		seq, err := strconv.ParseUint(fs.Arg(1), 10, 64)
		if fs.NArg() != 2 || err != nil {
			fmt.Fprintln(stderr, "usage: vodpipe dead-letters [flags] requeue SEQ (the SEQ column of vodpipe dead-letters)")
			return 2
		}
		v, err := c.RequeueDeadLetter(ctx, seq)
		if err != nil {
			return apiFailed(stderr, "vodpipe dead-letters requeue:", err)
		}
		fmt.Fprintf(stdout, "job %s requeued (%s)\n", v.ID, v.State)
		return 0
	}
	if cmd == "dead-letter" {
		if *after != 0 || *limit != 100 {
			fmt.Fprintln(stderr, "vodpipe dead-letter: --after and --limit belong to dead-letters")
			return 2
		}
		seq, err := strconv.ParseUint(fs.Arg(0), 10, 64)
		if fs.NArg() != 1 || err != nil {
			fmt.Fprintln(stderr, "usage: vodpipe dead-letter [flags] SEQ (the SEQ column of vodpipe dead-letters)")
			return 2
		}
		e, err := c.DeadLetter(ctx, seq)
		if err != nil {
			return apiFailed(stderr, "vodpipe dead-letter:", err)
		}
		if *output == "table" {
			tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "SEQ\t%d\nTIME\t%s\nJOB ID\t%s\nCODE\t%s\nREASON\t%s\nMESSAGE\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339),
				orDash(oneLineText(e.JobID, 80)), oneLineText(e.Code, 40), oneLineText(e.Reason, 200), oneLineText(string(e.Message), 400))
			_ = tw.Flush()
			return 0
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(e)
		return 0
	}
	// Every page, as a table or in one JSON object, a page at a time.
	out := arrayOut{w: stdout}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	if *output == "table" {
		fmt.Fprintln(tw, "SEQ\tTIME\tJOB ID\tCODE\tREASON")
	} else {
		out.open("deadLetters")
	}
	for {
		page, err := c.DeadLetters(ctx, *after, *limit)
		if err != nil {
			fmt.Fprintln(stderr, "vodpipe dead-letters:", err)
			return 1
		}
		for _, e := range page.DeadLetters {
			if *output == "json" {
				out.add(e)
				continue
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339),
				orDash(oneLineText(e.JobID, 80)), oneLineText(e.Code, 40), oneLineText(e.Reason, 200))
		}
		_ = tw.Flush()
		if page.Next == 0 {
			break
		}
		*after = page.Next
	}
	if *output == "json" {
		out.close()
	}
	return 0
}

// apiFailed reports a failed API call and returns the exit code: 3 when
// what was asked for is not there (404), else 1.
func apiFailed(stderr io.Writer, args ...any) int {
	fmt.Fprintln(stderr, args...)
	var ae *client.APIError
	if err, ok := args[len(args)-1].(error); ok && errors.As(err, &ae) && ae.Status == 404 {
		return 3
	}
	return 1
}

// outputOK checks an --output value, reporting a bad one.
func outputOK(stderr io.Writer, cmd, output string) bool {
	if output == "table" || output == "json" {
		return true
	}
	fmt.Fprintf(stderr, "vodpipe %s: --output is table or json, not %q\n", cmd, output)
	return false
}

// oneLineText is s on one line for a table cell, cut to at most n runes.
// Job ids and reasons come from whoever published the message: control
// characters (a terminal escape, a tab) are replaced, whitespace folded.
func oneLineText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return '?'
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
