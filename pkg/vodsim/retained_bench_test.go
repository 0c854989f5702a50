package vodsim_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	cos "github.com/tencentyun/cos-go-sdk-v5"

	"github.com/vodpipe/vodpipe/internal/gctune"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// BenchmarkRetainedPerUpload measures what vodsim keeps in memory per
// upload it has taken (ApplyUploadUGC, a PutObject of 1 KiB, CommitUploadUGC,
// in discard mode, its event delivered by callback), as `vodpipe up` and the
// demo run it, with one signature for all (as a worker shares one): the
// growth of the live heap per upload, which a run of a million small jobs
// multiplies. Sessions (24 h) and credentials (their lifetime and an hour)
// are among it; events are not once delivered, past the last 10,000.
func BenchmarkRetainedPerUpload(b *testing.B) {
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer receiver.Close()
	v := testharness.StartVodsim(b, func(c *vodsim.Config) { c.Discard, c.CallbackURL = true, receiver.URL })
	ctx := b.Context()
	body := strings.Repeat("x", 1024)
	one, err := v.Signer(vod.SignatureParams{})(ctx)
	if err != nil {
		b.Fatal(err)
	}
	sig := func(context.Context) (string, error) { return one, nil }
	vc := v.VODClient()
	dial := vod.DialOverride(v.Addr) // one transport: its connections are kept
	before := gctune.LiveHeap()
	for b.Loop() {
		a, err := vc.Apply(ctx, sig, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(len(body)))})
		if err != nil {
			b.Fatal(err)
		}
		u, _ := cos.NewBucketURL(a.Bucket(), a.StorageRegionV5, false)
		c := cos.NewClient(&cos.BaseURL{BucketURL: u}, &http.Client{Transport: &cos.AuthorizationTransport{
			SecretID: a.TempCertificate.SecretID, SecretKey: a.TempCertificate.SecretKey,
			SessionToken: a.TempCertificate.Token, Transport: dial,
		}})
		if _, err := c.Object.Put(ctx, a.Video.Key(), strings.NewReader(body), nil); err != nil {
			b.Fatal(err)
		}
		if _, err := vc.Commit(ctx, sig, a.VodSessionKey); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(gctune.LiveHeap()-before)/float64(b.N), "heap-B/upload")
}
