package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Files maps what VOD's events name to the job that uploaded it: FileIds
// (recorded at the commit) and media storage paths (recorded just before
// it, for a worker that dies in between).
type Files struct {
	nc      *nats.Conn
	files   jetstream.KeyValue
	uploads jetstream.KeyValue
}

// Record maps a FileId to the job that uploaded it.
func (f *Files) Record(ctx context.Context, fileID, jobID string) error {
	if _, err := f.files.Put(ctx, fileID, []byte(jobID)); err != nil {
		return fmt.Errorf("queue: record file %s: %w", fileID, err)
	}
	return nil
}

// uploadsTTL is how long UploadsBucket keeps a record: VOD's event comes
// seconds after the commit, and the FileId → job mapping, recorded at the
// latest when the job's next run finds the commit, takes over long before.
const uploadsTTL = 24 * time.Hour

// ResumeTTL is how long a worker's resume state outlives its last write in
// ResumeBucket: as long as VOD lets an upload resume (resume.DefaultStateTTL
// is the same for Redis).
const ResumeTTL = 24 * time.Hour

// RecordUpload maps the storage path of a media file about to be committed
// (ApplyUploadUGC's video storagePath) to its job. Written before the commit,
// it correlates VOD's event with the job when the worker did not live to
// record the FileId (see JobForMediaURL).
func (f *Files) RecordUpload(ctx context.Context, storagePath, jobID string) error {
	if _, err := f.uploads.Put(ctx, uploadKey(storagePath), []byte(jobID)); err != nil {
		return fmt.Errorf("queue: record upload of job %s: %w", jobID, err)
	}
	return nil
}

// JobForMediaURL returns the job that committed the media file at a VOD
// media URL, found by the URL's path (VOD serves a file at its storage path
// on the play domain), or ErrNotFound.
func (f *Files) JobForMediaURL(ctx context.Context, mediaURL string) (string, error) {
	u, err := url.Parse(mediaURL)
	if err != nil || strings.Trim(u.Path, "/") == "" {
		return "", fmt.Errorf("%w: media URL %q has no path", ErrNotFound, mediaURL)
	}
	e, err := f.uploads.Get(ctx, uploadKey(u.Path))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("%w: upload %s", ErrNotFound, u.Path)
	}
	if err != nil {
		return "", fmt.Errorf("queue: look up upload %s: %w", u.Path, err)
	}
	return string(e.Value()), nil
}

// uploadKey is the bucket key of a storage path: its hex SHA-256, with or
// without the leading slash (ApplyUploadUGC's path has one, a key may not).
func uploadKey(storagePath string) string {
	sum := sha256.Sum256([]byte(strings.TrimLeft(storagePath, "/")))
	return hex.EncodeToString(sum[:])
}

// JobFor returns the job that uploaded a FileId, or ErrNotFound.
func (f *Files) JobFor(ctx context.Context, fileID string) (string, error) {
	e, err := f.files.Get(ctx, fileID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("%w: file %s", ErrNotFound, fileID)
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

// FileWatch waits for FileId → job mappings. One watcher on the files
// bucket serves every waiter, so a burst of VOD callbacks that arrive before
// their workers record the mapping costs one consumer, not one per callback.
type FileWatch struct {
	files *Files
	log   func(msg string, args ...any)
	grace time.Duration // see lookupAfter
	done  chan struct{} // closed when the watcher's goroutine has returned

	mu      sync.Mutex
	live    bool // the shared watcher is established and delivering
	waiters map[string][]chan string
	// recent holds the mappings the watcher saw lately, oldest first in
	// order, so a callback for a file just recorded needs no lookup.
	recent map[string]string
	order  []string
}

// recentFiles bounds FileWatch's memory of mappings it saw.
const recentFiles = 20000

// Watch starts the shared watcher; it runs until ctx ends and is
// re-established when it stops. logf receives its failures (may be nil).
func (f *Files) Watch(ctx context.Context, logf func(msg string, args ...any)) *FileWatch {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	fw := &FileWatch{files: f, log: logf, waiters: map[string][]chan string{}, recent: map[string]string{}, grace: lookupGrace,
		done: make(chan struct{})}
	go fw.run(ctx)
	return fw
}

// Done is closed once the watcher has stopped for good: its ctx ended and
// its subscription is gone. A closed NATS connection alone only ends the
// current subscription (the watcher tries again every second until ctx ends).
func (fw *FileWatch) Done() <-chan struct{} { return fw.done }

func (fw *FileWatch) run(ctx context.Context) {
	defer close(fw.done)
	nc := fw.files.nc
	for ctx.Err() == nil {
		// A subscription to the bucket's subjects, not a key-value watch:
		// no consumer (see follow). New mappings are all it needs.
		sub, err := changesOn(nc, FilesBucket, FilesChanges+".", ">", func(c KVChange) {
			if !c.Deleted {
				fw.deliver(c.Key, string(c.Value))
			}
		})
		if err != nil {
			if ctx.Err() == nil {
				fw.log("files watch unavailable, retrying", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		fw.mu.Lock()
		fw.live = true
		fw.mu.Unlock()
		// Mappings recorded while the connection was down never reach the
		// subscription: after a reconnect, or when the connection closes,
		// the waiters look again on their own.
		reconnects := nc.Stats().Reconnects
		tick := time.NewTicker(followInterval)
		for stop := false; !stop; {
			select {
			case <-ctx.Done():
				stop = true
			case <-tick.C:
				stop = nc.IsClosed() || nc.Stats().Reconnects != reconnects
			}
		}
		tick.Stop()
		_ = sub.Unsubscribe()
		fw.lost()
		if nc.IsClosed() && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// Live reports whether the shared watcher is established (waits made
// meanwhile fall back to a watch of their own).
func (fw *FileWatch) Live() bool {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.live
}

// lost wakes every waiter with "" (look again on your own): the shared
// watcher stopped, and what it would have delivered meanwhile is unknown.
func (fw *FileWatch) lost() {
	fw.mu.Lock()
	ws := fw.waiters
	fw.live, fw.waiters = false, map[string][]chan string{}
	fw.mu.Unlock()
	for _, chs := range ws {
		for _, ch := range chs {
			ch <- ""
		}
	}
}

func (fw *FileWatch) deliver(fileID, jobID string) {
	fw.mu.Lock()
	ws := fw.waiters[fileID]
	delete(fw.waiters, fileID)
	if _, ok := fw.recent[fileID]; !ok {
		if len(fw.order) >= recentFiles {
			delete(fw.recent, fw.order[0])
			fw.order = fw.order[1:]
		}
		fw.order = append(fw.order, fileID)
	}
	fw.recent[fileID] = jobID
	fw.mu.Unlock()
	for _, ch := range ws {
		ch <- jobID // buffered: never blocks
	}
}

// Wait returns the job that uploaded a FileId, waiting until the mapping is
// recorded or ctx ends (then it returns ErrNotFound).
func (fw *FileWatch) Wait(ctx context.Context, fileID string) (string, error) {
	ch := make(chan string, 1)
	fw.mu.Lock()
	if id, ok := fw.recent[fileID]; ok {
		fw.mu.Unlock()
		return id, nil
	}
	live := fw.live
	if live {
		// Registered before the lookup below: a mapping recorded in between is not missed.
		fw.waiters[fileID] = append(fw.waiters[fileID], ch)
	}
	fw.mu.Unlock()
	if !live {
		return fw.files.WaitJobFor(ctx, fileID) // a watch of its own meanwhile
	}
	defer fw.forget(fileID, ch)
	// A mapping recorded while the watcher runs arrives through it, usually
	// milliseconds after VOD's callback (which tends to beat the worker's
	// record): give the watcher a moment before paying for a lookup, which
	// only a mapping recorded before the watcher started needs.
	first := time.NewTimer(fw.lookupAfter(ctx))
	defer first.Stop()
	select {
	case id := <-ch:
		return fw.delivered(ctx, fileID, id)
	case <-first.C:
	case <-ctx.Done():
	}
	// Made even when ctx ended during the grace, so the wait always looks
	// once, but bounded so it cannot outlast the caller's wait for long; a
	// lookup that ran out of time leaves the watcher to answer.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
	id, found, err := fw.files.lookupFile(lctx, fileID)
	timedOut := lctx.Err() != nil
	cancel()
	if found || err != nil && !timedOut {
		return id, err
	}
	select {
	case id := <-ch:
		return fw.delivered(ctx, fileID, id)
	case <-ctx.Done():
		return "", fmt.Errorf("%w: file %s", ErrNotFound, fileID)
	}
}

// lookupGrace is how long a wait trusts the shared watcher alone;
// lookupTimeout bounds its one lookup.
const (
	lookupGrace   = 200 * time.Millisecond
	lookupTimeout = time.Second
)

// lookupAfter is how long a wait trusts the shared watcher alone: its grace,
// or a third of what is left of ctx when that is less, so the lookup is
// always made before the wait ends.
func (fw *FileWatch) lookupAfter(ctx context.Context) time.Duration {
	d := fw.grace
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)/3)
	}
	return max(d, 0)
}

// delivered is what the watcher handed a waiter: the job, or "" when the
// watcher stopped (then the waiter looks again on its own).
func (fw *FileWatch) delivered(ctx context.Context, fileID, jobID string) (string, error) {
	if jobID == "" {
		return fw.files.WaitJobFor(ctx, fileID)
	}
	return jobID, nil
}

func (fw *FileWatch) forget(fileID string, ch chan string) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	ws := slices.DeleteFunc(fw.waiters[fileID], func(c chan string) bool { return c == ch })
	if len(ws) == 0 {
		delete(fw.waiters, fileID)
	} else {
		fw.waiters[fileID] = ws
	}
}

// lookupFile is the first step of a wait: the mapping if it is there
// (found), ErrNotFound if the wait is already over, or a store failure.
func (f *Files) lookupFile(ctx context.Context, fileID string) (id string, found bool, err error) {
	id, err = f.JobFor(ctx, fileID)
	switch {
	case err == nil:
		return id, true, nil
	case ctx.Err() != nil:
		return "", false, fmt.Errorf("%w: file %s", ErrNotFound, fileID)
	case !errors.Is(err, ErrNotFound):
		return "", false, err
	}
	return "", false, nil
}

// WaitJobFor returns the job that uploaded a FileId, waiting until the
// mapping is recorded or ctx ends (then it returns ErrNotFound). It watches
// the key rather than polling, so a mapping recorded a moment after the
// call is seen at once.
func (f *Files) WaitJobFor(ctx context.Context, fileID string) (string, error) {
	if id, found, err := f.lookupFile(ctx, fileID); found || err != nil {
		return id, err
	}
	if strings.ContainsAny(fileID, "*> ") {
		return "", fmt.Errorf("%w: file %s", ErrNotFound, fileID)
	}
	got := make(chan string, 1)
	sub, err := changesOn(f.nc, FilesBucket, FilesChanges+".", fileID, func(c KVChange) {
		if !c.Deleted {
			select {
			case got <- string(c.Value):
			default:
			}
		}
	})
	if err != nil {
		return "", fmt.Errorf("queue: watch file %s: %w", fileID, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// Subscribed first, then looked up again: a mapping recorded between
	// the first lookup and the subscription is found by this one.
	if id, found, err := f.lookupFile(ctx, fileID); found || err != nil {
		return id, err
	}
	select {
	case id := <-got:
		return id, nil
	case <-ctx.Done():
		return "", fmt.Errorf("%w: file %s", ErrNotFound, fileID)
	}
}
