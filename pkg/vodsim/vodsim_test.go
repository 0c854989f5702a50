package vodsim_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cos "github.com/tencentyun/cos-go-sdk-v5"

	"github.com/vodpipe/vodpipe/internal/checksum"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

func ptr[T any](v T) *T { return &v }

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func apply(t *testing.T, v *testharness.Vodsim, p vod.SignatureParams, req vod.ApplyRequest) *vod.ApplyResponse {
	t.Helper()
	a, err := v.VODClient().Apply(t.Context(), v.Signer(p), req)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return a
}

func storedBytes(t *testing.T, v *testharness.Vodsim, bucket, key string) []byte {
	t.Helper()
	rc, err := v.OpenObject(bucket, key)
	if err != nil {
		t.Fatalf("open stored object: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSmallPutObjectApplyCommitAndCallback(t *testing.T) {
	got := make(chan vod.Event, 4)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		e, err := vod.ParseEvent(b)
		if err != nil {
			t.Errorf("callback body: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got <- *e
	}))
	defer receiver.Close()
	v := testharness.StartVodsim(t, func(c *vodsim.Config) { c.CallbackURL = receiver.URL })
	ctx := t.Context()

	video := randomBytes(300_000, 1)
	cover := randomBytes(4_000, 2)
	a := apply(t, v, vod.SignatureParams{Procedure: "LongVideoPreset", SourceContext: "job=small-1", OneTimeValid: true},
		vod.ApplyRequest{VideoName: "small clip", VideoType: "mp4", VideoSize: ptr(int64(len(video))),
			CoverName: "cover", CoverType: "jpg", CoverSize: ptr(int64(len(cover)))})
	if a.StorageRegionV5 != "ap-guangzhou" || a.Video.Key() == "" || a.Cover.Key() == "" {
		t.Fatalf("apply answer = %+v", a)
	}
	c := v.COSClient(a)
	resp, err := c.Object.Put(ctx, a.Video.Key(), bytes.NewReader(video), nil)
	if err != nil {
		t.Fatalf("put video: %v", err)
	}
	if want := crc64.Checksum(video, checksum.CRC64Table()); resp.Header.Get("x-cos-hash-crc64ecma") != itoa(want) {
		t.Fatalf("crc header %q, want %d", resp.Header.Get("x-cos-hash-crc64ecma"), want)
	}
	if _, err := c.Object.Put(ctx, a.Cover.Key(), bytes.NewReader(cover), nil); err != nil {
		t.Fatalf("put cover: %v", err)
	}
	cm, err := v.VODClient().Commit(ctx, v.Signer(vod.SignatureParams{OneTimeValid: true}), a.VodSessionKey)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	if cm.FileID == "" || cm.MediaURL() == "" || cm.CoverURL() == "" {
		t.Fatalf("commit answer = %+v", cm)
	}
	if !bytes.Equal(storedBytes(t, v, a.Bucket(), a.Video.Key()), video) {
		t.Fatal("stored video differs from the source")
	}
	select {
	case e := <-got:
		f, ok := e.FileUpload()
		if !ok || f.FileID != cm.FileID || f.MediaURL != cm.MediaURL() || f.SourceContext != "job=small-1" ||
			f.ProcedureTaskID == "" || f.CoverURL != cm.CoverURL() {
			t.Fatalf("callback = %+v", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no NewFileUpload callback")
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

func TestMultipart64MiBWithSDKUploadConcurrency4(t *testing.T) {
	v := testharness.StartVodsim(t)
	ctx := t.Context()
	const size = 64 << 20
	data := randomBytes(size, 3)
	path := filepath.Join(t.TempDir(), "big.mp4")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	a := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "big", VideoType: "mp4", VideoSize: ptr(int64(size))})
	c := v.COSClient(a)
	// PartSize is in MiB; the SDK checks every part's CRC-64 and the whole object's.
	res, _, err := c.Object.Upload(ctx, a.Video.Key(), path, &cos.MultiUploadOptions{PartSize: 1, ThreadPoolSize: 4})
	if err != nil {
		t.Fatalf("multipart upload: %v", err)
	}
	if !strings.HasSuffix(strings.Trim(res.ETag, `"`), "-64") {
		t.Fatalf("ETag %s is not a 64-part multipart ETag", res.ETag)
	}
	o, ok := v.Object(a.Bucket(), a.Video.Key())
	if !ok || o.Size != size || o.CRC64 != crc64.Checksum(data, checksum.CRC64Table()) {
		t.Fatalf("object = %+v", o)
	}
	if sha256.Sum256(storedBytes(t, v, a.Bucket(), a.Video.Key())) != sha256.Sum256(data) {
		t.Fatal("stored bytes differ")
	}
	if len(v.Uploads()) != 0 {
		t.Fatal("multipart upload left open after completion")
	}
	cm, err := v.VODClient().Commit(ctx, v.Signer(vod.SignatureParams{}), a.VodSessionKey)
	if err != nil {
		t.Fatal(err)
	}
	// Committing the same session again yields the same FileId, never a second file.
	cm2, err := v.VODClient().Commit(ctx, v.Signer(vod.SignatureParams{}), a.VodSessionKey)
	if err != nil || cm2.FileID != cm.FileID {
		t.Fatalf("second commit = %+v, %v; want FileId %s", cm2, err, cm.FileID)
	}
	if files := v.Files(); len(files) != 1 || files[0].Commits != 2 {
		t.Fatalf("files = %+v", files)
	}
}

// roundTripFunc lets a test change a request after the SDK signed it.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func cosClientWith(a *vod.ApplyResponse, addr string, id, key, token string, tamper func(*http.Request)) *cos.Client {
	u, _ := cos.NewBucketURL(a.Bucket(), a.StorageRegionV5, false)
	base := vod.DialOverride(addr)
	var inner http.RoundTripper = base
	if tamper != nil {
		inner = roundTripFunc(func(r *http.Request) (*http.Response, error) { tamper(r); return base.RoundTrip(r) })
	}
	return cos.NewClient(&cos.BaseURL{BucketURL: u}, &http.Client{Transport: &cos.AuthorizationTransport{
		SecretID: id, SecretKey: key, SessionToken: token, Transport: inner}})
}

func cosCode(err error) string {
	var e *cos.ErrorResponse
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func TestCOSRefusesBadRequests(t *testing.T) {
	v := testharness.StartVodsim(t)
	ctx := t.Context()
	a := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "x", VideoType: "mp4", VideoSize: ptr(int64(10))})
	tc := a.TempCertificate
	body := func() io.Reader { return strings.NewReader("0123456789") }
	cases := []struct {
		name   string
		client *cos.Client
		key    string
		code   string
	}{
		{"wrong secret key", cosClientWith(a, v.Addr, tc.SecretID, "not-the-key", tc.Token, nil), a.Video.Key(), "SignatureDoesNotMatch"},
		{"unknown access key", cosClientWith(a, v.Addr, "AKIDunknown", tc.SecretKey, tc.Token, nil), a.Video.Key(), "InvalidAccessKeyId"},
		{"missing token", cosClientWith(a, v.Addr, tc.SecretID, tc.SecretKey, "", nil), a.Video.Key(), "AccessDenied"},
		{"token of another credential", cosClientWith(a, v.Addr, tc.SecretID, tc.SecretKey, "forged-token", nil), a.Video.Key(), "InvalidAccessKeyId"},
		{"signed header changed in flight", cosClientWith(a, v.Addr, tc.SecretID, tc.SecretKey, tc.Token,
			func(r *http.Request) { r.Header.Set("Content-Type", "text/evil") }), a.Video.Key(), "SignatureDoesNotMatch"},
		{"key outside the grant", v.COSClient(a), "1250000000/other/stolen.mp4", "AccessDenied"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.client.Object.Put(ctx, c.key, body(), &cos.ObjectPutOptions{ObjectPutHeaderOptions: &cos.ObjectPutHeaderOptions{ContentType: "video/mp4"}})
			if got := cosCode(err); got != c.code {
				t.Fatalf("code = %q (%v), want %s", got, err, c.code)
			}
		})
	}
	if len(v.Objects()) != 0 {
		t.Fatalf("a refused request stored an object: %+v", v.Objects())
	}
	t.Run("expired credentials", func(t *testing.T) {
		v.Clock().Advance(31 * time.Minute) // past the 30-minute default lifetime
		_, err := v.COSClient(a).Object.Put(ctx, a.Video.Key(), body(), nil)
		if got := cosCode(err); got != "ExpiredToken" {
			t.Fatalf("code = %q (%v)", got, err)
		}
		// Applying again with the session key gives fresh credentials for the same key.
		a2 := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VodSessionKey: a.VodSessionKey})
		if a2.Video.Key() != a.Video.Key() || a2.TempCertificate.SecretID == tc.SecretID {
			t.Fatalf("resume answer = %+v", a2)
		}
		if _, err := v.COSClient(a2).Object.Put(ctx, a2.Video.Key(), body(), nil); err != nil {
			t.Fatalf("put with refreshed credentials: %v", err)
		}
	})
}

func TestApplyRefusalsAreTypedErrors(t *testing.T) {
	v := testharness.StartVodsim(t)
	ctx := t.Context()
	media := vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(1))}
	fixed := func(sig string) vod.SignatureFunc { return func(context.Context) (string, error) { return sig, nil } }
	now := v.Clock().Now()
	signed := func(p vod.SignatureParams) string {
		p.SecretID, p.Random = testharness.VodsimSecretID, vod.NewRandom()
		if p.CurrentTimeStamp == 0 {
			p.CurrentTimeStamp, p.ExpireTime = now.Unix(), now.Add(time.Hour).Unix()
		}
		s, err := vod.Sign(testharness.VodsimSecretKey, p)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := signed(vod.SignatureParams{})
	tampered := good[:len(good)-4] + "AAA="
	wrongKey, _ := vod.Sign("not-the-app-key", vod.SignatureParams{SecretID: testharness.VodsimSecretID, CurrentTimeStamp: now.Unix(), ExpireTime: now.Add(time.Hour).Unix(), Random: 1})
	expired := signed(vod.SignatureParams{CurrentTimeStamp: now.Add(-2 * time.Hour).Unix(), ExpireTime: now.Add(-time.Hour).Unix()})
	oneTime := signed(vod.SignatureParams{OneTimeValid: true})
	if _, err := v.VODClient().Apply(ctx, fixed(oneTime), media); err != nil {
		t.Fatalf("first use of one-time signature: %v", err)
	}
	cases := []struct {
		name string
		sig  string
		req  vod.ApplyRequest
		want error
	}{
		{"tampered", tampered, media, vod.ErrSignatureInvalid},
		{"wrong key", wrongKey, media, vod.ErrSignatureInvalid},
		{"expired", expired, media, vod.ErrSignatureExpired},
		{"one-time reused", oneTime, media, vod.ErrSignatureUsed},
		{"unknown procedure", signed(vod.SignatureParams{Procedure: "NoSuchFlow"}), media, vod.ErrProcedureNotFound},
		{"region not enabled", signed(vod.SignatureParams{StorageRegion: "ap-beijing"}), media, vod.ErrRegionNotAllowed},
		{"unknown session", good, vod.ApplyRequest{VodSessionKey: "nope"}, vod.ErrSessionExpired},
		{"bad video name", good, vod.ApplyRequest{VideoName: "a/b", VideoType: "mp4", VideoSize: ptr(int64(1))}, vod.ErrInvalidParameter},
		{"upper-case type", good, vod.ApplyRequest{VideoName: "a", VideoType: "MP4", VideoSize: ptr(int64(1))}, vod.ErrInvalidParameter},
		{"no size", good, vod.ApplyRequest{VideoName: "a", VideoType: "mp4"}, vod.ErrInvalidParameter},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := v.VODClient().Apply(ctx, fixed(c.sig), c.req)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			var api *vod.APIError
			if !errors.As(err, &api) || api.Retryable() {
				t.Fatalf("err %v is not a non-retryable APIError", err)
			}
		})
	}
	// The reused one-time signature was counted as refused, used once.
	for _, u := range v.SignatureUses() {
		if u.OneTime && (u.Uses != 1 || u.Refused != 1) {
			t.Fatalf("one-time signature use = %+v", u)
		}
	}
}

func TestOneTimeSignaturesAcrossRetryAndCommit(t *testing.T) {
	v := testharness.StartVodsim(t)
	ctx := t.Context()
	// The first apply fails with VOD's internal error: the client retries with a fresh signature.
	if err := v.SetFaults(vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpApply, FailNth: 1}}}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	sign := v.Signer(vod.SignatureParams{OneTimeValid: true})
	counting := func(ctx context.Context) (string, error) { calls++; return sign(ctx) }
	a, err := v.VODClient().Apply(ctx, counting, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(3))})
	if err != nil {
		t.Fatalf("apply with one injected failure: %v", err)
	}
	if calls != 2 {
		t.Fatalf("signatures asked = %d, want 2", calls)
	}
	if _, err := v.COSClient(a).Object.Put(ctx, a.Video.Key(), strings.NewReader("abc"), nil); err != nil {
		t.Fatal(err)
	}
	// The signature spent on the apply cannot commit.
	var spent string
	spentSig := func(ctx context.Context) (string, error) { s, err := sign(ctx); spent = s; return s, err }
	if _, err := v.VODClient().Apply(ctx, spentSig, vod.ApplyRequest{VodSessionKey: a.VodSessionKey}); err != nil {
		t.Fatal(err)
	}
	_, err = v.VODClient().Commit(ctx, func(context.Context) (string, error) { return spent, nil }, a.VodSessionKey)
	if !errors.Is(err, vod.ErrSignatureUsed) {
		t.Fatalf("commit with spent signature: %v", err)
	}
	if _, err := v.VODClient().Commit(ctx, sign, a.VodSessionKey); err != nil {
		t.Fatalf("commit with fresh one-time signature: %v", err)
	}
}

func TestCommitChecksObjectAndSize(t *testing.T) {
	v := testharness.StartVodsim(t)
	ctx := t.Context()
	a := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(5))})
	_, err := v.VODClient().Commit(ctx, v.Signer(vod.SignatureParams{}), a.VodSessionKey)
	if !errors.Is(err, vod.ErrUploadIncomplete) {
		t.Fatalf("commit without object: %v", err)
	}
	if _, err := v.COSClient(a).Object.Put(ctx, a.Video.Key(), strings.NewReader("1234"), nil); err != nil {
		t.Fatal(err)
	}
	_, err = v.VODClient().Commit(ctx, v.Signer(vod.SignatureParams{}), a.VodSessionKey)
	if !errors.Is(err, vod.ErrUploadIncomplete) {
		t.Fatalf("commit with 4 of 5 bytes: %v", err)
	}
	if len(v.Files()) != 0 {
		t.Fatal("refused commit created a file")
	}
	v.Clock().Advance(25 * time.Hour)
	_, err = v.VODClient().Apply(ctx, v.Signer(vod.SignatureParams{}), vod.ApplyRequest{VodSessionKey: a.VodSessionKey})
	if !errors.Is(err, vod.ErrSessionExpired) {
		t.Fatalf("resume after 25h: %v", err)
	}
}

func TestCompleteChecksPartsAndAbortCleansUp(t *testing.T) {
	v := testharness.StartVodsim(t)
	ctx := t.Context()
	a := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(3 << 20))})
	c := v.COSClient(a)
	key := a.Video.Key()
	init, _, err := c.Object.InitiateMultipartUpload(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	small := randomBytes(1000, 4)
	big := randomBytes(1<<20, 5)
	r1, err := c.Object.UploadPart(ctx, key, init.UploadID, 1, bytes.NewReader(small), nil)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.Object.UploadPart(ctx, key, init.UploadID, 2, bytes.NewReader(big), nil)
	if err != nil {
		t.Fatal(err)
	}
	e1, e2 := r1.Header.Get("ETag"), r2.Header.Get("ETag")
	complete := func(parts ...cos.Object) error {
		_, _, err := c.Object.CompleteMultipartUpload(ctx, key, init.UploadID, &cos.CompleteMultipartUploadOptions{Parts: parts})
		return err
	}
	cases := []struct {
		name  string
		parts []cos.Object
		code  string
	}{
		{"first part too small", []cos.Object{{PartNumber: 1, ETag: e1}, {PartNumber: 2, ETag: e2}}, "EntityTooSmall"},
		{"wrong order", []cos.Object{{PartNumber: 2, ETag: e2}, {PartNumber: 1, ETag: e1}}, "InvalidPartOrder"},
		{"wrong etag", []cos.Object{{PartNumber: 2, ETag: e1}}, "InvalidPart"},
		{"missing part", []cos.Object{{PartNumber: 3, ETag: e2}}, "InvalidPart"},
	}
	for _, tc := range cases {
		if got := cosCode(complete(tc.parts...)); got != tc.code {
			t.Errorf("%s: code %q, want %s", tc.name, got, tc.code)
		}
	}
	lp, _, err := c.Object.ListParts(ctx, key, init.UploadID, &cos.ObjectListPartsOptions{MaxParts: "1"})
	if err != nil || len(lp.Parts) != 1 || !lp.IsTruncated || lp.Parts[0].ETag != e1 {
		t.Fatalf("list parts = %+v, %v", lp, err)
	}
	if _, err := c.Object.AbortMultipartUpload(ctx, key, init.UploadID); err != nil {
		t.Fatal(err)
	}
	if n := len(v.Uploads()); n != 0 {
		t.Fatalf("%d uploads left after abort", n)
	}
	if _, err := c.Object.UploadPart(ctx, key, init.UploadID, 3, bytes.NewReader(big), nil); cosCode(err) != "NoSuchUpload" {
		t.Fatalf("upload part after abort: %v", err)
	}
}

func TestFaultInjectionThroughAdminEndpoint(t *testing.T) {
	v := testharness.StartVodsim(t)
	ctx := t.Context()
	a := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(100))})
	put := func(f string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, v.URL+"/vodsim/faults", strings.NewReader(f))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("set faults %s: %v %v", f, err, resp)
		}
		resp.Body.Close()
	}
	c := v.COSClient(a)
	c.Conf.RetryOpt.Count = 1
	put(`{"rules":[{"op":"PutObject","errorRate":1,"status":503,"code":"SlowDown"}]}`)
	if _, err := c.Object.Put(ctx, a.Video.Key(), bytes.NewReader(randomBytes(100, 6)), nil); cosCode(err) != "SlowDown" {
		t.Fatalf("injected error: %v", err)
	}
	put(`{"rules":[{"op":"PutObject","resetRate":1}]}`)
	_, err := c.Object.Put(ctx, a.Video.Key(), bytes.NewReader(randomBytes(100, 6)), nil)
	if err == nil || cosCode(err) != "" {
		t.Fatalf("reset: want a transport error, got %v", err)
	}
	put(`{}`)
	if _, err := c.Object.Put(ctx, a.Video.Key(), bytes.NewReader(randomBytes(100, 6)), nil); err != nil {
		t.Fatalf("after clearing faults: %v", err)
	}
	// Bad fault configs are refused with 400.
	resp, err := http.DefaultClient.Do(must(http.NewRequest(http.MethodPut, v.URL+"/vodsim/faults", strings.NewReader(`{"rules":[{"op":"PutObject","errorRate":2}]}`))))
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad faults: %v %v", err, resp.StatusCode)
	}
	resp.Body.Close()
}

// TestCommitAnswerLatencyComesAfterTheCommit: answerLatency holds the answer,
// not the work: the file exists (and its event is out) while the client waits.
func TestCommitAnswerLatencyComesAfterTheCommit(t *testing.T) {
	v := testharness.StartVodsim(t, func(c *vodsim.Config) {
		c.Faults.Rules = []vodsim.FaultRule{{Op: vodsim.OpCommit, AnswerLatency: vodsim.Duration(30 * time.Second)}}
	})
	ctx := t.Context()
	a := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(2))})
	if _, err := v.COSClient(a).Object.Put(ctx, a.Video.Key(), strings.NewReader("hi"), nil); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := v.VODClient().Commit(cctx, v.Signer(vod.SignatureParams{}), a.VodSessionKey)
		done <- err
	}()
	testharness.WaitFor(t, 10*time.Second, "the committed file", func() bool { return len(v.Files()) == 1 })
	select {
	case err := <-done:
		t.Fatalf("the commit answered (%v) before its answer latency", err)
	default:
	}
	cancel() // the client leaves: the file stays committed
	if err := <-done; err == nil {
		t.Fatal("a canceled commit answered")
	}
	if f := v.Files(); len(f) != 1 || f[0].VideoKey != a.Video.Key() {
		t.Fatalf("files after the client left: %+v", f)
	}
	if err := (vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpCommit, AnswerLatency: -1}}}).Validate(); err == nil {
		t.Fatal("a negative answerLatency was accepted")
	}
	for _, op := range []string{vodsim.OpUploadPart, vodsim.OpPullEvents} {
		if err := (vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: op, AnswerLatency: vodsim.Duration(time.Second)}}}).Validate(); err == nil ||
			!strings.Contains(err.Error(), "rules[0].answerLatency") {
			t.Fatalf("answerLatency on %s: %v, want refused naming the field", op, err)
		}
	}
	if err := (vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpAny, AnswerLatency: vodsim.Duration(time.Second)}}}).Validate(); err != nil {
		t.Fatalf("answerLatency on every op (the VOD upload actions among them): %v", err)
	}
}

// TestLostAnswerCarriesTheWorkOut: a lost answer leaves what was asked for
// done (the object stored, the file committed) while the client sees only
// its connection reset; the reads whose answer is the work are spared.
func TestLostAnswerCarriesTheWorkOut(t *testing.T) {
	v := testharness.StartVodsim(t, func(c *vodsim.Config) {
		c.Faults.Rules = []vodsim.FaultRule{{Op: vodsim.OpPutObject, LostAnswerRate: 1}, {Op: vodsim.OpCommit, LostAnswerRate: 1}}
	})
	ctx := t.Context()
	a := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(2))})
	c := v.COSClient(a)
	c.Conf.RetryOpt.Count = 1
	_, err := c.Object.Put(ctx, a.Video.Key(), strings.NewReader("hi"), nil)
	if err == nil || cosCode(err) != "" {
		t.Fatalf("put with its answer lost: want a transport error, got %v", err)
	}
	if obs := v.Objects(); len(obs) != 1 || obs[0].Key != a.Video.Key() || obs[0].Size != 2 {
		t.Fatalf("objects after a lost answer: %+v, want the object stored", obs)
	}
	if _, err := v.VODClient().Commit(ctx, v.Signer(vod.SignatureParams{}), a.VodSessionKey); err == nil {
		t.Fatal("a commit whose answer was lost answered")
	}
	if f := v.Files(); len(f) != 1 || f[0].VideoKey != a.Video.Key() {
		t.Fatalf("files after a lost commit answer: %+v, want the file committed", f)
	}
	for _, r := range []vodsim.FaultRule{{Op: vodsim.OpGetObject, LostAnswerRate: 1}, {Op: vodsim.OpHeadObject, LostAnswerRate: 1},
		{Op: vodsim.OpPullEvents, LostAnswerRate: 1}, {Op: vodsim.OpPutObject, LostAnswerRate: 1.5}} {
		if err := (vodsim.FaultConfig{Rules: []vodsim.FaultRule{r}}).Validate(); err == nil {
			t.Errorf("lostAnswerRate %v on %s accepted", r.LostAnswerRate, r.Op)
		}
	}
	// Under "*" the reads are spared: a HEAD answers.
	if err := v.SetFaults(vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpAny, LostAnswerRate: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Object.Head(ctx, a.Video.Key(), nil); err != nil {
		t.Fatalf("HEAD under a lost-answer rule for every op: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestPullEventsUntilConfirmed(t *testing.T) {
	v := testharness.StartVodsim(t) // no callback URL: reliable (pull) mode
	ctx := t.Context()
	a := apply(t, v, vod.SignatureParams{SourceContext: "pull-me"}, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(2))})
	if _, err := v.COSClient(a).Object.Put(ctx, a.Video.Key(), strings.NewReader("hi"), nil); err != nil {
		t.Fatal(err)
	}
	cm, err := v.VODClient().Commit(ctx, v.Signer(vod.SignatureParams{}), a.VodSessionKey)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // unconfirmed events come back
		evs := v.PullEvents(10)
		if len(evs) != 1 || evs[0].FileUploadEvent.FileID != cm.FileID || evs[0].EventHandle == "" {
			t.Fatalf("pull = %+v", evs)
		}
	}
	evs := v.PullEvents(10)
	if unknown := v.ConfirmEvents([]string{evs[0].EventHandle, "nope"}); len(unknown) != 1 {
		t.Fatalf("unknown = %v", unknown)
	}
	if evs := v.PullEvents(10); len(evs) != 0 {
		t.Fatalf("confirmed event came back: %+v", evs)
	}
}

func TestCallbackRetriedUntilReceiverAccepts(t *testing.T) {
	fails := 2
	got := make(chan string, 1)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fails > 0 {
			fails--
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		b, _ := io.ReadAll(r.Body)
		e, _ := vod.ParseEvent(b)
		got <- e.FileUploadEvent.FileID
	}))
	defer receiver.Close()
	v := testharness.StartVodsim(t, func(c *vodsim.Config) { c.CallbackURL = receiver.URL })
	cm := uploadOneByte(t, v)
	select {
	case id := <-got:
		if id != cm.FileID {
			t.Fatalf("callback FileId %s, want %s", id, cm.FileID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("callback never accepted")
	}
	// The delivery is recorded just after the receiver answers: wait for it.
	testharness.WaitFor(t, 5*time.Second, "the callback delivered", func() bool { return v.Events()[0].Delivered })
	if ev := v.Events()[0]; len(ev.Attempts) != 3 {
		t.Fatalf("attempts = %+v", ev.Attempts)
	}
}

// TestCallbackErrorsHoldNoToken: a callback that cannot be delivered is
// recorded with its error, and the error does not carry the callback URL's
// query, where notify's token goes.
func TestCallbackErrorsHoldNoToken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: every attempt fails to connect
	v := testharness.StartVodsim(t, func(c *vodsim.Config) {
		c.CallbackURL = "http://" + addr + "/v1/vod/callback?token=tok-secret-123"
		c.CallbackAttempts = 1
	})
	uploadOneByte(t, v)
	testharness.WaitFor(t, 10*time.Second, "the failed attempt recorded", func() bool {
		ev := v.Events()
		return len(ev) == 1 && len(ev[0].Attempts) == 1
	})
	a := v.Events()[0].Attempts[0]
	if a.Error == "" || strings.Contains(a.Error, "tok-secret-123") || strings.Contains(a.Error, "token=") {
		t.Fatalf("attempt error %q: want an error without the token", a.Error)
	}
}

// TestCallbacksReuseOneConnection: vodsim reads each callback answer to the
// end, so its NewFileUpload callbacks, one after another, travel over one
// kept-alive connection instead of a new one each (as a real receiver's
// load balancer would see from VOD).
func TestCallbacksReuseOneConnection(t *testing.T) {
	var conns atomic.Int64
	got := make(chan string, 8)
	receiver := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		e, _ := vod.ParseEvent(b)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true,"note":"an answer with a body, which vodsim must read to reuse the connection"}`))
		got <- e.FileUploadEvent.FileID
	}))
	receiver.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	receiver.Start()
	defer receiver.Close()
	v := testharness.StartVodsim(t, func(c *vodsim.Config) { c.CallbackURL = receiver.URL })
	for i := range 5 {
		cm := uploadOneByte(t, v)
		select {
		case id := <-got:
			if id != cm.FileID {
				t.Fatalf("callback %d FileId %s, want %s", i, id, cm.FileID)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("callback %d never arrived", i)
		}
		testharness.WaitFor(t, 5*time.Second, "the callback delivered", func() bool { return v.Events()[i].Delivered })
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("5 callbacks in turn opened %d connections, want 1", n)
	}
}

// TestTrafficPerObject: vodsim counts, per object key, the body bytes it
// read and the faults it injected, named by the session's media, so a
// harness can hold each upload to what its own faults may cost.
func TestTrafficPerObject(t *testing.T) {
	v := testharness.StartVodsim(t)
	if err := v.SetFaults(vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpPutObject, FailNth: 1}}}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	a := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "media-1", VideoType: "mp4", VideoSize: ptr(int64(5))})
	c := v.COSClient(a)
	// The SDK retries the injected 503 itself; the failed attempt's body is never read.
	if _, err := c.Object.Put(ctx, a.Video.Key(), strings.NewReader("hello"), nil); err != nil {
		t.Fatal(err)
	}
	tr := v.Traffic()
	if len(tr) != 1 || tr[0].Key != a.Video.Key() || tr[0].Media != "media-1" || tr[0].Faults != 1 || tr[0].Received != 5 {
		t.Fatalf("traffic = %+v, want the object's 5 bytes, 1 fault, media-1", tr)
	}
}

// TestTrafficCountsPartStores: vodsim counts, per part number, how often a
// part's body was stored, so a test can tell a resume that skips its stored
// parts from one that sends them again; GET /vodsim/traffic shows the same.
func TestTrafficCountsPartStores(t *testing.T) {
	v := testharness.StartVodsim(t)
	ctx := t.Context()
	a := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "media-1", VideoType: "mp4", VideoSize: ptr(int64(3))})
	c := v.COSClient(a)
	init, _, err := c.Object.InitiateMultipartUpload(ctx, a.Video.Key(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 2} {
		if _, err := c.Object.UploadPart(ctx, a.Video.Key(), init.UploadID, n, strings.NewReader("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Get(v.URL + "/vodsim/traffic")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr []vodsim.ObjectTraffic
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatal(err)
	}
	if len(tr) != 1 || tr[0].Key != a.Video.Key() || tr[0].PartStores[1] != 1 || tr[0].PartStores[2] != 2 || len(tr[0].PartStores) != 2 {
		t.Fatalf("traffic = %+v, want part 1 stored once and part 2 twice", tr)
	}
	// The admin view is a copy: later stores do not change it.
	before := v.Traffic()
	if _, err := c.Object.UploadPart(ctx, a.Video.Key(), init.UploadID, 1, strings.NewReader("x"), nil); err != nil {
		t.Fatal(err)
	}
	if before[0].PartStores[1] != 1 || v.Traffic()[0].PartStores[1] != 2 {
		t.Fatalf("part 1 counts: %d in the earlier view, %d now", before[0].PartStores[1], v.Traffic()[0].PartStores[1])
	}
}

// TestBandwidthChangeReachesBodiesInFlight: a new bandwidth applies to the
// bodies vodsim is reading, not only to the next ones, as a link's speed would.
func TestBandwidthChangeReachesBodiesInFlight(t *testing.T) {
	v := testharness.StartVodsim(t)
	// 4 MiB at 32 KiB/s would take over two minutes.
	if err := v.SetFaults(vodsim.FaultConfig{Bandwidth: 32 << 10}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	size := int64(4 << 20)
	a := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "media-1", VideoType: "mp4", VideoSize: ptr(size)})
	done := make(chan error, 1)
	go func() {
		_, err := v.COSClient(a).Object.Put(ctx, a.Video.Key(), bytes.NewReader(make([]byte, size)), nil)
		done <- err
	}()
	testharness.WaitFor(t, 10*time.Second, "the body being read", func() bool { return v.BytesReceived() > 0 })
	if err := v.SetFaults(vodsim.FaultConfig{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the body in flight kept the old limit: %d of %d bytes after 30 s", v.BytesReceived(), size)
	}
	if got := v.BytesReceived(); got != size {
		t.Fatalf("vodsim read %d bytes, want %d", got, size)
	}
}

// uploadOneByte applies, puts a one-byte video and commits it.
func uploadOneByte(t *testing.T, v *testharness.Vodsim) *vod.CommitResponse {
	t.Helper()
	a := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(1))})
	if _, err := v.COSClient(a).Object.Put(t.Context(), a.Video.Key(), strings.NewReader("x"), nil); err != nil {
		t.Fatal(err)
	}
	cm, err := v.VODClient().Commit(t.Context(), v.Signer(vod.SignatureParams{}), a.VodSessionKey)
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// Sessions older than their lifetime are forgotten as new ones are opened
// (VOD refuses them as expired either way), so a long run of uploads keeps
// the sessions of one lifetime, not every session ever opened.
func TestSessionsAreForgottenAfterTheirLifetime(t *testing.T) {
	v := testharness.StartVodsim(t)
	first := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "old-media", VideoType: "mp4", VideoSize: ptr(int64(5))})
	if _, err := v.COSClient(first).Object.Put(t.Context(), first.Video.Key(), strings.NewReader("12345"), nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(5))})
	}
	v.Clock().Advance(23 * time.Hour)
	young := apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(5))})
	if n := len(v.Sessions()); n != 4 {
		t.Fatalf("%d sessions within their lifetime kept, want 4", n)
	}
	v.Clock().Advance(2 * time.Hour)
	apply(t, v, vod.SignatureParams{}, vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(5))})
	if n := len(v.Sessions()); n != 2 {
		t.Fatalf("%d sessions kept 25 h after the first three, want 2 (the young one and the new)", n)
	}
	if _, err := v.VODClient().Apply(t.Context(), v.Signer(vod.SignatureParams{}), vod.ApplyRequest{VodSessionKey: young.VodSessionKey}); err != nil {
		t.Fatalf("the session within its lifetime: %v", err)
	}
	// The traffic record of a forgotten session's object keeps its media name.
	i := slices.IndexFunc(v.Traffic(), func(tr vodsim.ObjectTraffic) bool { return tr.Key == first.Video.Key() })
	if i < 0 {
		t.Fatal("no traffic record of the object put")
	}
	if media := v.Traffic()[i].Media; media != "old-media" {
		t.Fatalf("the traffic of a forgotten session's object names media %q, want old-media", media)
	}
}
