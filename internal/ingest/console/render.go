package console

import (
	"encoding/json"
	"fmt"
	"html/template"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vodpipe/vodpipe/pkg/client"
)

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// bps is a rate in bytes per second.
func bps(f float64) string { return humanBytes(int64(f)) + "/s" }

func percent(done, total int64) string {
	if total <= 0 {
		return "0%"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(done)/float64(total))
}

func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func prettyJSON(v any) string {
	var b []byte
	var err error
	if raw, ok := v.(json.RawMessage); ok {
		var x any
		if json.Unmarshal(raw, &x) != nil {
			return string(raw)
		}
		v = x
	}
	if b, err = json.MarshalIndent(v, "", "  "); err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// excerpt cuts s to at most n bytes on a rune boundary.
func excerpt(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// throughputChart draws the hour's completed jobs per minute as an SVG bar
// chart (failed jobs stacked on top), server-side: no script, no styles
// beyond the console's stylesheet.
func throughputChart(minutes []client.ThroughputMinute) template.HTML {
	const w, h, bar = 600, 120, 10
	var top uint64 = 1
	for _, m := range minutes {
		top = max(top, m.Completed+m.Failed)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="completed jobs per minute over the last hour, highest %d">`, w, h+14, top)
	for i, m := range minutes {
		x := i * bar
		ch := int(float64(m.Completed) / float64(top) * h)
		fh := int(float64(m.Failed) / float64(top) * h)
		fmt.Fprintf(&b, `<rect class="ok" x="%d" y="%d" width="%d" height="%d"><title>%s: %d completed, %d failed, %s</title></rect>`,
			x, h-ch, bar-1, ch, m.Start.Format("15:04"), m.Completed, m.Failed, humanBytes(m.Bytes))
		if fh > 0 {
			fmt.Fprintf(&b, `<rect class="bad" x="%d" y="%d" width="%d" height="%d"/>`, x, h-ch-fh, bar-1, fh)
		}
	}
	if len(minutes) > 0 {
		fmt.Fprintf(&b, `<text x="0" y="%d">%s</text><text x="%d" y="%d" text-anchor="end">%s</text>`,
			h+12, minutes[0].Start.Format("15:04"), w, h+12, minutes[len(minutes)-1].Start.Format("15:04"))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built from numbers and fixed text only
}
