package cli

import (
	"fmt"
	"math"
	"strings"

	"github.com/vodpipe/vodpipe/internal/bench"
)

// p7Plot draws P7's listing latency against the jobs stored (log scale) as
// an SVG, with the targets as dashed lines: a flat line is the goal. It is
// "" when the results hold fewer than two P7 levels.
func p7Plot(results []bench.Result) string {
	var rows []bench.Result
	for _, r := range results {
		if r.Samples["jobs"] > 0 {
			rows = append(rows, r)
		}
	}
	if len(rows) < 2 {
		return ""
	}
	const w, h, left, right, top, bottom = 640.0, 360.0, 60.0, 150.0, 30.0, 50.0
	lo, hi := math.Log10(rows[0].Samples["jobs"]), math.Log10(rows[len(rows)-1].Samples["jobs"])
	ymax := 110.0 // above the filtered target
	for _, r := range rows {
		ymax = math.Max(ymax, 1.1*math.Max(r.Samples["p99_ms"], r.Samples["filtered_p99_ms"]))
	}
	x := func(jobs float64) float64 { return left + (math.Log10(jobs)-lo)/math.Max(hi-lo, 1e-9)*(w-left-right) }
	y := func(ms float64) float64 { return h - bottom - ms/ymax*(h-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14">P7: GET /v1/jobs?limit=100 latency against jobs stored</text>`+"\n", left)
	// Axes, ticks at the levels, and the targets.
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, h-bottom, w-right, h-bottom)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, top, left, h-bottom)
	for _, r := range rows {
		jobs := r.Samples["jobs"]
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x(jobs), h-bottom+18, strings.TrimPrefix(r.ID, "P7 "))
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">jobs stored</text>`+"\n", (left+w-right)/2, h-12)
	for ms := 0.0; ms <= ymax; ms += 25 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%.0f ms</text>`+"\n", left-6, y(ms)+4, ms)
	}
	for _, t := range []struct {
		ms    float64
		label string
	}{{50, "target p99"}, {100, "target, filtered"}} {
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="gray" stroke-dasharray="4 4"/>`+"\n", left, y(t.ms), w-right, y(t.ms))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" fill="gray">%s</text>`+"\n", w-right+6, y(t.ms)+4, t.label)
	}
	// One line per figure.
	for i, s := range []struct{ key, label, color string }{
		{"p99_ms", "p99", "#c0392b"}, {"p50_ms", "p50", "#2980b9"},
		{"filtered_p99_ms", "state=running p99", "#e67e22"}, {"filtered_p50_ms", "state=running p50", "#27ae60"},
	} {
		var pts []string
		for _, r := range rows {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(r.Samples["jobs"]), y(r.Samples[s.key])))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="%s">%s</text>`+"\n", w-right+6, top+16*float64(i)+60, s.color, s.label)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
