package bench

import (
	"context"
	"fmt"
)

// p4 reads a worker process's peak RSS after it uploaded a large source:
// a worker streams parts from the file, so its memory should be its parts in
// flight plus a fixed overhead, whatever the size of the source.
func (r *runner) p4(ctx context.Context) ([]Result, error) {
	sz := r.sz
	l, path, err := r.fileLab(ctx, "p4", sz.big)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	p, err := l.startWorker(ctx, workerConfig{id: "p4", partSize: sz.partSize, concurrency: sz.concurrency, jobs: 1})
	if err != nil {
		return nil, err
	}
	idle, err := p.PeakRSS()
	if err != nil {
		return nil, err
	}
	d, err := l.runJobs(ctx, fileJob("p4", path))
	if err != nil {
		return nil, err
	}
	peak, err := p.PeakRSS()
	if err != nil {
		return nil, err
	}
	inFlight := int64(sz.concurrency) * sz.partSize
	const overhead = 64 << 20
	ratio := float64(peak) / float64(inFlight)
	r.logf("P4: peak RSS %s after %s at %.0f MB/s (idle %s)", mib(peak), mib(sz.big), mbps(sz.big, d), mib(idle))
	return []Result{{
		ID: "P4", What: whatOf["P4"],
		Measured: "peak RSS " + mib(peak), Baseline: fmt.Sprintf("in flight %d × %s = %s", sz.concurrency, mib(sz.partSize), mib(inFlight)),
		Ratio: ratio, Target: "≤ in flight + 64 MiB", Verdict: verdict(peak <= inFlight+overhead),
		Setup: fmt.Sprintf("a worker process uploads a %s random file (%s parts, %d in flight) at %.0f MB/s; peak RSS is VmHWM "+
			"from /proc/<pid>/status after the job completed, the whole life of the process included (%s when it was ready and idle); "+
			"parts of a file:// source are read through io.SectionReader, so no part is held whole in memory",
			mib(sz.big), mib(sz.partSize), sz.concurrency, mbps(sz.big, d), mib(idle)),
	}}, nil
}
