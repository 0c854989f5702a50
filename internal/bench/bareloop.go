package bench

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	cos "github.com/tencentyun/cos-go-sdk-v5"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// p3bRatio is the least share of the bare loop's jobs/s vodpipe must reach:
// the price of durability (queue, statuses, events, webhooks) is at most 40 %.
const p3bRatio = 0.6

// p3b measures the bare loop P3 is held against: the same files, uploaded
// with the same concurrency by a loop that calls ApplyUploadUGC, PutObject
// and CommitUploadUGC directly, with no queue, status, event or webhook,
// against a vodsim configured as P3's (discard mode). Its jobs/s is the median of the
// same number of rounds; the ratio is P3's median over it, when P3 ran.
func (r *runner) p3b(ctx context.Context) ([]Result, error) {
	paths, err := r.src.files(r.sz.jobSize, r.sz.jobs)
	if err != nil {
		return nil, err
	}
	l, err := r.newLab(ctx, "p3b", labConfig{queue: queue.Config{}})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	c := vod.NewClient(vod.WithEndpoint("http://"+l.simAddr), vod.WithHTTPClient(&http.Client{Transport: vod.DialOverride(l.simAddr)}))
	concurrency := p3Workers * p3JobsPerWorker
	if _, err := bareRound(ctx, l, c, paths[:p3Warm(paths)], concurrency); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	// The bare loop runs at the GC target P3 ran at (the process's): vodsim
	// is in this process, so another target for the loop would change the
	// emulator's cost as well, on one side of the ratio only.
	var rates []float64
	for i := range p3Rounds(r.sz) {
		took, err := bareRound(ctx, l, c, paths, concurrency)
		if err != nil {
			return nil, err
		}
		rate := float64(len(paths)) / took.Seconds()
		r.logf("P3b: round %d: %d uploads: %.0f jobs/s", i+1, len(paths), rate)
		rates = append(rates, rate)
	}
	slices.SortFunc(rates, cmp.Compare[float64])
	bare := rates[(len(rates)-1)/2]
	row := Result{ID: "P3b", What: "P3 against a bare upload loop (no queue, status, events, webhooks)",
		Baseline: fmt.Sprintf("bare loop %.0f jobs/s", bare), Ratio: math.NaN(),
		Target: fmt.Sprintf("≥ %.1f of the bare loop", p3bRatio), Verdict: NoTarget,
		Setup: fmt.Sprintf("the same %d files of %s as P3, into a vodsim configured as P3's (discard mode), %d uploads at once (P3's jobs in flight), each "+
			"a signature, ApplyUploadUGC, one PutObject with the temporary credentials (cos-go-sdk-v5) and CommitUploadUGC; "+
			"after a warm-up of %d, the median of %d rounds (sorted: %s), in this process at the GC target P3 ran at "+
			"(GOGC=%d: vodsim shares the process, so the same target keeps the emulator's cost the same on both sides); "+
			"the ratio is P3's median jobs/s over it",
			r.sz.jobs, mib(r.sz.jobSize), concurrency, p3Warm(paths), len(rates), joinRates(rates), gcPercent())}
	if r.p3Rate > 0 {
		row.Measured = fmt.Sprintf("vodpipe %.0f jobs/s", r.p3Rate)
		row.Ratio = r.p3Rate / bare
		row.Verdict = verdict(row.Ratio >= p3bRatio)
	} else {
		row.Measured = "P3 did not run (run P3 and P3b together)"
	}
	return []Result{row}, nil
}

// bareRound uploads every path with concurrency uploads at once and
// returns how long the round took.
func bareRound(ctx context.Context, l *lab, c *vod.Client, paths []string, concurrency int) (time.Duration, error) {
	sign := func(context.Context) (string, error) {
		resp, err := l.signer.Sign(signer.Request{})
		return resp.Signature, err
	}
	work := make(chan string)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for p := range work {
				if err := bareUpload(ctx, l, c, sign, p); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for _, p := range paths {
		work <- p
	}
	close(work)
	wg.Wait()
	return time.Since(start), first
}

// bareUpload is one file the bare way: apply, put, commit.
func bareUpload(ctx context.Context, l *lab, c *vod.Client, sign vod.SignatureFunc, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	a, err := c.Apply(ctx, sign, vod.ApplyRequest{VideoName: "bare", VideoType: "mp4", VideoSize: &size})
	if err != nil {
		return err
	}
	cc, err := l.cosClient(a)
	if err != nil {
		return err
	}
	if _, err := cc.Object.Put(ctx, a.Video.Key(), f, &cos.ObjectPutOptions{
		ObjectPutHeaderOptions: &cos.ObjectPutHeaderOptions{ContentLength: size}}); err != nil {
		return err
	}
	_, err = c.Commit(ctx, sign, a.VodSessionKey)
	return err
}

func joinRates(rates []float64) string {
	s := make([]string, len(rates))
	for i, r := range rates {
		s[i] = fmt.Sprintf("%.0f", r)
	}
	return strings.Join(s, ", ")
}
