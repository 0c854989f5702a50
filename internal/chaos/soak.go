package chaos

// The soak (`vodpipe chaos --soak 30m`): jobs submitted all along, a few in
// flight at any time, the faults repeating, and the services' goroutines,
// heap, open files and RSS, JetStream's consumers and the jobs' latency
// sampled over the run. It fails when a series grows without bound (its
// last third well above its first, past warm-up) or latency drifts upward,
// and plots every series into an SVG.

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// SoakReport is what the soak sampled.
type SoakReport struct {
	// Series are the sampled values by name ("ingest goroutines", ...),
	// each at the times of Times (seconds since the soak began).
	Times  []float64
	Series map[string][]float64
	// Submitted counts the soak's jobs.
	Submitted int
	// Plot is the SVG's path ("" when none was written).
	Plot string
	// Lines summarise each series: first third, last third, verdict.
	Lines []string
}

// soakSample is one sampling of every series.
type soakSample struct {
	at     float64   // seconds since the soak began
	when   time.Time // the same, on the clock
	values map[string]float64
}

// latencyWindow is how far back from a sample the jobs whose latency it
// gives were submitted: many jobs, faults of every kind among them.
const latencyWindow = 30 * time.Second

// withLatency adds to each sample the p50 and p90 latency (submission to
// first job.completed webhook) of the jobs submitted in the latencyWindow
// before it; jobs with no webhook count as still running at the end.
func withLatency(samples []soakSample, recv *receiver, submitted map[string]time.Time) []soakSample {
	ids := make([]string, 0, len(submitted))
	for id := range submitted {
		ids = append(ids, id)
	}
	done := recv.doneAt(ids)
	end := time.Now()
	for _, s := range samples {
		var ls []float64
		for id, at := range submitted {
			if at.After(s.when) || at.Before(s.when.Add(-latencyWindow)) {
				continue
			}
			d, ok := done[id]
			if !ok {
				d = end
			}
			ls = append(ls, d.Sub(at).Seconds())
		}
		if len(ls) < 5 {
			continue
		}
		slices.Sort(ls)
		s.values["job latency p50 (s)"] = ls[len(ls)/2]
		s.values["job latency p90 (s)"] = ls[len(ls)*9/10]
	}
	return samples
}

// soakSources writes the pool of sources (and the cover) the jobs of a soak
// or an upgrade run share (vodsim keeps no bytes, and a job's file is
// matched by its name, the job id).
func soakSources(root string, rng *rand.Rand, o Options) ([]string, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	if err := writeRandom(filepath.Join(root, "cover.jpg"), 16<<10, rng); err != nil {
		return nil, err
	}
	lo, hi := math.Log(float64(o.MinSize)), math.Log(float64(o.MaxSize))
	paths := make([]string, 32)
	for i := range paths {
		paths[i] = filepath.Join(root, fmt.Sprintf("pool-%02d.mp4", i))
		if err := writeRandom(paths[i], int64(math.Exp(lo+rng.Float64()*(hi-lo))), rng); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// runSoak submits jobs for o.Soak, keeping about inFlight unfinished, and
// samples the services every interval. It returns every job submitted,
// when, and the samples (withLatency adds the jobs' latency, analyseSoak
// judges them).
func runSoak(ctx context.Context, o Options, f *feeder, sys *services,
	workerAddr string, logf func(string, ...any)) ([]*job.Job, map[string]time.Time, []soakSample, error) {
	interval := max(o.Soak/120, 5*time.Second)
	start := time.Now()

	// The sampler has a goroutine of its own: a submission that waits on a
	// fault (ingest restarting, a NATS election) must not hold it up.
	var mu sync.Mutex
	var samples []soakSample
	sctx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			s := soakSample{at: time.Since(start).Seconds(), when: time.Now(), values: sampleServices(sctx, sys, workerAddr)}
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
			logf("soak: %s", brief(s.values))
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	err := f.feed(ctx, func() bool { return time.Since(start) >= o.Soak })
	stopSampling()
	wg.Wait()
	logf("soak: %d jobs submitted, %d done", len(f.jobs), len(f.done))
	return f.jobs, f.submitted, samples, err
}

// feeder submits jobs all along (a soak's, an upgrade run's), from a pool
// of sources, keeping about inFlight of them unfinished: every 4th with a
// cover, every 3rd with a task flow, one in five with one-time signatures.
type feeder struct {
	api       *client.Client
	recv      *receiver
	pool      []string
	cover     string
	rng       *rand.Rand
	prefix    string
	inFlight  int
	jobs      []*job.Job
	submitted map[string]time.Time
	done      map[string]bool
}

func newFeeder(api *client.Client, recv *receiver, root string, pool []string, rng *rand.Rand, prefix string, inFlight int) *feeder {
	return &feeder{api: api, recv: recv, pool: pool, cover: filepath.Join(root, "cover.jpg"), rng: rng, prefix: prefix,
		inFlight: inFlight, submitted: map[string]time.Time{}, done: map[string]bool{}}
}

// feed tops the unfinished jobs up to inFlight every 200 ms until stop
// says so. A refused batch (ingest restarting, NATS electing) is made
// again next round.
func (f *feeder) feed(ctx context.Context, stop func() bool) error {
	for !stop() {
		var open []string // jobs done since the last look
		for _, j := range f.jobs {
			if !f.done[j.ID] {
				open = append(open, j.ID)
			}
		}
		for id := range f.recv.doneAt(open) {
			f.done[id] = true
		}
		if n := len(f.jobs) - len(f.done); n < f.inFlight {
			batch := make([]*job.Job, 0, f.inFlight-n)
			for range f.inFlight - n {
				batch = append(batch, f.next(len(f.jobs)+len(batch)))
			}
			resp, err := f.api.SubmitBatch(ctx, batch)
			if err == nil && resp.Queued+resp.Duplicate == len(batch) {
				now := time.Now()
				for _, j := range batch {
					f.submitted[j.ID] = now
				}
				f.jobs = append(f.jobs, batch...)
			} else if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// next is the n-th job.
func (f *feeder) next(n int) *job.Job {
	id := fmt.Sprintf("%s%05d", f.prefix, n)
	j := &job.Job{V: 1, ID: id, Source: "file://" + f.pool[f.rng.IntN(len(f.pool))], MediaName: id}
	if n%4 == 1 {
		j.Cover = "file://" + f.cover
	}
	if n%3 == 2 {
		j.Procedure = "LongVideoPreset"
	}
	if f.rng.IntN(5) == 0 {
		j.OneTimeSignature = true
	}
	return j
}

// sampleServices reads the series of ingest, notify and the worker that is
// never killed (Go's and the process's collectors) and JetStream's
// consumers. A service that does not answer leaves its values out.
func sampleServices(ctx context.Context, sys *services, workerAddr string) map[string]float64 {
	out := map[string]float64{}
	for _, svc := range []struct{ name, url string }{
		{"ingest", sys.ingestURL}, {"notify", sys.notifyURL}, {"worker w1", "http://" + workerAddr},
	} {
		fams, err := metricFamilies(svc.url + "/metrics")
		if err != nil {
			continue
		}
		for _, m := range []struct{ metric, name string }{
			{"go_goroutines", "goroutines"}, {"go_memstats_heap_inuse_bytes", "heap (MiB)"},
			{"process_open_fds", "open files"}, {"process_resident_memory_bytes", "RSS (MiB)"},
		} {
			f, ok := fams[m.metric]
			if !ok || len(f.GetMetric()) == 0 {
				continue
			}
			v := f.GetMetric()[0].GetGauge().GetValue()
			if strings.HasSuffix(m.name, "(MiB)") {
				v /= 1 << 20
			}
			out[svc.name+" "+m.name] = v
		}
	}
	if n, err := countConsumers(ctx, sys.js); err == nil {
		out["JetStream consumers"] = float64(n)
	}
	return out
}

// countConsumers counts the consumers of every stream.
func countConsumers(ctx context.Context, js jetstream.JetStream) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n := 0
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return 0, err
		}
		cs := s.ConsumerNames(ctx)
		for range cs.Name() {
			n++
		}
		if err := cs.Err(); err != nil {
			return 0, err
		}
	}
	return n, names.Err()
}

func brief(v map[string]float64) string {
	var parts []string
	for _, k := range []string{"ingest goroutines", "notify goroutines", "worker w1 goroutines", "JetStream consumers", "job latency p50 (s)"} {
		if x, ok := v[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.4g", k, x))
		}
	}
	return strings.Join(parts, ", ")
}

// growthFloor is, per kind of series, how much a series may rise from its
// first third to its last before it counts as growing (besides half again
// its first value): noise a healthy process shows.
func growthFloor(name string) float64 {
	switch {
	case strings.HasSuffix(name, "goroutines"):
		return 50
	case strings.HasSuffix(name, "(MiB)"):
		return 32
	case strings.HasSuffix(name, "open files"):
		return 20
	case strings.HasSuffix(name, "consumers"):
		return 4
	case strings.Contains(name, "latency"):
		return 5 // seconds: a fault cycle's stall moves a window's p50 by a few
	}
	return 0
}

// trend is a series' median over its first and its last third, warm-up
// (the first fifth) left out.
func trend(vs []float64) (first, last float64, ok bool) {
	vs = vs[len(vs)/5:]
	if len(vs) < 6 {
		return 0, 0, false
	}
	third := len(vs) / 3
	return median(vs[:third]), median(vs[len(vs)-third:]), true
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2]
}

// grows reports whether a series with these thirds grows without bound.
func grows(name string, first, last float64) bool {
	return last > first*1.5 && last-first > growthFloor(name)
}

// jobLatency is one job's submission (seconds since the soak began) and
// latency (seconds to its first job.completed webhook).
type jobLatency struct{ at, latency float64 }

// latencies are the soak's jobs' latencies, in submission order; a job
// with no webhook counts as running until now.
func latencies(recv *receiver, submitted map[string]time.Time, start time.Time) []jobLatency {
	ids := make([]string, 0, len(submitted))
	for id := range submitted {
		ids = append(ids, id)
	}
	done := recv.doneAt(ids)
	now := time.Now()
	out := make([]jobLatency, 0, len(ids))
	for id, at := range submitted {
		d, ok := done[id]
		if !ok {
			d = now
		}
		out = append(out, jobLatency{at.Sub(start).Seconds(), d.Sub(at).Seconds()})
	}
	slices.SortFunc(out, func(a, b jobLatency) int { return int(math.Copysign(1, a.at-b.at)) })
	return out
}

// latencyThirds is the p50 and p90 latency of the jobs submitted in the
// first and in the last third of the soak, warm-up (the first fifth) left
// out: many jobs each, whatever faults each met, rather than the windows'
// p50s, which swing with every fault cycle's stall.
func latencyThirds(js []jobLatency, quantile float64) (first, last float64, ok bool) {
	js = js[len(js)/5:]
	if len(js) < 30 {
		return 0, 0, false
	}
	q := func(part []jobLatency) float64 {
		ls := make([]float64, len(part))
		for i, j := range part {
			ls[i] = j.latency
		}
		slices.Sort(ls)
		return ls[int(float64(len(ls)-1)*quantile)]
	}
	third := len(js) / 3
	return q(js[:third]), q(js[len(js)-third:]), true
}

// analyseSoak turns the samples into series, judges each (latency by the
// jobs of each third when given) and plots them.
func analyseSoak(samples []soakSample, jobs []jobLatency, submitted int, o Options, rep *Report) *SoakReport {
	sr := &SoakReport{Series: map[string][]float64{}, Submitted: submitted}
	names := map[string]bool{}
	for _, s := range samples {
		for k := range s.values {
			names[k] = true
		}
	}
	for _, s := range samples {
		sr.Times = append(sr.Times, s.at)
		for k := range names {
			v, ok := s.values[k]
			if !ok {
				v = math.NaN() // not answered then
			}
			sr.Series[k] = append(sr.Series[k], v)
		}
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range names {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		vs := slices.DeleteFunc(slices.Clone(sr.Series[k]), math.IsNaN)
		first, last, ok := trend(vs)
		if q, isLatency := map[string]float64{"job latency p50 (s)": 0.5, "job latency p90 (s)": 0.9}[k]; isLatency && len(jobs) > 0 {
			first, last, ok = latencyThirds(jobs, q)
		}
		if !ok {
			rep.Violations = append(rep.Violations, fmt.Sprintf("soak: %q has %d samples, too few to judge: run longer", k, len(vs)))
			continue
		}
		verdict := "flat"
		if grows(k, first, last) {
			verdict = "GROWS"
			what := "grows without bound"
			if strings.Contains(k, "latency") {
				what = "drifts upward"
			}
			rep.Violations = append(rep.Violations, fmt.Sprintf("soak: %s %s: %.4g over the first third, %.4g over the last", k, what, first, last))
		}
		sr.Lines = append(sr.Lines, fmt.Sprintf("%-34s %10.4g → %-10.4g %s", k, first, last, verdict))
	}
	if o.SoakPlot != "" {
		if err := writeSoakSVG(o.SoakPlot, sr, keys); err != nil {
			rep.Violations = append(rep.Violations, "soak: plot: "+err.Error())
		} else {
			sr.Plot = o.SoakPlot
		}
	}
	return sr
}

// printSoak writes the soak's section of the report.
func printSoak(w io.Writer, sr *SoakReport) {
	if sr == nil {
		return
	}
	span := 0.0
	if len(sr.Times) > 0 {
		span = sr.Times[len(sr.Times)-1]
	}
	fmt.Fprintf(w, "  soak:       %d jobs submitted over %s, %d samples (median of the first third → of the last, warm-up left out; latency: of the jobs submitted in each third)\n",
		sr.Submitted, (time.Duration(span) * time.Second).Round(time.Second), len(sr.Times))
	for _, l := range sr.Lines {
		fmt.Fprintf(w, "              %s\n", l)
	}
	if sr.Plot != "" {
		fmt.Fprintf(w, "              plotted into %s\n", sr.Plot)
	}
}

// writeSoakSVG plots every series against time, one small chart each.
func writeSoakSVG(path string, sr *SoakReport, keys []string) error {
	const cw, ch, cols = 360, 150, 3
	rows := (len(keys) + cols - 1) / cols
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", cols*cw, rows*ch+24)
	fmt.Fprintf(&b, `<text x="8" y="16" font-size="13">vodpipe chaos --soak: %d jobs, %d samples</text>`+"\n", sr.Submitted, len(sr.Times))
	tmax := 1.0
	if len(sr.Times) > 0 {
		tmax = max(sr.Times[len(sr.Times)-1], 1)
	}
	for i, k := range keys {
		x0, y0 := float64(i%cols*cw), float64(24+i/cols*ch)
		vs := sr.Series[k]
		hi := 0.0
		for _, v := range vs {
			if !math.IsNaN(v) {
				hi = max(hi, v)
			}
		}
		hi = max(hi*1.1, 1)
		const px, py, pw, ph = 40, 18, cw - 56, ch - 44
		fmt.Fprintf(&b, `<g transform="translate(%.0f,%.0f)"><text x="%d" y="12">%s</text>`, x0, y0, px, k)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#ccc"/>`, px, py, pw, ph)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%.3g</text><text x="%d" y="%d" text-anchor="end">0</text>`, px-4, py+8, hi, px-4, py+ph)
		fmt.Fprintf(&b, `<text x="%d" y="%d">0 s</text><text x="%d" y="%d" text-anchor="end">%.0f s</text>`, px, py+ph+14, px+pw, py+ph+14, tmax)
		var pts []string
		for j, v := range vs {
			if math.IsNaN(v) || j >= len(sr.Times) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px+sr.Times[j]/tmax*pw, py+ph-v/hi*ph))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="%s"/></g>`+"\n", strings.Join(pts, " "))
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
