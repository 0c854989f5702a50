package bench

import (
	"context"
	"fmt"

	"github.com/vodpipe/vodpipe/pkg/job"
)

// scaleWorkers are the worker process counts P6 compares.
var scaleWorkers = []int{1, 2, 4}

// p6 runs the same jobs with 1, 2 and 4 worker processes against a vodsim
// that limits each request on its own, so that throughput can only grow
// with more parts in flight: the speed-up shows whether workers scale out.
func (r *runner) p6(ctx context.Context) ([]Result, error) {
	sz := r.sz
	paths, err := r.src.files(sz.scaleSize, sz.scaleJobs)
	if err != nil {
		return nil, err
	}
	const perWorker = 2 // parts in flight per worker process
	setup := fmt.Sprintf("%d jobs of %s random files; each worker process runs 1 job at a time with %s parts, %d in flight; "+
		"vodsim (discard mode) limits every request body to %s/s on its own, as a path of that speed per connection would; "+
		"timed from the first submit to the last job.completed; the issue sets no speed-up target, 0.8 × workers is ours",
		sz.scaleJobs, mib(sz.scaleSize), mib(sz.scalePart), perWorker, mib(sz.scaleBW))
	var rows []Result
	var one float64
	for _, n := range scaleWorkers {
		rate, err := r.scaleRun(ctx, n, perWorker, paths)
		if err != nil {
			return rows, fmt.Errorf("%d workers: %w", n, err)
		}
		what := fmt.Sprintf("%d worker processes, per-request bandwidth limit", n)
		if n == 1 {
			what = "1 worker process, per-request bandwidth limit"
		}
		r.logf("P6: %s: %.1f MB/s", what, rate)
		row := Result{ID: fmt.Sprintf("P6 ×%d", n), What: what,
			Measured: fmt.Sprintf("%.1f MB/s", rate), Setup: setup}
		if n == 1 {
			one = rate
			ceiling := float64(perWorker) * float64(sz.scaleBW) / 1e6
			row.Baseline = fmt.Sprintf("limit %d × %s/s = %.1f MB/s", perWorker, mib(sz.scaleBW), ceiling)
			row.Ratio, row.Target, row.Verdict = rate/ceiling, "—", NoTarget
		} else {
			target := 0.8 * float64(n)
			row.Baseline = fmt.Sprintf("1 worker %.1f MB/s", one)
			row.Ratio, row.Target = rate/one, fmt.Sprintf("≥ %.1f speed-up", target)
			row.Verdict = verdict(row.Ratio >= target)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// scaleRun starts n worker processes on a fresh lab and returns the MB/s of
// the jobs uploading paths.
func (r *runner) scaleRun(ctx context.Context, n, inFlight int, paths []string) (float64, error) {
	sz := r.sz
	l, err := r.newLab(ctx, fmt.Sprintf("p6-%d", n), labConfig{requestBandwidth: sz.scaleBW, queue: labQueue})
	if err != nil {
		return 0, err
	}
	defer l.Close()
	for i := range n {
		wc := workerConfig{id: fmt.Sprintf("p6-%d-%d", n, i+1), partSize: sz.scalePart, concurrency: inFlight, jobs: 1}
		if _, err := l.startWorker(ctx, wc); err != nil {
			return 0, err
		}
	}
	jobs := make([]*job.Job, len(paths))
	for i, p := range paths {
		jobs[i] = fileJob(fmt.Sprintf("p6-%d-%d", n, i), p)
	}
	d, err := l.runJobs(ctx, jobs...)
	if err != nil {
		return 0, err
	}
	return mbps(int64(len(paths))*sz.scaleSize, d), nil
}
