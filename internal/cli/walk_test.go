package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/stack"
	"github.com/vodpipe/vodpipe/pkg/client"
)

// noSkips is a walk's skip that fails the test.
func noSkips(t *testing.T) func(*item) {
	return func(it *item) { t.Errorf("skipped %s: %s", it.display, it.outcome) }
}

func writeFiles(t *testing.T, files map[string]string) {
	t.Helper()
	for p, body := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A folder given as a symlink (/media/incoming -> /mnt/nas/incoming) is
// walked like the folder: WalkDir alone does not descend into a root that
// is a symlink, and found nothing.
func TestWalkTakesAFolderGivenAsASymlink(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, map[string]string{filepath.Join(dir, "real", "a.mp4"): "x", filepath.Join(dir, "real", "b", "c.mov"): "yy"})
	link := filepath.Join(dir, "incoming")
	if err := os.Symlink(filepath.Join(dir, "real"), link); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := walkSources([]string{link}, "", 0, func(it *item) error { got = append(got, it.display); return nil }, noSkips(t)); err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(link, "a.mp4"), filepath.Join(link, "b", "c.mov")}
	if !slices.Equal(got, want) {
		t.Fatalf("walked %v, want %v", got, want)
	}
}

// What a walk cannot take inside a folder (a folder it cannot read, a
// symlink to nothing or to a folder) is skipped with its reason and the
// walk goes on; a file that is a symlink is its target's size, and the same
// job as the link submitted by itself; a link to a video of the same tree
// is not taken a second time.
func TestWalkSkipsWhatItCannotTakeAndGoesOn(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	writeFiles(t, map[string]string{
		filepath.Join(root, "a", "1.mp4"):       "one",
		filepath.Join(root, "locked", "2.mp4"):  "two",
		filepath.Join(root, "z", "3.mp4"):       "three",
		filepath.Join(outside, "elsewhere.mp4"): "four!",
	})
	for link, target := range map[string]string{"b-dir": filepath.Join(root, "a"), "c-broken.mp4": filepath.Join(root, "nowhere.mp4"),
		"d-linked.mp4": filepath.Join(outside, "elsewhere.mp4"), "e-broken.txt": filepath.Join(root, "nowhere.txt"),
		"f-same.mp4": filepath.Join(root, "z", "3.mp4")} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	locked := filepath.Join(root, "locked")
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(locked, 0o755) })
	canReadLocked := false
	if _, err := os.ReadDir(locked); err == nil {
		canReadLocked = true // root reads any folder
	}
	found := map[string]*item{}
	var order []string
	skips := map[string]string{}
	err := walkSources([]string{root}, "", 0, func(it *item) error {
		found[filepath.Base(it.display)], order = it, append(order, filepath.Base(it.display))
		return nil
	}, func(it *item) { skips[filepath.Base(it.display)] = it.outcome })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1.mp4", "d-linked.mp4", "3.mp4"}
	if canReadLocked {
		want = []string{"1.mp4", "d-linked.mp4", "2.mp4", "3.mp4"}
	}
	if !slices.Equal(order, want) {
		t.Fatalf("walked %v, want %v (skipped %v)", order, want, skips)
	}
	wantSkips := map[string]string{"b-dir": "a symlink to a folder", "c-broken.mp4": "a symlink to nothing"}
	if !canReadLocked {
		wantSkips["locked"] = "the folder could not be read"
	}
	if len(skips) != len(wantSkips) {
		t.Errorf("skipped %v, want %v", skips, wantSkips)
	}
	for name, why := range wantSkips {
		if !strings.HasPrefix(skips[name], "skipped: "+why) {
			t.Errorf("%s: %q, want it skipped as %q", name, skips[name], why)
		}
	}
	linked := found["d-linked.mp4"]
	if linked.size != int64(len("four!")) {
		t.Errorf("the linked file's size is %d, want its target's, %d", linked.size, len("four!"))
	}
	var direct *item
	if err := walkSources([]string{filepath.Join(root, "d-linked.mp4")}, "", 0, func(it *item) error { direct = it; return nil }, noSkips(t)); err != nil {
		t.Fatal(err)
	}
	if direct.id != linked.id {
		t.Errorf("the link walked is job %s, submitted by itself %s: one file, two jobs", linked.id, direct.id)
	}
}

// submit names the paths it skipped in its rows, submits the rest, and
// exits 1 so that a script sees that something was left.
func TestSubmitReportsSkippedPathsAndExitsOne(t *testing.T) {
	st, err := stack.Start(t.Context(), stack.Options{DataDir: t.TempDir(), SourceRoot: t.TempDir(), Workers: 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	root := t.TempDir()
	writeFiles(t, map[string]string{filepath.Join(root, "a.mp4"): "a"})
	if err := os.Symlink(filepath.Join(root, "gone.mp4"), filepath.Join(root, "b.mp4")); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"submit", "--api", st.IngestURL, "--api-key", st.APIKey, "--json", root}, &out, &errOut)
	var rows []summary
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	outcome := map[string]string{}
	for _, r := range rows {
		outcome[filepath.Base(r.File)] = r.Outcome
	}
	if code != 1 || len(rows) != 2 || outcome["a.mp4"] != "queued" || !strings.HasPrefix(outcome["b.mp4"], "skipped: a symlink to nothing") ||
		!strings.Contains(errOut.String(), "1 path could not be taken") {
		t.Fatalf("exit %d, rows %+v\n%s", code, rows, errOut.String())
	}
}

// A row names its file on one line without control characters: a file
// name (or a job's metadata, which its publisher writes) may hold a newline
// or a terminal escape sequence.
func TestRowsShowNamesWithoutControlCharacters(t *testing.T) {
	var b bytes.Buffer
	writeRowAs(&b, fixedRow, 28, summary{File: "/in/a\x1b[2J\nb.mp4", JobID: "j", Outcome: "failed", Error: "bad\x1b]0;title\x07 name\r\n"})
	row := b.String()
	if strings.Count(row, "\n") != 1 || strings.ContainsAny(row, "\x1b\r\x07") {
		t.Fatalf("row %q", row)
	}
}

// --settle leaves a file modified within it for a later run (it may still
// be being copied in: uploaded now, it would be cut short, and its next
// size and time a second job); an older one is taken.
func TestWalkLeavesFilesModifiedWithinSettle(t *testing.T) {
	root := t.TempDir()
	old, fresh := filepath.Join(root, "old.mp4"), filepath.Join(root, "fresh.mp4")
	writeFiles(t, map[string]string{old: "old", fresh: "still coming"})
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(old, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	var got []string
	skips := map[string]string{}
	err := walkSources([]string{root}, "", time.Minute, func(it *item) error { got = append(got, filepath.Base(it.display)); return nil },
		func(it *item) { skips[filepath.Base(it.display)] = it.outcome })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"old.mp4"}) || !strings.HasPrefix(skips["fresh.mp4"], "skipped: modified ") || len(skips) != 1 {
		t.Fatalf("took %v, skipped %v; want old.mp4 taken and fresh.mp4 left", got, skips)
	}
	// Without --settle both are taken.
	got = nil
	if err := walkSources([]string{root}, "", 0, func(it *item) error { got = append(got, filepath.Base(it.display)); return nil }, noSkips(t)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("without --settle took %v", got)
	}
}

// A path of a --list that is gone (removed between two runs, a typo) is
// skipped with a row, as a file gone inside a folder is, and the paths
// listed after it are submitted: it used to end the run at its line, and
// every later run at the same line. submit exits 1, as for any path
// skipped.
func TestSubmitListSkipsAMissingPathAndGoesOn(t *testing.T) {
	root := t.TempDir()
	st, err := stack.Start(t.Context(), stack.Options{DataDir: t.TempDir(), SourceRoot: root, NoWorkers: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	first, last := filepath.Join(root, "a.mp4"), filepath.Join(root, "c.mp4")
	writeFiles(t, map[string]string{first: "aaaa", last: "cccc"})
	missing := filepath.Join(root, "b-removed.mp4")
	list := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(list, []byte(first+"\n"+missing+"\n"+last+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"submit", "--api", st.IngestURL, "--api-key", st.APIKey, "--json", "--list", list}, &out, &errOut)
	// The last path's job must exist.
	var ids []string
	if err := walkSources([]string{last}, "", 0, func(it *item) error { ids = append(ids, it.id); return nil }, noSkips(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.NewClient(st.IngestURL, st.APIKey).Get(t.Context(), ids[0]); err != nil {
		t.Fatalf("%s, listed after a missing path, was not submitted (exit %d): %v\nstdout:\n%s\nstderr:\n%s", last, code, err, out.String(), errOut.String())
	}
	var rows []summary
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	outcome := map[string]string{}
	for _, r := range rows {
		outcome[r.File] = r.Outcome
	}
	if code != 1 || len(rows) != 3 || outcome[first] != "queued" || outcome[last] != "queued" ||
		!strings.HasPrefix(outcome[missing], "skipped: not found") || !strings.Contains(errOut.String(), "1 path could not be taken") {
		t.Fatalf("exit %d, rows %+v\n%s", code, rows, errOut.String())
	}
}

// A line of a --list too long to read ends the walk with an error that
// names the list and the line, so that it can be found in a list of a
// million lines.
func TestSubmitListNamesTheLineTooLongToRead(t *testing.T) {
	root := t.TempDir()
	a := filepath.Join(root, "a.mp4")
	writeFiles(t, map[string]string{a: "aaaa"})
	list := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(list, []byte(a+"\n# a comment\n/"+strings.Repeat("x", 70<<10)+".mp4\n"+a+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := walkSources(nil, list, 0, func(*item) error { n++; return nil }, noSkips(t))
	if err == nil || !strings.Contains(err.Error(), list) || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("walk of a list whose line 3 is 70 KiB long: %v, want an error naming %s and line 3", err, list)
	}
	if n != 1 {
		t.Errorf("%d paths taken before the long line, want 1", n)
	}
}

// A named pipe, a socket or a device that has a video's name can only
// fail as a job ("not a regular file"): the walk skips it with that
// reason, in a folder, given by itself, or behind a symlink. It used to
// be submitted as a file of size 0.
func TestWalkSkipsSpecialFiles(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	writeFiles(t, map[string]string{filepath.Join(dir, "a.mp4"): "x"})
	fifo, away := filepath.Join(dir, "pipe.mp4"), filepath.Join(outside, "away.mp4")
	for _, p := range []string{fifo, away} {
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Skip("mkfifo:", err)
		}
	}
	link := filepath.Join(dir, "link-away.mp4")
	if err := os.Symlink(away, link); err != nil {
		t.Fatal(err)
	}
	var got []string
	skips := map[string]string{}
	skip := func(it *item) { skips[it.display] = it.outcome }
	if err := walkSources([]string{dir, away}, "", 0, func(it *item) error { got = append(got, it.display); return nil }, skip); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{filepath.Join(dir, "a.mp4")}) {
		t.Errorf("walked %v, want only a.mp4 (skipped %v)", got, skips)
	}
	if len(skips) != 3 {
		t.Errorf("skipped %v, want the pipe, the link to a pipe and the pipe given by itself", skips)
	}
	for _, p := range []string{fifo, link, away} {
		if skips[p] != "skipped: not a regular file" {
			t.Errorf("%s: %q, want it skipped as not a regular file", p, skips[p])
		}
	}
}

// The walk reads a folder a chunk of entries at a time: a flat folder of a
// million files does not sit in memory whole (filepath.WalkDir read each
// folder whole, sorted, before visiting its first entry: 10 MB here, 100+
// MB at a million). Here 100,000 files of one folder: the heap the walk
// holds at its midpoint stays small. A job's id does not depend on the
// order the walk finds its file in: it is that of the file given by
// itself.
func TestWalkHoldsLittleOfAFlatFolder(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 100,000 files")
	}
	const n = 100_000
	dir := t.TempDir()
	for i := range n {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("episode-%07d.mp4", i)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	var before, mid runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	seen := 0
	sample := map[string]string{} // a few files' ids, by path
	if err := walkSources([]string{dir}, "", 0, func(it *item) error {
		if seen++; seen == n/2 {
			runtime.GC()
			runtime.ReadMemStats(&mid)
		}
		if seen%(n/8) == 1 {
			sample[it.display] = it.id
		}
		return nil
	}, noSkips(t)); err != nil {
		t.Fatal(err)
	}
	if seen != n {
		t.Fatalf("walked %d files, want %d", seen, n)
	}
	grown := int64(mid.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap held mid-walk: %.1f MiB for %d files in one folder", float64(grown)/(1<<20), n)
	if grown > 4<<20 {
		t.Errorf("the walk holds %.1f MiB mid-way through a folder of %d files (%.0f bytes a file): not flat in the number of files",
			float64(grown)/(1<<20), n, float64(grown)/n)
	}
	for p, id := range sample {
		var alone string
		if err := walkSources([]string{p}, "", 0, func(it *item) error { alone = it.id; return nil }, noSkips(t)); err != nil {
			t.Fatal(err)
		}
		if alone != id {
			t.Errorf("%s: job %s in the folder's walk, %s given by itself", p, id, alone)
		}
	}
}
