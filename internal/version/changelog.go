package version

import (
	"fmt"
	"regexp"
	"slices"
)

// Entry is one version's heading in CHANGELOG.md:
// "## 0.9.0 — 2026-12-06 (commit 124ab8c)", or "## 0.10.0 — unreleased (main)"
// for the version main is working towards (no commit).
type Entry struct {
	Version, Date string
	// Commit is the commit of main the entry describes ("" when unreleased).
	Commit string
}

var entryHeading = regexp.MustCompile(`(?m)^## (\d+\.\d+\.\d+) — (\S+)(?: \(commit ([0-9a-f]{7,40})\))?`)

// Entries reads the version headings of a changelog, newest first.
func Entries(changelog []byte) []Entry {
	var out []Entry
	for _, m := range entryHeading.FindAllSubmatch(changelog, -1) {
		out = append(out, Entry{Version: string(m[1]), Date: string(m[2]), Commit: string(m[3])})
	}
	return out
}

// Previous is the newest released entry below release's own: the version
// a rolling upgrade to release starts from (and a downgrade returns to).
func Previous(changelog []byte, release string) (Entry, error) {
	all := Entries(changelog)
	i := slices.IndexFunc(all, func(e Entry) bool { return e.Version == release })
	if i < 0 {
		return Entry{}, fmt.Errorf("the changelog has no entry for %s", release)
	}
	for _, e := range all[i+1:] {
		if e.Commit != "" {
			return e, nil
		}
	}
	return Entry{}, fmt.Errorf("the changelog names no released version before %s with its commit", release)
}
