package bench

import (
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

	"github.com/vodpipe/vodpipe/internal/gctune"
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
// against a vodsim configured as P3's (discard mode). Run with P3, P3 ran
// a bare round right after each of its own (p3Pairs): the ratio is the
// median of the rounds' ratios, each pair measured within a few seconds on
// a host whose speed swings by half in minutes. Alone, it measures the
// loop's jobs/s and no ratio.
func (r *runner) p3b(ctx context.Context) ([]Result, error) {
	paths, err := r.src.files(r.sz.jobSize, r.sz.jobs)
	if err != nil {
		return nil, err
	}
	pairs, alone := r.p3Pairs, len(r.p3Pairs) == 0
	if alone {
		b, err := r.newBareLoop(ctx, paths)
		if err != nil {
			return nil, err
		}
		defer b.Close()
		for i := range p3Rounds(r.sz) {
			rate, err := b.round(ctx)
			if err != nil {
				return nil, err
			}
			r.logf("P3b: round %d: %d uploads: %.0f jobs/s", i+1, len(paths), rate)
			pairs = append(pairs, p3Pair{bare: rate})
		}
	}
	bares, p3s, ratios := make([]float64, len(pairs)), make([]float64, len(pairs)), make([]float64, len(pairs))
	for i, p := range pairs {
		bares[i], p3s[i], ratios[i] = p.bare, p.p3, p.p3/p.bare
	}
	bare := median(bares)
	row := Result{ID: "P3b", What: "P3 against a bare upload loop (no queue, status, events, webhooks)",
		Baseline: fmt.Sprintf("bare loop %.0f jobs/s", bare), Ratio: math.NaN(),
		Target: fmt.Sprintf("≥ %.1f of the bare loop", p3bRatio), Verdict: NoTarget}
	setup := fmt.Sprintf("the same %d files of %s as P3, into a vodsim configured as P3's (discard mode), %d uploads at once (P3's jobs in flight), each "+
		"a signature, ApplyUploadUGC, one PutObject with the temporary credentials (cos-go-sdk-v5) and CommitUploadUGC; "+
		"after a warm-up of %d, in this process at the GC target P3 ran at "+
		"(GOGC=%d: vodsim shares the process, so the same target keeps the emulator's cost the same on both sides)",
		r.sz.jobs, mib(r.sz.jobSize), p3Workers*p3JobsPerWorker, p3Warm(paths), gctune.Percent())
	if alone {
		row.Measured = "P3 did not run (run P3 and P3b together)"
		row.Setup = fmt.Sprintf("%s; the median of %d rounds (sorted: %s)", setup, len(bares), joinSorted("%.0f", bares))
		return []Result{row}, nil
	}
	row.Ratio = median(ratios)
	row.Measured = fmt.Sprintf("vodpipe %.0f jobs/s", median(p3s))
	row.Verdict = verdict(row.Ratio >= p3bRatio)
	pairText := make([]string, len(pairs))
	for i, p := range pairs {
		pairText[i] = fmt.Sprintf("%.0f/%.0f", p.p3, p.bare)
	}
	row.Setup = fmt.Sprintf("%s; a bare round ran right after each of P3's %d rounds, so each pair saw the host at one speed "+
		"(P3/bare jobs/s: %s); the ratio is the median of the pairs' ratios (sorted: %s), the bare loop's figure the median of its rounds",
		setup, len(pairs), strings.Join(pairText, ", "), joinSorted("%.3f", ratios))
	return []Result{row}, nil
}

// p3Pair is a P3 round's jobs/s and the bare round's right after it (p3 0
// in P3b's own rounds, when P3 did not run).
type p3Pair struct{ p3, bare float64 }

// bareLoop is P3b's side of the measurement: its lab (a vodsim as P3's)
// and client, warmed up.
type bareLoop struct {
	l           *lab
	c           *vod.Client
	paths       []string
	concurrency int
}

// newBareLoop starts the bare loop's lab and runs its warm-up.
func (r *runner) newBareLoop(ctx context.Context, paths []string) (*bareLoop, error) {
	l, err := r.newLab(ctx, "p3b", labConfig{queue: queue.Config{}})
	if err != nil {
		return nil, err
	}
	b := &bareLoop{l: l, paths: paths, concurrency: p3Workers * p3JobsPerWorker,
		c: vod.NewClient(vod.WithEndpoint("http://"+l.simAddr), vod.WithHTTPClient(&http.Client{Transport: vod.DialOverride(l.simAddr)}))}
	if _, err := bareRound(ctx, l, b.c, paths[:p3Warm(paths)], b.concurrency); err != nil {
		l.Close()
		return nil, fmt.Errorf("bare loop warm-up: %w", err)
	}
	return b, nil
}

// round uploads every path once and returns the jobs/s.
func (b *bareLoop) round(ctx context.Context) (float64, error) {
	took, err := bareRound(ctx, b.l, b.c, b.paths, b.concurrency)
	if err != nil {
		return 0, err
	}
	return float64(len(b.paths)) / took.Seconds(), nil
}

func (b *bareLoop) Close() { b.l.Close() }

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

// joinSorted lists xs in increasing order, each formatted with format.
func joinSorted(format string, xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range slices.Sorted(slices.Values(xs)) {
		s[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(s, ", ")
}

// bareIdle says, in P3's setup, that P3b's lab stood idle in the process
// through P3's rounds ("" when P3b did not run).
func bareIdle(b *bareLoop) string {
	if b == nil {
		return ""
	}
	return "; P3b's lab (an embedded NATS and a vodsim of its own) stood idle in this process during P3's rounds"
}
