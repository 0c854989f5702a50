package testharness

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	cos "github.com/tencentyun/cos-go-sdk-v5"

	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// Test app keys of the vodsim started by StartVodsim.
const (
	VodsimSecretID  = "AKIDharnessTestApp0000000000000"
	VodsimSecretKey = "harness-test-secret-key-0000000"
)

// Vodsim is an in-process vodsim listening on a loopback port.
type Vodsim struct {
	*vodsim.Server
	Addr string
	// URL is the VOD endpoint to give pkg/vod's client.
	URL   string
	clock *Clock
}

// Clock is a settable clock for vodsim: real time plus an offset tests move forward.
type Clock struct{ offset atomic.Int64 }

// Now is real time plus the offset.
func (c *Clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// StartVodsim starts vodsim in process with one app (VodsimSecretID /
// VodsimSecretKey), its data in a temp dir; mod may change the config first.
func StartVodsim(t testing.TB, mod ...func(*vodsim.Config)) *Vodsim {
	t.Helper()
	clock := &Clock{}
	cfg := vodsim.Config{
		Apps:    vodsim.Apps{VodsimSecretID: VodsimSecretKey},
		DataDir: t.TempDir(),
		Clock:   clock.Now,
		// Fast retries keep callback tests quick.
		CallbackBackoff: 20 * time.Millisecond,
	}
	for _, m := range mod {
		m(&cfg)
	}
	log := slog.New(slog.NewJSONHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := vodsim.New(cfg, log)
	if err != nil {
		t.Fatalf("testharness: vodsim: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("testharness: vodsim serve: %v", err)
		}
		_ = s.Close()
	})
	addr := l.Addr().String()
	return &Vodsim{Server: s, Addr: addr, URL: "http://" + addr, clock: clock}
}

// StartTLS also serves vodsim over TLS (self-signed) on a free port until the test ends.
func (v *Vodsim) StartTLS(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = v.ServeTLS(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return l.Addr().String()
}

// Clock returns vodsim's clock, to move it forward.
func (v *Vodsim) Clock() *Clock { return v.clock }

// HTTPClient returns a client whose every connection goes to vodsim, so
// production URLs (COS bucket hosts, vod2.qcloud.com) reach it unchanged.
func (v *Vodsim) HTTPClient() *http.Client {
	return &http.Client{Transport: vod.DialOverride(v.Addr), Timeout: 5 * time.Minute}
}

// VODClient returns a pkg/vod client for this vodsim, with fast retries.
func (v *Vodsim) VODClient(opts ...vod.ClientOption) *vod.Client {
	base := []vod.ClientOption{vod.WithEndpoint(v.URL), vod.WithHTTPClient(v.HTTPClient()), vod.WithRetry(3, 10*time.Millisecond)}
	return vod.NewClient(append(base, opts...)...)
}

// Signer returns a SignatureFunc making a fresh signature with policy p per call.
func (v *Vodsim) Signer(p vod.SignatureParams) vod.SignatureFunc {
	return func(context.Context) (string, error) {
		q := p
		now := v.clock.Now()
		q.SecretID, q.CurrentTimeStamp, q.ExpireTime, q.Random = VodsimSecretID, now.Unix(), now.Add(time.Hour).Unix(), vod.NewRandom()
		return vod.Sign(VodsimSecretKey, q)
	}
}

// COSClient returns an unmodified cos-go-sdk-v5 client for an apply answer's
// bucket, with its temporary credentials, dialing vodsim.
func (v *Vodsim) COSClient(a *vod.ApplyResponse) *cos.Client {
	return NewCOSClient(a, v.Addr)
}

// NewCOSClient builds a cos-go-sdk-v5 client for a's bucket (http scheme) that dials addr.
func NewCOSClient(a *vod.ApplyResponse, addr string) *cos.Client {
	u, _ := cos.NewBucketURL(a.Bucket(), a.StorageRegionV5, false)
	return cos.NewClient(&cos.BaseURL{BucketURL: u}, &http.Client{Transport: &cos.AuthorizationTransport{
		SecretID: a.TempCertificate.SecretID, SecretKey: a.TempCertificate.SecretKey,
		SessionToken: a.TempCertificate.Token, Transport: vod.DialOverride(addr),
	}})
}

// testWriter sends logs to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
