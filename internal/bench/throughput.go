package bench

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	cos "github.com/tencentyun/cos-go-sdk-v5"

	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// labQueue is the JetStream layout of the labs: a short ack wait (and lease
// TTL) so that a killed worker's job is redelivered within seconds.
var labQueue = queue.Config{AckWait: 5 * time.Second}

// p1 times a worker process's whole job (signature, ApplyUploadUGC, parts,
// CommitUploadUGC, status) against cos-go-sdk-v5's Object.Upload alone, same
// file, part size and parts in flight, into the same vodsim.
func (r *runner) p1(ctx context.Context) ([]Result, error) {
	sz := r.sz
	l, path, err := r.fileLab(ctx, "p1", sz.upload)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	if _, err := l.startWorker(ctx, workerConfig{id: "p1", partSize: sz.partSize, concurrency: sz.concurrency, jobs: 1}); err != nil {
		return nil, err
	}
	p, err := r.sideBySide(ctx, "P1", sz.upload, [2]string{"worker", "raw SDK"},
		func(ctx context.Context, round int) (time.Duration, error) {
			return l.runJobs(ctx, fileJob(fmt.Sprintf("p1-%d", round), path))
		},
		func(ctx context.Context, _ int) (time.Duration, error) { return l.timeSDKUpload(ctx, path, sz) })
	if err != nil {
		return nil, err
	}
	// The ceiling: the same parts, the same number in flight, as plain HTTP
	// PUTs into a handler that does only MD5 and CRC-64.
	minimal, err := startMinimalCOS()
	if err != nil {
		return nil, err
	}
	defer minimal.Close()
	limit, err := r.sideBySide(ctx, "P1 limit", sz.upload, [2]string{"worker", "plain PUTs"},
		func(ctx context.Context, round int) (time.Duration, error) {
			return l.runJobs(ctx, fileJob(fmt.Sprintf("p1-limit-%d", round), path))
		},
		func(ctx context.Context, _ int) (time.Duration, error) {
			return plainPUTs(ctx, minimal.addr, path, sz.upload, sz.partSize, sz.concurrency)
		})
	if err != nil {
		return nil, err
	}
	limitRow := Result{
		ID: "P1 limit", What: "worker upload vs the same parts as plain HTTP PUTs into an MD5+CRC-64 handler",
		Measured: fmt.Sprintf("worker %.0f MB/s", limit.measured), Baseline: fmt.Sprintf("plain PUTs %.0f MB/s", limit.baseline),
		Ratio: limit.ratio, Target: "≥ 0.9", Verdict: verdict(limit.ratio >= 0.9),
		Setup: fmt.Sprintf("the worker's whole job as in P1 against the %s file's %s parts sent %d at a time by plain "+
			"net/http PUTs (no SDK, no signature, no VOD calls; net/http's own transport, which reads and writes a body 32 KiB "+
			"at a time, where the worker's writes 256 KiB) into the handler P2 uses, which does only MD5 and CRC-64 "+
			"and keeps nothing; timed over the parts; medians of %d rounds, each running both sides in turn",
			mib(sz.upload), mib(sz.partSize), sz.concurrency, sz.rounds),
	}
	return []Result{{
		ID: "P1", What: whatOf["P1"],
		Measured: fmt.Sprintf("worker %.0f MB/s", p.measured), Baseline: fmt.Sprintf("raw SDK %.0f MB/s", p.baseline),
		Ratio: p.ratio, Target: "≥ 0.95", Verdict: verdict(p.ratio >= 0.95),
		Setup: fmt.Sprintf("%s random file, %s parts, %d in flight, vodsim in discard mode; the worker process (`vodpipe worker`, "+
			"1 job at a time, resume state in JetStream KV) timed from submit to its job.completed event "+
			"(signature, ApplyUploadUGC, parts, CommitUploadUGC, status); the raw SDK timed over Object.Upload alone, "+
			"after an untimed ApplyUploadUGC (the SDK reads the whole file once for its CRC-64 before it sends a byte, "+
			"where the worker combines the parts' CRCs as they go); rates are medians of %d rounds, each running both sides "+
			"in turn, and the ratio is the median of the rounds' ratios",
			mib(sz.upload), mib(sz.partSize), sz.concurrency, sz.rounds),
	}, limitRow}, nil
}

// plainPUTs sends a file's parts, concurrency at a time, as plain HTTP PUTs
// of one multipart upload into the minimal handler at addr, and returns how
// long the parts took.
func plainPUTs(ctx context.Context, addr, path string, size, partSize int64, concurrency int) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	defer hc.CloseIdleConnections()
	base := "http://" + addr + "/bench/plain.mp4"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"?uploads", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	var initiated struct {
		UploadID string `xml:"UploadId"`
	}
	err = xml.NewDecoder(resp.Body).Decode(&initiated)
	resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("initiate: %w", err)
	}
	parts := int((size + partSize - 1) / partSize)
	work := make(chan int)
	errs := make(chan error, concurrency)
	start := time.Now()
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for n := range work {
				off := int64(n-1) * partSize
				body := io.NewSectionReader(f, off, min(partSize, size-off))
				req, err := http.NewRequestWithContext(ctx, http.MethodPut,
					fmt.Sprintf("%s?partNumber=%d&uploadId=%s", base, n, initiated.UploadID), body)
				if err == nil {
					req.ContentLength = body.Size()
					var resp *http.Response
					if resp, err = hc.Do(req); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("part %d: %s", n, resp.Status)
						}
					}
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for n := 1; n <= parts; n++ {
		work <- n
	}
	close(work)
	wg.Wait()
	took := time.Since(start)
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return took, nil
}

// p2 uploads the same file with the same SDK call into vodsim and into a
// minimal handler that does only COS's own per-byte work.
func (r *runner) p2(ctx context.Context) ([]Result, error) {
	sz := r.sz
	l, path, err := r.fileLab(ctx, "p2", sz.upload)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	minimal, err := startMinimalCOS()
	if err != nil {
		return nil, err
	}
	defer minimal.Close()
	p, err := r.sideBySide(ctx, "P2", sz.upload, [2]string{"vodsim", "minimal"},
		func(ctx context.Context, _ int) (time.Duration, error) { return l.timeSDKUpload(ctx, path, sz) },
		func(ctx context.Context, round int) (time.Duration, error) {
			start := time.Now()
			err := sdkUpload(ctx, minimal.client, fmt.Sprintf("bench/p2-%d.mp4", round), path, sz.upload, sz.partSize, sz.concurrency)
			return time.Since(start), err
		})
	if err != nil {
		return nil, err
	}
	return []Result{{
		ID: "P2", What: whatOf["P2"],
		Measured: fmt.Sprintf("vodsim %.0f MB/s", p.measured), Baseline: fmt.Sprintf("minimal %.0f MB/s", p.baseline),
		Ratio: p.ratio, Target: "≥ 0.9", Verdict: verdict(p.ratio >= 0.9),
		Setup: fmt.Sprintf("cos-go-sdk-v5 Object.Upload of a %s random file, %s parts, %d in flight, timed over the upload alone, "+
			"into vodsim in discard mode (signature checks, credentials, MD5, CRC-64) and into a handler doing only MD5 and CRC-64; "+
			"rates are medians of %d rounds, each running both sides in turn, and the ratio is the median of the rounds' ratios",
			mib(sz.upload), mib(sz.partSize), sz.concurrency, sz.rounds),
	}}, nil
}

// pair is one side-by-side figure: each side's median rate in MB/s, and the
// median of the rounds' ratios (measured / baseline), which a drift of the
// machine's load between rounds disturbs less than a ratio of medians.
type pair struct{ measured, baseline, ratio float64 }

// timed is one side of a comparison: it uploads once and says how long it took.
type timed func(ctx context.Context, round int) (time.Duration, error)

// sideBySide runs the measured side and then the baseline, round after round,
// so both meet the machine in the same state.
func (r *runner) sideBySide(ctx context.Context, id string, size int64, names [2]string, measured, baseline timed) (pair, error) {
	var ms, bs, ratios []float64
	for round := range r.sz.rounds {
		dm, err := measured(ctx, round)
		if err != nil {
			return pair{}, fmt.Errorf("%s: %w", names[0], err)
		}
		db, err := baseline(ctx, round)
		if err != nil {
			return pair{}, fmt.Errorf("%s: %w", names[1], err)
		}
		m, b := mbps(size, dm), mbps(size, db)
		ms, bs, ratios = append(ms, m), append(bs, b), append(ratios, m/b)
		r.logf("%s round %d/%d: %s %.0f MB/s, %s %.0f MB/s, ratio %.3f", id, round+1, r.sz.rounds, names[0], m, names[1], b, m/b)
	}
	return pair{measured: median(ms), baseline: median(bs), ratio: median(ratios)}, nil
}

// timeSDKUpload applies for an upload (untimed) and times cos-go-sdk-v5's
// Object.Upload of path into vodsim with those credentials.
func (l *lab) timeSDKUpload(ctx context.Context, path string, sz sizes) (time.Duration, error) {
	a, err := l.apply(ctx, sz.upload)
	if err != nil {
		return 0, err
	}
	c, err := l.cosClient(a)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	err = sdkUpload(ctx, c, a.Video.Key(), path, sz.upload, sz.partSize, sz.concurrency)
	return time.Since(start), err
}

// sdkUpload is cos-go-sdk-v5's own multipart upload of a file. The SDK checks
// every part's CRC-64 and the object's against the server's answers, and the
// ETag must be a multipart ETag of the expected part count, so a server that
// skipped work fails instead of flattering the figure.
func sdkUpload(ctx context.Context, c *cos.Client, key, path string, size, partSize int64, threads int) error {
	res, _, err := c.Object.Upload(ctx, key, path, &cos.MultiUploadOptions{PartSize: partSize >> 20, ThreadPoolSize: threads})
	if err != nil {
		return err
	}
	parts := (size + partSize - 1) / partSize
	if !strings.HasSuffix(strings.Trim(res.ETag, `"`), fmt.Sprintf("-%d", parts)) {
		return fmt.Errorf("ETag %s is not that of a %d-part multipart upload", res.ETag, parts)
	}
	return nil
}

// minimalServer is minimalCOS on a loopback port with an SDK client for it.
type minimalServer struct {
	srv    *http.Server
	addr   string
	client *cos.Client
}

func startMinimalCOS() (*minimalServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &minimalServer{srv: &http.Server{Handler: newMinimalCOS(), ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr().String()}
	go func() { _ = m.srv.Serve(ln) }()
	// A production-shaped bucket URL, signed the same way, dialing the handler.
	u, err := cos.NewBucketURL("bench-1250000000", "ap-guangzhou", false)
	if err != nil {
		m.Close()
		return nil, err
	}
	m.client = cos.NewClient(&cos.BaseURL{BucketURL: u}, &http.Client{Transport: &cos.AuthorizationTransport{
		SecretID: "AKIDminimal", SecretKey: "minimal-key", SessionToken: "minimal-token",
		Transport: vod.DialOverride(ln.Addr().String()),
	}})
	return m, nil
}

func (m *minimalServer) Close() { _ = m.srv.Close() }
