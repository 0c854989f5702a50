package chaos

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/internal/version"
)

// gitRepo makes a git repository in a temporary folder holding a tiny
// module with a cmd/vodpipe, commits it and returns the folder and the
// commit.
func gitRepo(t *testing.T) (string, string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(name, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run("init", "-q")
	write("go.mod", "module example.com/old\n\ngo 1.22\n")
	write("cmd/vodpipe/main.go", "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"the old version\") }\n")
	run("add", ".")
	run("commit", "-q", "-m", "old")
	commit := run("rev-parse", "HEAD")
	// The tree moves on after the release, as main does.
	write("cmd/vodpipe/main.go", "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"the new version\") }\n")
	write("CHANGELOG.md", fmt.Sprintf("# Changelog\n\n## %s — unreleased (main)\n\n## 0.0.1 — 2026-01-01 (commit %s)\n", version.Release, commit[:9]))
	run("add", ".")
	run("commit", "-q", "-m", "new")
	return dir, commit
}

// The previous version is built from the commit the changelog names, in a
// worktree that is removed afterwards, and kept: a second run builds
// nothing. A commit missing from the clone is named in the error.
func TestBuildPreviousBuildsTheChangelogsCommit(t *testing.T) {
	repo, commit := gitRepo(t)
	cache := t.TempDir()
	var logged []string
	logf := func(format string, args ...any) { logged = append(logged, fmt.Sprintf(format, args...)) }
	p, err := BuildPrevious(t.Context(), filepath.Join(repo, "cmd"), cache, "", logf)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != "0.0.1" || p.Commit != commit || filepath.Dir(p.Exe) != cache {
		t.Fatalf("previous %+v, want 0.0.1 at %s in %s", p, commit, cache)
	}
	out, err := exec.Command(p.Exe).Output()
	if err != nil || strings.TrimSpace(string(out)) != "the old version" {
		t.Fatalf("the binary built says %q (%v), want the old version", out, err)
	}
	wts, err := git(t.Context(), repo, "worktree", "list", "--porcelain")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(wts, "worktree "); n != 1 {
		t.Fatalf("%d worktrees left, want the checkout alone:\n%s", n, wts)
	}
	logged = nil
	again, err := BuildPrevious(t.Context(), repo, cache, "", logf)
	if err != nil || again != p || len(logged) != 1 || !strings.Contains(logged[0], "built before") {
		t.Fatalf("second build: %+v, %v, logged %q; want the cached binary", again, err, logged)
	}

	if _, err := BuildPrevious(t.Context(), repo, cache, "0.0.2", logf); err == nil || !strings.Contains(err.Error(), "0.0.2") {
		t.Fatalf("an unknown --from version: %v", err)
	}
	missing := strings.Repeat("ab", 20)
	log := fmt.Sprintf("## %s — unreleased (main)\n\n## 0.0.1 — 2026-01-01 (commit %s)\n", version.Release, missing)
	if err := os.WriteFile(filepath.Join(repo, "CHANGELOG.md"), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := BuildPrevious(t.Context(), repo, t.TempDir(), "", logf); err == nil || !strings.Contains(err.Error(), "commit "+missing+" is not in this clone") {
		t.Fatalf("a commit the clone lacks: %v", err)
	}
}

// checkBuild reads the version a process runs from its vodpipe_build_info.
func TestCheckBuildTellsTheVersions(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(version.Collector("worker"))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	in := version.Get()
	if err := checkBuild("w1", srv.URL, buildSide{version: version.Release, commit: in.Commit}); err != nil {
		t.Fatal(err)
	}
	err := checkBuild("w1", srv.URL, buildSide{version: "0.0.1"})
	if err == nil || !strings.Contains(err.Error(), "w1 runs "+version.Release) || !strings.Contains(err.Error(), "want 0.0.1") {
		t.Fatalf("the other version: %v", err)
	}
	none := httptest.NewServer(http.NotFoundHandler())
	defer none.Close()
	if err := checkBuild("w1", none.URL, buildSide{version: version.Release}); err == nil {
		t.Fatal("a process without metrics passed")
	}
}

// An upgrade run fails unless it took every step (check() holds it to a
// job run by both versions: TestJobsAcrossVersions).
func TestCheckFaultsOfAnUpgradeRun(t *testing.T) {
	n := testharness.StartNATS(t)
	o := Options{Seed: 1, Previous: &Previous{Version: "0.0.1"}}
	o.defaults()
	var got []string
	viol := func(format string, args ...any) { got = append(got, fmt.Sprintf(format, args...)) }
	checkFaults(&Report{Upgrade: make([]string, 3)}, o, &services{js: n.JetStream(t)}, viol)
	all := strings.Join(got, "\n")
	if !strings.Contains(all, "3 of the upgrade's 10 steps done") {
		t.Errorf("violations lack the missing steps:\n%s", all)
	}
	for _, not := range []string{"no worker was killed", "NATS node restarts", "out of space", "services crashed"} {
		if strings.Contains(all, not) {
			t.Errorf("an upgrade run is held to the chaos run's faults (%q):\n%s", not, all)
		}
	}
	if got := upgradeOrder(3); strings.Join(got, ",") != "ingest,w1,w2,w3,notify" {
		t.Fatalf("upgrade order %v", got)
	}
}

// A job counts as run across versions when workers of both versions
// started it, each start judged by the version its worker ran then.
func TestJobsAcrossVersions(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var runs workerRuns
	for _, w := range []string{"w1", "w2"} {
		runs.add(w, at(0), "0.9.0")
	}
	runs.add("w1", at(10), "0.10.0") // w1 upgraded at 10 s
	runs.add("w1", at(30), "0.9.0")  // and back at 30 s
	starts := []jobStart{
		{"a", "w1", at(5)}, {"a", "w2", at(12)}, // both old: w2 not upgraded
		{"b", "w2", at(8)}, {"b", "w1", at(11)}, // old, then new: across
		{"c", "w1", at(20)}, {"c", "w1", at(31)}, // w1 new, w1 old again: across
		{"d", "w1", at(10)},                     // new at the switch, alone
		{"e", "w3", at(12)}, {"e", "w1", at(2)}, // an unknown worker is not judged
	}
	if n := acrossVersions(starts, runs); n != 2 {
		t.Fatalf("%d jobs across versions, want 2 (b and c)", n)
	}
	if v := runs.versionAt("w1", at(10)); v != "0.10.0" {
		t.Fatalf("w1 at its switch runs %q, want the new version", v)
	}
	if v := runs.versionAt("w1", t0.Add(-time.Second)); v != "" {
		t.Fatalf("w1 before the run: %q", v)
	}
}
