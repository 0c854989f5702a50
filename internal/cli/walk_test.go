package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/stack"
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
		!strings.Contains(errOut.String(), "1 path in the folders could not be taken") {
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
