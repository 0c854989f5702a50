// Package vodsim_test tests vodsim from outside, as clients see it.
//
// BenchmarkUpload1GiB tells whether vodsim is fast enough to stand in for COS
// in throughput measurements. In one run on the same loopback it uploads one
// 1 GiB file three ways:
//
//   - vodsim: cos-go-sdk-v5 Object.Upload (8 MiB parts, 4 workers) into
//     vodsim in discard mode, after a real ApplyUploadUGC for credentials;
//   - minimal: the same SDK call into a handler that does only the per-byte
//     work COS must do (MD5 for the part ETag, CRC-64/ECMA for
//     x-cos-hash-crc64ecma) and discards the bytes;
//   - plainPUT: one net/http PUT of the whole file into io.Discard, the
//     ceiling of the loopback itself.
//
// A last row, ratios, divides the throughputs measured in that same run
// (medians of each sub-benchmark's runs when -count repeats them).
// vodsim/minimal is the one that matters: at 0.9 or more, vodsim's own work
// adds at most about a tenth to the time the SDK and the unavoidable hashing
// already take, so it will not be what limits later measurements; below that,
// vodsim does avoidable work per byte (buffering, copying, extra hashing) and
// should be profiled (-cpuprofile, go tool pprof -top).
// minimal/plainPUT shows how much the SDK plus hashing cost against bare HTTP.
//
// Run it alone, one benchmark at a time, on an otherwise idle machine:
//
//	go test ./pkg/vodsim -run '^$' -bench BenchmarkUpload1GiB -benchtime 2x
//
// Add -count 3 to see the spread: Go then repeats each sub-benchmark three
// times in a row, the ratios are of the medians, and the logged table lists
// every run. The 1 GiB source is written once, to a temp dir, outside the
// timed loops.
package vodsim_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	cos "github.com/tencentyun/cos-go-sdk-v5"

	"github.com/vodpipe/vodpipe/internal/checksum"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// The upload BenchmarkUpload1GiB measures, as the issue fixes it.
const (
	benchSize    = 1 << 30
	benchPartMiB = 8 // MultiUploadOptions.PartSize is in MiB
	benchWorkers = 4
	benchParts   = benchSize / (benchPartMiB << 20)
	// benchTarget is the vodsim/minimal ratio below which vodsim would bottleneck.
	benchTarget = 0.9
)

func BenchmarkUpload1GiB(b *testing.B) {
	src := benchSource(b)
	// MB/s (10^6, as the framework counts) of every measured run, by
	// sub-benchmark. With -count, Go repeats each sub-benchmark back to back
	// (vodsim×count, then minimal×count, …), so the ratios are of medians.
	rates := map[string][]float64{}
	benchUpload(b, rates, "vodsim", func(b *testing.B) func(context.Context) error { return benchVodsim(b, src) })
	benchUpload(b, rates, "minimal", func(b *testing.B) func(context.Context) error { return benchMinimal(b, src) })
	benchUpload(b, rates, "plainPUT", func(b *testing.B) func(context.Context) error { return benchPlainPUT(b, src) })

	var logOnce sync.Once // the ratios body runs more than once per count
	b.Run("ratios", func(b *testing.B) {
		vs, mn, pp := median(rates["vodsim"]), median(rates["minimal"]), median(rates["plainPUT"])
		if vs == 0 || mn == 0 || pp == 0 {
			b.Skip("needs vodsim, minimal and plainPUT measured in the same run")
		}
		b.ReportMetric(0, "ns/op") // not a timing: hide it
		b.ReportMetric(vs/mn, "vodsim/minimal")
		b.ReportMetric(mn/pp, "minimal/plainPUT")
		b.ReportMetric(vs/pp, "vodsim/plainPUT")
		logOnce.Do(func() {
			var t strings.Builder
			fmt.Fprintf(&t, "\n%-9s %9s  %s\n", "upload", "MB/s", "(median of runs)")
			for _, name := range []string{"vodsim", "minimal", "plainPUT"} {
				fmt.Fprintf(&t, "%-9s %9.1f  %.1f\n", name, median(rates[name]), rates[name])
			}
			verdict := "ok"
			if vs/mn < benchTarget {
				verdict = "BELOW TARGET: vodsim would bottleneck later measurements; profile it"
			}
			fmt.Fprintf(&t, "vodsim/minimal   = %.3f (target ≥ %.1f: %s)\n", vs/mn, benchTarget, verdict)
			fmt.Fprintf(&t, "minimal/plainPUT = %.3f (cost of the SDK and hashing against bare HTTP)", mn/pp)
			b.Log(t.String())
		})
	})
}

// benchUpload runs one sub-benchmark: setup (untimed) returns the upload to
// time, and the measured rate is appended to rates[name].
func benchUpload(b *testing.B, rates map[string][]float64, name string, setup func(*testing.B) func(context.Context) error) {
	b.Run(name, func(b *testing.B) {
		upload := setup(b)
		b.SetBytes(benchSize)
		b.ReportAllocs() // process-wide, so server-side buffering shows in B/op
		n := 0
		for b.Loop() { // b.Loop runs this body once per count, setup included
			if err := upload(b.Context()); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			n++
		}
		rates[name] = append(rates[name], float64(benchSize)*float64(n)/b.Elapsed().Seconds()/1e6)
	})
}

// median of xs, 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchSource writes the 1 GiB source file once per invocation, in chunks, so
// the benchmark never holds it in memory; the page cache serves later reads.
func benchSource(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "source-1GiB.bin")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	// Random bytes: nothing on the path compresses, but it keeps every byte honest.
	r := rand.NewChaCha8([32]byte{'v', 'o', 'd', 'p', 'i', 'p', 'e'})
	buf := make([]byte, 8<<20)
	for n := 0; n < benchSize; n += len(buf) {
		_, _ = r.Read(buf)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// benchVodsim uploads into vodsim in discard mode with the credentials of a
// real ApplyUploadUGC, as an uploader would.
func benchVodsim(b *testing.B, src string) func(context.Context) error {
	v := testharness.StartVodsim(b, func(c *vodsim.Config) { c.Discard = true })
	size := int64(benchSize)
	a, err := v.VODClient().Apply(b.Context(), v.Signer(vod.SignatureParams{}),
		vod.ApplyRequest{VideoName: "bench", VideoType: "mp4", VideoSize: &size})
	if err != nil {
		b.Fatalf("apply: %v", err)
	}
	return benchSDKUpload(v.COSClient(a), a.Video.Key(), src)
}

// benchMinimal uploads through the same SDK, signing the same way, into
// minimalCOS at a production-shaped bucket URL.
func benchMinimal(b *testing.B, src string) func(context.Context) error {
	srv := httptest.NewServer(&minimalCOS{uploads: map[string]map[int]minimalPart{}})
	b.Cleanup(srv.Close)
	u, err := cos.NewBucketURL("bench-1250000000", "ap-guangzhou", false)
	if err != nil {
		b.Fatal(err)
	}
	c := cos.NewClient(&cos.BaseURL{BucketURL: u}, &http.Client{Transport: &cos.AuthorizationTransport{
		SecretID: "AKIDminimalBench", SecretKey: "minimal-bench-key", SessionToken: "minimal-bench-token",
		Transport: vod.DialOverride(srv.Listener.Addr().String()),
	}})
	return benchSDKUpload(c, "bench/source.mp4", src)
}

// benchSDKUpload is the upload the issue measures. The SDK checks each part's
// CRC-64 and the whole object's against the server's headers, so a wrong
// checksum fails the benchmark instead of flattering it.
func benchSDKUpload(c *cos.Client, key, src string) func(context.Context) error {
	return func(ctx context.Context) error {
		res, _, err := c.Object.Upload(ctx, key, src, &cos.MultiUploadOptions{PartSize: benchPartMiB, ThreadPoolSize: benchWorkers})
		if err != nil {
			return err
		}
		if suffix := "-" + strconv.Itoa(benchParts); !strings.HasSuffix(strings.Trim(res.ETag, `"`), suffix) {
			return fmt.Errorf("ETag %s is not a %d-part multipart ETag", res.ETag, benchParts)
		}
		return nil
	}
}

// benchPlainPUT sends the whole file in one PUT into a handler that discards it.
func benchPlainPUT(b *testing.B, src string) func(context.Context) error {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	}))
	b.Cleanup(srv.Close)
	client := srv.Client()
	return func(ctx context.Context) error {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL+"/bench/source.mp4", f)
		if err != nil {
			return err
		}
		req.ContentLength = benchSize
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("PUT: %s", resp.Status)
		}
		return nil
	}
}

// minimalCOS answers the three calls of the SDK's multipart Upload with only
// the per-byte work COS must do: MD5 for the part ETag, CRC-64/ECMA for
// x-cos-hash-crc64ecma. It checks no signature and keeps no bytes, so it is
// the baseline vodsim is held against.
type minimalCOS struct {
	mu      sync.Mutex
	next    int
	uploads map[string]map[int]minimalPart // upload id → part number → part
}

type minimalPart struct {
	crc checksum.PartCRC
	md5 [md5.Size]byte
}

func (m *minimalCOS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		m.mu.Lock()
		m.next++
		id := "minimal" + strconv.Itoa(m.next)
		m.uploads[id] = map[int]minimalPart{}
		m.mu.Unlock()
		minimalXML(w, struct {
			XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
			Key      string   `xml:"Key"`
			UploadID string   `xml:"UploadId"`
		}{Key: strings.TrimPrefix(r.URL.Path, "/"), UploadID: id})

	case r.Method == http.MethodPut && q.Has("partNumber"):
		n, err := strconv.Atoi(q.Get("partNumber"))
		if err != nil {
			http.Error(w, "bad partNumber", http.StatusBadRequest)
			return
		}
		md, crc := md5.New(), crc64.New(checksum.CRC64Table())
		size, err := io.Copy(io.MultiWriter(md, crc), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p := minimalPart{crc: checksum.PartCRC{Size: size, CRC: crc.Sum64()}}
		md.Sum(p.md5[:0])
		m.mu.Lock()
		parts, ok := m.uploads[q.Get("uploadId")]
		if ok {
			parts[n] = p
		}
		m.mu.Unlock()
		if !ok {
			http.Error(w, "no such upload", http.StatusNotFound)
			return
		}
		w.Header().Set("ETag", `"`+hex.EncodeToString(p.md5[:])+`"`)
		w.Header().Set("x-cos-hash-crc64ecma", strconv.FormatUint(p.crc.CRC, 10))

	case r.Method == http.MethodPost && q.Has("uploadId"):
		var req struct {
			Parts []struct {
				PartNumber int `xml:"PartNumber"`
			} `xml:"Part"`
		}
		if err := xml.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id := q.Get("uploadId")
		m.mu.Lock()
		parts := m.uploads[id]
		delete(m.uploads, id)
		m.mu.Unlock()
		crcs := make([]checksum.PartCRC, 0, len(req.Parts))
		etag := md5.New() // S3/COS multipart ETag: MD5 of the part MD5s, dash, count
		for _, rp := range req.Parts {
			p, ok := parts[rp.PartNumber]
			if !ok {
				http.Error(w, "no such part", http.StatusBadRequest)
				return
			}
			crcs = append(crcs, p.crc)
			etag.Write(p.md5[:])
		}
		w.Header().Set("x-cos-hash-crc64ecma", strconv.FormatUint(checksum.CombineParts(crcs), 10))
		minimalXML(w, struct {
			XMLName xml.Name `xml:"CompleteMultipartUploadResult"`
			Key     string   `xml:"Key"`
			ETag    string   `xml:"ETag"`
		}{Key: strings.TrimPrefix(r.URL.Path, "/"), ETag: fmt.Sprintf(`"%x-%d"`, etag.Sum(nil), len(crcs))})

	default:
		http.Error(w, "not a multipart upload call", http.StatusMethodNotAllowed)
	}
}

func minimalXML(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/xml")
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(v)
}
