package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/vodpipe/vodpipe/internal/child"
)

// p5 SIGKILLs a worker process half way through an upload and lets a second
// one finish it: only the parts in flight at the kill should be sent again.
func (r *runner) p5(ctx context.Context) ([]Result, error) {
	sz := r.sz
	l, path, err := r.fileLab(ctx, "p5", sz.resume)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	wc := workerConfig{id: "p5-a", partSize: sz.partSize, concurrency: sz.concurrency, jobs: 1}
	a, err := l.startWorker(ctx, wc)
	if err != nil {
		return nil, err
	}
	t, err := track(l.nc)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	if err := l.submit(ctx, fileJob("p5", path)); err != nil {
		return nil, err
	}
	if err := waitBytes(ctx, l, a, sz.resume/2); err != nil {
		return nil, l.withLogs(err)
	}
	a.Kill()
	killedAt := l.sim.BytesReceived()
	r.logf("P5: SIGKILLed worker %s at %.1f %% of %s", a.ID, 100*float64(killedAt)/float64(sz.resume), mib(sz.resume))
	wc.id = "p5-b"
	if _, err := l.startWorker(ctx, wc); err != nil {
		return nil, err
	}
	if _, err := t.wait(ctx, []string{"p5"}); err != nil {
		return nil, l.withLogs(err)
	}
	if files := l.sim.Files(); len(files) != 1 || files[0].Size != sz.resume {
		return nil, fmt.Errorf("vodsim issued %d files (want 1 of %d bytes): %+v", len(files), sz.resume, files)
	}
	resent := l.sim.BytesReceived() - sz.resume
	bound := int64(sz.concurrency) * sz.partSize
	return []Result{{
		ID: "P5", What: whatOf["P5"],
		Measured: "re-sent " + mib(resent), Baseline: fmt.Sprintf("in flight ≤ %d × %s = %s", sz.concurrency, mib(sz.partSize), mib(bound)),
		Ratio: float64(resent) / float64(bound), Target: "≤ 1 (parts in flight only)", Verdict: verdict(resent <= bound),
		Setup: fmt.Sprintf("a worker process uploading a %s random file (%s parts, %d in flight) is SIGKILLed once vodsim "+
			"has read %.1f %% of it; a second worker process resumes the job after its redelivery (ack wait and lease %s) "+
			"from the recorded parts and ListParts; re-sent = bytes vodsim read, bodies cut short included, minus the file size; "+
			"vodsim issued exactly one FileId; a part already whole in the kernel's socket buffers at the kill still reaches vodsim "+
			"and is adopted after an MD5 check, so fewer than the parts in flight may be re-sent", mib(sz.resume), mib(sz.partSize), sz.concurrency,
			100*float64(killedAt)/float64(sz.resume), labQueue.AckWait),
	}}, nil
}

// waitBytes waits until vodsim has read at least n object bytes; the worker
// that should send them must not exit first.
func waitBytes(ctx context.Context, l *lab, p *child.WorkerProcess, n int64) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for l.sim.BytesReceived() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("vodsim read %d of %d bytes: %w", l.sim.BytesReceived(), n, ctx.Err())
		case <-p.Done():
			return fmt.Errorf("worker %s exited early: %v", p.ID, p.Cmd.ProcessState)
		case <-tick.C:
		}
	}
	return nil
}
