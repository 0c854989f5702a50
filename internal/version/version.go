// Package version says which vodpipe this is: the release (the newest
// entry of CHANGELOG.md, checked by a test) and what the Go toolchain
// stamped into the binary (the commit, its time, whether the tree had
// changes). `vodpipe version` prints it and every service exports it as
// the vodpipe_build_info metric.
package version

import (
	"fmt"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Release is this tree's version, the newest entry of CHANGELOG.md.
const Release = "0.10.0"

// Info is one binary's version.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	CommitAt  string `json:"commitTime,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goVersion"`
}

// Get reads the binary's build information. A binary built outside a git
// checkout (or by go run, which stamps no commit) has no commit.
func Get() Info {
	in := Info{Version: Release}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	in.GoVersion = bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.time":
			in.CommitAt = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	return in
}

// String is the one-line form: vodpipe 0.9.0 (commit 0123abcd, 2026-12-05T20:00:00Z, go1.26).
func (in Info) String() string {
	commit := "no commit stamped"
	if in.Commit != "" {
		commit = "commit " + in.Commit[:min(12, len(in.Commit))]
		if in.Modified {
			commit += "+changes"
		}
		if in.CommitAt != "" {
			commit += ", " + in.CommitAt
		}
	}
	return fmt.Sprintf("vodpipe %s (%s, %s)", in.Version, commit, in.GoVersion)
}

// Collector is the vodpipe_build_info gauge: 1, labelled with the version,
// commit and Go version, as Prometheus' own build_info metrics are.
func Collector(service string) prometheus.Collector {
	in := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "vodpipe_build_info",
		Help:        "The running vodpipe: 1, labelled with its version, commit, Go version and service.",
		ConstLabels: prometheus.Labels{"version": in.Version, "commit": in.Commit, "goversion": in.GoVersion, "service": service}})
	g.Set(1)
	return g
}
