package worker_test

// BenchmarkWorkerVsRawSDK1GiB measures, in one run against the same vodsim
// (discard mode, loopback), a 1 GiB upload by a vodpipe worker process
// (8 MiB parts, 4 in flight, Redis resume state, signatures from the
// signature service) and by cos-go-sdk-v5's own Object.Upload with the same
// part size and concurrency. It reports MB/s of each, their ratio (target
// ≥ 0.95) and the worker process's peak RSS (VmHWM; target ≤ 64 MiB + parts
// in flight). Run: go test ./internal/worker -run '^$' -bench WorkerVsRawSDK -benchtime 2x

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cos "github.com/tencentyun/cos-go-sdk-v5"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/internal/upload"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

func BenchmarkWorkerVsRawSDK1GiB(b *testing.B) {
	const size = 1 << 30
	e := newEnv(b, true, func(c *vodsim.Config) { c.Discard = true })
	e.cfg.UploadConfig = upload.Config{PartSize: 8 << 20, Concurrency: 4, COSScheme: "http"}
	e.cfg.AckWait = 30 * time.Second
	path := filepath.Join(e.root, "bench.mp4")
	writeSparseRandom(b, path, size)
	src := "file://" + path
	var workerMBps, sdkMBps float64
	var peakRSS int64

	b.Run("worker", func(b *testing.B) {
		proc := e.workerProcess("bench")
		b.SetBytes(size)
		i := 0
		start := time.Now()
		for b.Loop() {
			i++
			id := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)
			e.submit(&job.Job{ID: id, Source: src})
			e.waitState(id, job.StateCompleted, 5*time.Minute)
		}
		workerMBps = float64(size) * float64(i) / time.Since(start).Seconds() / 1e6
		peakRSS = vmHWM(b, proc.Process.Pid)
		_ = proc.Process.Signal(syscall.SIGTERM)
		_ = proc.Wait()
		b.ReportMetric(workerMBps, "MB/s")
		b.ReportMetric(float64(peakRSS)/(1<<20), "peak-RSS-MiB")
	})
	b.Run("rawSDK", func(b *testing.B) {
		b.SetBytes(size)
		i := 0
		start := time.Now()
		for b.Loop() {
			i++
			a, err := e.sim.VODClient().Apply(context.Background(), e.sim.Signer(vod.SignatureParams{}),
				vod.ApplyRequest{VideoName: "raw", VideoType: "mp4", VideoSize: ptr(int64(size))})
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := e.sim.COSClient(a).Object.Upload(context.Background(), a.Video.Key(), path,
				&cos.MultiUploadOptions{PartSize: 8, ThreadPoolSize: 4}); err != nil {
				b.Fatal(err)
			}
		}
		sdkMBps = float64(size) * float64(i) / time.Since(start).Seconds() / 1e6
		b.ReportMetric(sdkMBps, "MB/s")
	})
	b.Run("ratio", func(b *testing.B) {
		for b.Loop() {
		}
		if sdkMBps > 0 {
			b.ReportMetric(workerMBps/sdkMBps, "worker/sdk")
		}
		inFlight := float64(e.cfg.Concurrency) * float64(e.cfg.PartSize) / (1 << 20)
		b.ReportMetric(float64(peakRSS)/(1<<20)-inFlight, "RSS-minus-parts-in-flight-MiB")
		b.Logf("worker %.0f MB/s, raw SDK %.0f MB/s, ratio %.3f; worker peak RSS %.1f MiB (parts in flight %.0f MiB)",
			workerMBps, sdkMBps, workerMBps/sdkMBps, float64(peakRSS)/(1<<20), inFlight)
	})
	_ = testharness.VodsimSecretID
}

func ptr[T any](v T) *T { return &v }

// writeSparseRandom writes size pseudo-random bytes in 8 MiB chunks.
func writeSparseRandom(tb testing.TB, path string, size int64) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 8<<20)
	var x uint64 = 0x9e3779b97f4a7c15
	for written := int64(0); written < size; {
		for i := 0; i < len(chunk); i += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			for j := 0; j < 8; j++ {
				chunk[i+j] = byte(x >> (8 * j))
			}
		}
		n := min(int64(len(chunk)), size-written)
		if _, err := f.Write(chunk[:n]); err != nil {
			tb.Fatal(err)
		}
		written += n
	}
}

// vmHWM is a process's peak resident set size, from /proc.
func vmHWM(tb testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	tb.Fatal("no VmHWM")
	return 0
}
