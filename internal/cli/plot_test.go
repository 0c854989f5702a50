package cli

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/internal/bench"
)

// TestP7PlotDrawsEveryLevel: the plot is well-formed SVG with one point
// per level on each line, and there is none for a single level.
func TestP7PlotDrawsEveryLevel(t *testing.T) {
	row := func(id string, jobs, p99 float64) bench.Result {
		return bench.Result{ID: id, Samples: map[string]float64{"jobs": jobs, "p50_ms": p99 / 4, "p99_ms": p99,
			"filtered_p50_ms": p99 / 5, "filtered_p99_ms": p99 / 2}}
	}
	rows := []bench.Result{{ID: "P3"}, row("P7 10k", 1e4, 11), row("P7 100k", 1e5, 13), row("P7 1M", 1e6, 140)}
	svg := p7Plot(rows)
	if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil {
		t.Fatalf("not XML: %v\n%s", err, svg)
	}
	if n := strings.Count(svg, "<polyline"); n != 4 {
		t.Fatalf("%d lines, want 4", n)
	}
	for _, line := range strings.Split(svg, "\n") {
		if strings.HasPrefix(line, "<polyline") && strings.Count(line, ",") != 3 {
			t.Fatalf("a line without one point per level: %s", line)
		}
	}
	for _, label := range []string{">10k<", ">100k<", ">1M<", "target p99"} {
		if !strings.Contains(svg, label) {
			t.Fatalf("no %q in\n%s", label, svg)
		}
	}
	if p7Plot(rows[:2]) != "" {
		t.Fatal("a plot of one level")
	}
}
