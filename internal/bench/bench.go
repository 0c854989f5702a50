// Package bench measures vodpipe's performance figures P1..P7 side by side in
// one run, each against a baseline measured in that same run, for the
// `vodpipe bench` command:
//
//   - P1: a worker process uploading a file against cos-go-sdk-v5's own
//     Object.Upload (same part size and concurrency, vodsim in discard mode);
//   - P2: vodsim's multipart upload against a minimal handler that does only
//     COS's per-byte work (MD5 and CRC-64) and discards the bytes;
//   - P3: many small jobs end to end through the whole stack in one process:
//     jobs per second and latency percentiles;
//   - P3b: the same files through a bare loop of ApplyUploadUGC, PutObject
//     and CommitUploadUGC with P3's concurrency: P3's share of its jobs/s;
//   - P4: a worker process's peak RSS uploading a large source, against the
//     bytes of its parts in flight;
//   - P5: bytes sent again after a worker process is SIGKILLed half way;
//   - P6: 1, 2 and 4 worker processes against a vodsim that limits each
//     request's bandwidth: the speed-up;
//   - P7: GET /v1/jobs latency (p50, p99; all jobs and a state filter) and
//     the ingest process's RSS at 10,000, 100,000 and 1,000,000 jobs stored.
//
// Everything runs on loopback with its own embedded NATS server, vodsim and
// signature service per measurement; every measurement is bounded in time.
// Worker processes are started with Options.Worker (`vodpipe worker`).
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// IDs are the measurements, in the order they run.
var IDs = []string{"P1", "P2", "P3", "P3b", "P4", "P5", "P6", "P7"}

// Options configure a run.
type Options struct {
	// Only lists the measurements to run (IDs); empty runs all.
	Only []string
	// Quick uses small sizes: a smoke run of seconds, whose figures mean little.
	Quick bool
	// Worker is the command that runs one worker configured by VODPIPE_*
	// variables, e.g. {"/usr/local/bin/vodpipe", "worker"}.
	Worker []string
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
	// Dir holds sources and data; a temporary folder, removed at the end, when empty.
	Dir string
	// NoHostReference leaves out the host reference around P3's rounds, so
	// that a CPU profile of the process holds P3 alone (the reference's
	// goroutines carry a profiler label, its garbage collection cannot).
	NoHostReference bool
}

// Verdict tells whether a figure met its target.
type Verdict int

// Verdicts.
const (
	NoTarget Verdict = iota // informational figure
	Met
	Missed
	Failed // the measurement did not finish
)

// String is the verdict as the table shows it.
func (v Verdict) String() string {
	switch v {
	case Met:
		return "yes"
	case Missed:
		return "NO"
	case Failed:
		return "ERROR"
	}
	return "—"
}

// Result is one row of the table.
type Result struct {
	ID       string
	What     string
	Measured string
	Baseline string
	// Ratio of measured to baseline; NaN when there is none.
	Ratio   float64
	Target  string
	Verdict Verdict
	// Setup says how the figure was measured (sizes, concurrency, limits).
	Setup string
	// Samples are figures of the row as numbers, for plots (P7: jobs,
	// p50_ms, p99_ms, filtered_p50_ms, filtered_p99_ms,
	// nats_heap_bytes_per_job).
	Samples map[string]float64
	Err     error
}

// Check validates a list of measurement ids.
func Check(only []string) error {
	for _, id := range only {
		if !slices.Contains(IDs, id) {
			return fmt.Errorf("bench: unknown measurement %q (have %s)", id, strings.Join(IDs, ", "))
		}
	}
	return nil
}

// Run runs the selected measurements one after another and returns their
// rows. A measurement that fails gives a row with Err and Verdict Failed and
// the run goes on; the error returned is the first of them, or ctx's.
func Run(ctx context.Context, o Options) ([]Result, error) {
	if err := Check(o.Only); err != nil {
		return nil, err
	}
	if len(o.Worker) == 0 {
		return nil, errors.New("bench: Options.Worker is required")
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "vodpipe-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	src, err := newSources(dir)
	if err != nil {
		return nil, err
	}
	r := &runner{o: o, sz: sizesFor(o.Quick), dir: dir, src: src}
	measures := map[string]func(context.Context) ([]Result, error){
		"P1": r.p1, "P2": r.p2, "P3": r.p3, "P3b": r.p3b, "P4": r.p4, "P5": r.p5, "P6": r.p6, "P7": r.p7,
	}
	var out []Result
	var first error
	for _, id := range IDs {
		if !r.selected(id) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		r.logf("%s: starting", id)
		start := time.Now()
		timeout := r.sz.timeout
		if id == "P7" {
			timeout = r.sz.listTimeout // storing a million jobs takes minutes
		}
		mctx, cancel := context.WithTimeout(ctx, timeout)
		rows, err := measures[id](mctx)
		cancel()
		if err != nil {
			err = fmt.Errorf("%s: %w", id, err)
			rows = append(rows, Result{ID: id, What: whatOf[id], Ratio: math.NaN(), Verdict: Failed, Err: err})
			if first == nil {
				first = err
			}
		}
		r.logf("%s: done in %s", id, time.Since(start).Round(100*time.Millisecond))
		out = append(out, rows...)
	}
	return out, first
}

// whatOf names each measurement for a row that has nothing else.
var whatOf = map[string]string{
	"P1":  "worker upload vs raw cos-go-sdk-v5 Object.Upload",
	"P2":  "vodsim multipart vs minimal MD5+CRC-64 handler",
	"P3":  "small jobs end to end, all in one process",
	"P3b": "P3 against a bare upload loop",
	"P4":  "worker peak RSS vs parts in flight × part size",
	"P5":  "bytes re-sent after SIGKILL at 50 %",
	"P6":  "worker processes vs per-request bandwidth limit",
	"P7":  "job listing latency and ingest RSS vs jobs stored",
}

// sizes are the dimensions of a run: the issue's, or a quick smoke run's.
type sizes struct {
	upload      int64 // P1, P2: file size
	rounds      int   // P1, P2: alternated rounds, the median is reported
	partSize    int64 // P1, P2, P4, P5
	concurrency int   // P1, P2, P4, P5: parts in flight
	jobs        int   // P3: number of jobs
	jobSize     int64 // P3: size of each
	big         int64 // P4: source size
	resume      int64 // P5: file size
	scaleJobs   int   // P6: number of jobs
	scaleSize   int64 // P6: size of each
	scalePart   int64 // P6: part size
	scaleBW     int64 // P6: bytes per second of each request body
	listLevels  []int // P7: jobs stored at each measurement
	listTimeout time.Duration
	timeout     time.Duration
}

func sizesFor(quick bool) sizes {
	if quick {
		return sizes{upload: 48 << 20, rounds: 1, partSize: 8 << 20, concurrency: 4, jobs: 60, jobSize: 64 << 10,
			big: 96 << 20, resume: 48 << 20, scaleJobs: 8, scaleSize: 3 << 20, scalePart: 1 << 20, scaleBW: 8 << 20,
			listLevels: []int{2000, 10000}, listTimeout: 90 * time.Second, timeout: 90 * time.Second}
	}
	return sizes{upload: 1 << 30, rounds: 5, partSize: 8 << 20, concurrency: 4, jobs: 1000, jobSize: 64 << 10,
		big: 4 << 30, resume: 1 << 30, scaleJobs: 8, scaleSize: 32 << 20, scalePart: 8 << 20, scaleBW: 16 << 20,
		listLevels: []int{10_000, 100_000, 1_000_000}, listTimeout: 30 * time.Minute, timeout: 6 * time.Minute}
}

// runner carries what the measurements share.
type runner struct {
	// p3Pairs are P3's rounds with the bare loop's right after each, when
	// P3b runs too.
	p3Pairs []p3Pair
	o       Options
	sz      sizes
	dir     string
	src     *sources
}

// selected reports whether measurement id runs.
func (r *runner) selected(id string) bool { return len(r.o.Only) == 0 || slices.Contains(r.o.Only, id) }

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.o.Progress, "vodpipe bench: "+format+"\n", args...)
}

// verdict is Met when ok, else Missed.
func verdict(ok bool) Verdict {
	if ok {
		return Met
	}
	return Missed
}

// mbps is bytes per second in MB/s (10^6), as Go benchmarks count.
func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / d.Seconds() / 1e6 }

// median of xs, the lower middle one for an even count; 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return slices.Sorted(slices.Values(xs))[(len(xs)-1)/2]
}

// mib formats a byte count in MiB, or KiB below one MiB.
func mib(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
