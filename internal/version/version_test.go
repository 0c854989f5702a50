package version_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vodpipe/vodpipe/internal/version"
)

// The release is the newest entry of CHANGELOG.md, whose entries are
// "## X.Y.Z — date" headings, newest first.
func TestReleaseIsTheNewestChangelogEntry(t *testing.T) {
	b, err := os.ReadFile("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^## (\d+\.\d+\.\d+)\b`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("CHANGELOG.md has no version heading")
	}
	if m[1] != version.Release {
		t.Fatalf("CHANGELOG.md's newest entry is %s, version.Release is %s", m[1], version.Release)
	}
	// Every heading is one Entries reads, and the upgrade run finds the
	// version before this one, with the commit it is built from.
	all := version.Entries(b)
	if n := strings.Count(string(b), "\n## "); len(all) != n {
		t.Fatalf("CHANGELOG.md has %d headings, Entries reads %d: %+v", n, len(all), all)
	}
	// Only the newest entry may be unreleased; every other names its
	// commit (a malformed one would make the upgrade run skip a release).
	for i, e := range all {
		if i > 0 && e.Commit == "" || i == 0 && e.Commit == "" && e.Date != "unreleased" {
			t.Fatalf("CHANGELOG.md entry %s (%s) names no commit", e.Version, e.Date)
		}
	}
	prev, err := version.Previous(b, version.Release)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 2 || prev != all[1] {
		t.Fatalf("previous release %+v, want the entry after %s: %+v", prev, version.Release, all)
	}
}

// The changelog's headings: the newest released one before the given
// release is the previous version; an unreleased entry has no commit.
func TestPreviousRelease(t *testing.T) {
	const log = "# Changelog\n\n## 0.10.0 — unreleased (main)\n\n- x\n\n## 0.9.0 — 2026-12-06 (commit 124ab8c)\n\n" +
		"- y\n\n## 0.8.0 — 2026-12-05 (commit 244c07c)\n"
	all := version.Entries([]byte(log))
	want := []version.Entry{{"0.10.0", "unreleased", ""}, {"0.9.0", "2026-12-06", "124ab8c"}, {"0.8.0", "2026-12-05", "244c07c"}}
	if !slices.Equal(all, want) {
		t.Fatalf("entries %+v, want %+v", all, want)
	}
	for release, prev := range map[string]string{"0.10.0": "0.9.0", "0.9.0": "0.8.0"} {
		got, err := version.Previous([]byte(log), release)
		if err != nil || got.Version != prev {
			t.Fatalf("Previous(%s) = %+v, %v; want %s", release, got, err, prev)
		}
	}
	if _, err := version.Previous([]byte(log), "0.8.0"); err == nil {
		t.Fatal("no version before 0.8.0, yet Previous found one")
	}
}

// vodpipe_build_info is 1 and names the release and the service.
func TestBuildInfoMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(version.Collector("ingest"))
	const want = `
# HELP vodpipe_build_info The running vodpipe: 1, labelled with its version, commit, Go version and service.
# TYPE vodpipe_build_info gauge
`
	in := version.Get()
	line := `vodpipe_build_info{commit="` + in.Commit + `",goversion="` + in.GoVersion + `",service="ingest",version="` + version.Release + `"} 1` + "\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want+line), "vodpipe_build_info"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(in.String(), "vodpipe "+version.Release+" (") {
		t.Fatalf("String() = %q", in.String())
	}
}
