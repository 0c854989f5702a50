package vodsim_test

import (
	"bytes"
	"hash/crc64"
	"strings"
	"testing"

	cos "github.com/tencentyun/cos-go-sdk-v5"

	"github.com/vodpipe/vodpipe/internal/checksum"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// A corrupted part is stored corrupted and answered with its own CRC-64, so
// the SDK (EnableCRC, its default) fails UploadPart; once the fault is
// cleared the same part goes through and replaces the bad copy.
func TestCorruptedPartFailsTheSDKsCRCCheck(t *testing.T) {
	v := testharness.StartVodsim(t)
	ctx := t.Context()
	const size = 2<<20 + 100
	data := randomBytes(size, 7)
	a := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(size))})
	c := v.COSClient(a)
	c.Conf.RetryOpt.Count = 1
	key := a.Video.Key()
	init, _, err := c.Object.InitiateMultipartUpload(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	halves := [][]byte{data[:1<<20], data[1<<20:]}
	wantCRC := crc64.Checksum(halves[0], checksum.CRC64Table())

	if err := v.SetFaults(vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpUploadPart, CorruptRate: 1}}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Object.UploadPart(ctx, key, init.UploadID, 1, bytes.NewReader(halves[0]), nil)
	if err == nil {
		t.Fatal("UploadPart of a corrupted part succeeded; the SDK should have caught the CRC-64 mismatch")
	}
	if cosCode(err) != "" || !strings.Contains(err.Error(), "verification failed") {
		t.Fatalf("UploadPart error = %v; want the SDK's CRC-64 verification failure, not a COS error", err)
	}
	u := v.Uploads()
	if len(u) != 1 || len(u[0].Parts) != 1 || u[0].Parts[0].Size != int64(len(halves[0])) || u[0].Parts[0].CRC64 == wantCRC {
		t.Fatalf("uploads = %+v; want part 1 stored with a CRC-64 other than the source's", u)
	}
	badETag := u[0].Parts[0].ETag

	if err := v.SetFaults(vodsim.FaultConfig{}); err != nil {
		t.Fatal(err)
	}
	var parts []cos.Object
	for i, b := range halves {
		resp, err := c.Object.UploadPart(ctx, key, init.UploadID, i+1, bytes.NewReader(b), nil)
		if err != nil {
			t.Fatalf("UploadPart %d after clearing the fault: %v", i+1, err)
		}
		parts = append(parts, cos.Object{PartNumber: i + 1, ETag: resp.Header.Get("ETag")})
	}
	if parts[0].ETag == badETag {
		t.Fatal("re-sent part kept the corrupted part's ETag")
	}
	if _, _, err := c.Object.CompleteMultipartUpload(ctx, key, init.UploadID, &cos.CompleteMultipartUploadOptions{Parts: parts}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(storedBytes(t, v, a.Bucket(), key), data) {
		t.Fatal("stored object differs from the source after the part was re-sent")
	}
}

func TestCorruptedPutObjectFailsTheSDKsCRCCheck(t *testing.T) {
	v := testharness.StartVodsim(t)
	ctx := t.Context()
	data := randomBytes(5000, 8)
	a := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(len(data)))})
	c := v.COSClient(a)
	c.Conf.RetryOpt.Count = 1
	if err := v.SetFaults(vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpAny, CorruptRate: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Object.Put(ctx, a.Video.Key(), bytes.NewReader(data), nil); err == nil || cosCode(err) != "" {
		t.Fatalf("Put of a corrupted body = %v; want the SDK's CRC-64 verification failure", err)
	}
	stored := storedBytes(t, v, a.Bucket(), a.Video.Key())
	diff := 0
	for i := range stored {
		if stored[i] != data[i] {
			diff++
		}
	}
	if len(stored) != len(data) || diff != 1 {
		t.Fatalf("stored %d bytes with %d differing; want %d bytes with exactly one flipped", len(stored), diff, len(data))
	}
	if err := v.SetFaults(vodsim.FaultConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Object.Put(ctx, a.Video.Key(), bytes.NewReader(data), nil); err != nil {
		t.Fatalf("Put after clearing the fault: %v", err)
	}
	if !bytes.Equal(storedBytes(t, v, a.Bucket(), a.Video.Key()), data) {
		t.Fatal("stored object differs from the source")
	}
}

func TestCorruptRateIsValidated(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		ok   bool
	}{{0, true}, {0.2, true}, {1, true}, {-0.1, false}, {1.5, false}} {
		err := vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpUploadPart, CorruptRate: tc.rate}}}.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("corruptRate %v: Validate() = %v, want ok=%v", tc.rate, err, tc.ok)
		}
	}
}
