package chaos

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The soak's judge: a series that levels off, however noisy, passes; one
// that keeps rising fails as growth, latency as drift; warm-up is left
// out; too few samples fail rather than pass; every series is plotted.
func TestSoakJudgesGrowthAndDrift(t *testing.T) {
	var samples []soakSample
	for i := range 60 {
		f := float64(i)
		samples = append(samples, soakSample{at: f * 10, values: map[string]float64{
			// Warm-up from 10 to 200, then level with noise.
			"ingest goroutines": math.Min(10+f*40, 200) + float64(i%7),
			// A leak: 2 MiB more every sample.
			"notify heap (MiB)": 20 + 2*f,
			// Latency rising all along.
			"job latency p50 (s)": 1 + f/4,
			// Level consumers.
			"JetStream consumers": 12,
		}})
	}
	samples[3].values["late"] = 1 // a series seen once: too few to judge
	plot := filepath.Join(t.TempDir(), "soak.svg")
	rep := &Report{}
	sr := analyseSoak(samples, nil, 1234, Options{SoakPlot: plot}, rep)
	all := strings.Join(rep.Violations, "\n")
	for _, want := range []string{"notify heap (MiB) grows without bound", "job latency p50 (s) drifts upward", `"late" has 1 samples, too few`} {
		if !strings.Contains(all, want) {
			t.Errorf("violations lack %q:\n%s", want, all)
		}
	}
	for _, flat := range []string{"ingest goroutines", "JetStream consumers"} {
		if strings.Contains(all, flat) {
			t.Errorf("%s is level after warm-up, judged growing:\n%s", flat, all)
		}
	}
	// Latency judged by the jobs of each third: a stall every few jobs
	// (bimodal windows) is level; a queue that keeps growing is not.
	var level, rising []jobLatency
	for i := range 600 {
		l := 1.0
		if i%4 == 0 {
			l = 40 // a fault cycle's stall
		}
		level = append(level, jobLatency{float64(i), l})
		rising = append(rising, jobLatency{float64(i), 1 + float64(i)/20})
	}
	if f, l, ok := latencyThirds(level, 0.5); !ok || grows("job latency p50 (s)", f, l) {
		t.Errorf("level latency with stalls judged growing: %v → %v", f, l)
	}
	if f, l, ok := latencyThirds(rising, 0.5); !ok || !grows("job latency p50 (s)", f, l) {
		t.Errorf("rising latency judged level: %v → %v", f, l)
	}
	svg, err := os.ReadFile(plot)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(svg), "<polyline"); n != 5 || sr.Plot != plot || sr.Submitted != 1234 {
		t.Fatalf("plot has %d lines (want 5), report %+v", n, sr)
	}
}
