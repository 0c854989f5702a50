package chaos

// The rolling upgrade run (`vodpipe chaos --upgrade`, `make upgrade`): the
// previous version, built from the commit CHANGELOG.md names for it, runs
// ingest, notify and the workers; while jobs flow each process is replaced
// by the current build, one at a time, in the documented order (ingest,
// the workers, notify), then back to the previous version in reverse (a
// downgrade). Between two steps jobs must complete on the mixed set. The
// run's checks are the chaos run's: every job committed once, one FileId,
// no multipart upload left open, one job.completed and one
// vod.file_uploaded per job.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vodpipe/vodpipe/internal/child"
	"github.com/vodpipe/vodpipe/internal/retry"
	"github.com/vodpipe/vodpipe/internal/version"
)

// Previous is the version an upgrade run starts from and returns to.
type Previous struct {
	// Exe is its vodpipe binary; Version and Commit what CHANGELOG.md names.
	Exe, Version, Commit string
}

// BuildPrevious builds the version before this one (version.Release) from
// the commit CHANGELOG.md of the git checkout holding dir names for it: a
// detached git worktree of that commit, `go build ./cmd/vodpipe` in it, the
// worktree removed. The binary is kept in cache (by version and commit), so
// a second run does not build it again.
//
// from names another released version to start from ("": the previous
// one), e.g. to find out whether a jump over a release rolls.
func BuildPrevious(ctx context.Context, dir, cache, from string, logf func(string, ...any)) (Previous, error) {
	repo, err := git(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return Previous{}, fmt.Errorf("previous version: the upgrade run builds it from vodpipe's git checkout: %w", err)
	}
	log, err := os.ReadFile(filepath.Join(repo, "CHANGELOG.md"))
	if err != nil {
		return Previous{}, fmt.Errorf("previous version: %w", err)
	}
	e, err := version.Previous(log, version.Release)
	if from != "" {
		i := slices.IndexFunc(version.Entries(log), func(e version.Entry) bool { return e.Version == from && e.Commit != "" })
		if i < 0 {
			return Previous{}, fmt.Errorf("version %s: CHANGELOG.md names no such release with its commit", from)
		}
		e, err = version.Entries(log)[i], nil
	}
	if err != nil {
		return Previous{}, fmt.Errorf("previous version: %w", err)
	}
	commit, err := git(ctx, repo, "rev-parse", "--verify", "--quiet", e.Commit+"^{commit}")
	if err != nil {
		return Previous{}, fmt.Errorf("previous version %s: commit %s is not in this clone (a shallow clone? git fetch --unshallow): %w",
			e.Version, e.Commit, err)
	}
	p := Previous{Exe: filepath.Join(cache, "vodpipe-"+e.Version+"-"+commit[:12]), Version: e.Version, Commit: commit}
	if _, err := os.Stat(p.Exe); err == nil {
		logf("previous version %s (%s): %s, built before", p.Version, commit[:12], p.Exe)
		return p, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return Previous{}, err
	}
	wt, err := os.MkdirTemp("", "vodpipe-previous-")
	if err != nil {
		return Previous{}, err
	}
	_ = os.Remove(wt)                          // git worktree add makes it
	_, _ = git(ctx, repo, "worktree", "prune") // a run killed while building left its worktree's record
	if _, err := git(ctx, repo, "worktree", "add", "--detach", wt, commit); err != nil {
		return Previous{}, fmt.Errorf("previous version %s: %w", e.Version, err)
	}
	defer func() {
		_, _ = git(context.WithoutCancel(ctx), repo, "worktree", "remove", "--force", wt)
		_ = os.RemoveAll(wt)
	}()
	logf("previous version %s: building commit %s in a worktree", p.Version, commit[:12])
	tmp := fmt.Sprintf("%s.building-%d", p.Exe, os.Getpid()) // two runs at once build apart
	build := exec.CommandContext(ctx, "go", "build", "-o", tmp, "./cmd/vodpipe")
	build.Dir = wt
	if out, err := build.CombinedOutput(); err != nil {
		return Previous{}, fmt.Errorf("previous version %s: go build: %w\n%s", p.Version, err, out)
	}
	if err := os.Rename(tmp, p.Exe); err != nil {
		return Previous{}, err
	}
	return p, nil
}

// git runs git in dir and returns its output, trimmed.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// upgradeOrder is the order in which a rolling upgrade replaces processes:
// ingest first (it creates what the others attach to), the workers one by
// one, notify last. A downgrade goes in reverse.
func upgradeOrder(workers int) []string {
	order := []string{"ingest"}
	for i := range workers {
		order = append(order, fmt.Sprintf("w%d", i+1))
	}
	return append(order, "notify")
}

// buildSide is one side of an upgrade: a binary and what its processes say
// they are (vodpipe_build_info). The commit is checked when the binary has
// one stamped: `go run`, `-buildvcs=false` and a build in a git worktree
// stamp none, so the version tells the sides apart.
type buildSide struct{ exe, version, commit string }

func (b buildSide) String() string {
	if b.commit == "" {
		return b.version
	}
	return b.version + " (" + b.commit[:min(12, len(b.commit))] + ")"
}

// runUpgrade replaces every process with the current build one at a time,
// then every one back with the previous version, waiting before each step
// (and after the last) until perStep more jobs have completed, as a
// supervisor it also restarts a worker that ended by itself (counted, a
// violation). It records each step in rep.Upgrade.
func runUpgrade(ctx context.Context, o Options, cur buildSide, sys *services, ws *workerSetup,
	workers []*child.WorkerProcess, rep *Report, logf func(string, ...any)) error {
	prev := buildSide{exe: o.Previous.Exe, version: o.Previous.Version, commit: o.Previous.Commit}
	order := upgradeOrder(len(workers))
	type step struct {
		name string
		to   buildSide
	}
	var plan []step
	for _, n := range order {
		plan = append(plan, step{n, cur})
	}
	for _, n := range slices.Backward(order) {
		plan = append(plan, step{n, prev})
	}
	metricsURL := func(name string) string {
		switch name {
		case "ingest":
			return sys.ingestURL + "/metrics"
		case "notify":
			return sys.notifyURL + "/metrics"
		}
		for _, w := range workers {
			if w.ID == name {
				return "http://" + w.Addr + "/metrics"
			}
		}
		return ""
	}
	for _, name := range order {
		if err := checkBuild(name, metricsURL(name), prev); err != nil {
			return err
		}
	}
	start := time.Now()
	for _, w := range workers {
		rep.runs.add(w.ID, start.Add(-time.Hour), prev.version) // since before the run
	}
	logf("upgrade: every process runs %s; %d steps to %s and back", prev, len(plan), cur)
	perStep := 3 * o.Workers * o.JobsPerWorker
	mark := sys.recv.doneCount()
	flow := func() error { // perStep more jobs completed since mark
		for sys.recv.doneCount() < mark+perStep {
			for i, w := range workers {
				if !w.Exited() {
					continue
				}
				rep.WorkerExits++
				logf("worker %s ended by itself (%v): %s; restarted", w.ID, w.Cmd.ProcessState, lastLine(w.LogTail(512)))
				nw, err := ws.startWorker(w.ID)
				if err != nil {
					return err
				}
				workers[i] = nw
			}
			if !retry.Sleep(ctx, 100*time.Millisecond) {
				return fmt.Errorf("upgrade: %d jobs completed since the last step, want %d: %w", sys.recv.doneCount()-mark, perStep, ctx.Err())
			}
		}
		mark = sys.recv.doneCount()
		return nil
	}
	for i, st := range plan {
		if err := flow(); err != nil {
			return err
		}
		start := time.Now()
		var err error
		if wi := slices.IndexFunc(workers, func(w *child.WorkerProcess) bool { return w.ID == st.name }); wi >= 0 {
			var at time.Time
			at, err = ws.replace(ctx, workers, wi, st.to.exe)
			if !at.IsZero() {
				rep.Replacements++
				rep.runs.add(st.name, at, st.to.version)
			}
		} else {
			err = sys.replace(ctx, st.name, st.to.exe)
		}
		if err != nil {
			return fmt.Errorf("upgrade step %d, %s to %s: %w", i+1, st.name, st.to, err)
		}
		if err := checkBuild(st.name, metricsURL(st.name), st.to); err != nil {
			return fmt.Errorf("upgrade step %d: %w", i+1, err)
		}
		dir := "upgraded"
		if i >= len(order) {
			dir = "downgraded"
		}
		line := fmt.Sprintf("%-7s %s to %s in %s", st.name, dir, st.to, time.Since(start).Round(100*time.Millisecond))
		rep.Upgrade = append(rep.Upgrade, line)
		logf("upgrade step %d of %d: %s", i+1, len(plan), line)
	}
	return flow() // the last step too is followed by completed jobs
}

// workerRuns is which version each worker id ran since when, in order.
type workerRuns map[string][]versionSince

type versionSince struct {
	since   time.Time
	version string
}

func (r *workerRuns) add(worker string, since time.Time, version string) {
	if *r == nil {
		*r = workerRuns{}
	}
	(*r)[worker] = append((*r)[worker], versionSince{since, version})
}

// versionAt is the version worker ran at t ("" before any).
func (r workerRuns) versionAt(worker string, t time.Time) string {
	v := ""
	for _, s := range r[worker] {
		if !t.Before(s.since) {
			v = s.version
		}
	}
	return v
}

// jobStart is one job.started event: a worker began running a job.
type jobStart struct {
	job, worker string
	at          time.Time
}

// acrossVersions counts the jobs that workers of both versions started: a
// job handed back (or cut short) under one version and run again, from the
// resume state it left, under the other.
func acrossVersions(starts []jobStart, runs workerRuns) int {
	seen := map[string]map[string]bool{}
	for _, s := range starts {
		v := runs.versionAt(s.worker, s.at)
		if v == "" {
			continue
		}
		if seen[s.job] == nil {
			seen[s.job] = map[string]bool{}
		}
		seen[s.job][v] = true
	}
	n := 0
	for _, vs := range seen {
		if len(vs) > 1 {
			n++
		}
	}
	return n
}

// checkBuild reads vodpipe_build_info from a process's metrics and checks
// that it runs want.
func checkBuild(name, url string, want buildSide) error {
	fams, err := metricFamilies(url)
	if err != nil {
		return fmt.Errorf("%s: read its build: %w", name, err)
	}
	f, ok := fams["vodpipe_build_info"]
	if !ok || len(f.GetMetric()) == 0 {
		return errors.New(name + ": no vodpipe_build_info")
	}
	labels := map[string]string{}
	for _, l := range f.GetMetric()[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["version"] != want.version || want.commit != "" && labels["commit"] != "" && labels["commit"] != want.commit {
		return fmt.Errorf("%s runs %s (%s), want %s", name, labels["version"], labels["commit"], want)
	}
	return nil
}
