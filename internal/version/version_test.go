package version_test

import (
	"os"
	"regexp"
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
