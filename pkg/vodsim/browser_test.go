package vodsim_test

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// Browsers preflight VOD's JSON calls and COS's signed requests; vodsim
// answers as the services do and exposes the headers the web SDK reads.
func TestCORSPreflightsAndExposedHeaders(t *testing.T) {
	v := testharness.StartVodsim(t)
	client := v.HTTPClient()
	preflight := func(url, method, headers string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodOptions, url, nil)
		req.Header.Set("Origin", "http://127.0.0.1:8080")
		req.Header.Set("Access-Control-Request-Method", method)
		req.Header.Set("Access-Control-Request-Headers", headers)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	cases := []struct{ name, url, method, headers string }{
		{"VOD apply", "http://vod2.qcloud.com/v3/index.php?Action=ApplyUploadUGC", "POST", "content-type"},
		{"COS upload part", "http://vodsimgzp-1250000000.cos.ap-guangzhou.myqcloud.com/k/v.mp4?partNumber=1&uploadId=x", "PUT",
			"authorization,content-type,x-cos-security-token"},
		{"COS list uploads", "http://vodsimgzp-1250000000.cos.ap-guangzhou.myqcloud.com/?uploads&prefix=k", "GET", "authorization,x-cos-security-token"},
	}
	for _, c := range cases {
		resp := preflight(c.url, c.method, c.headers)
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("Access-Control-Allow-Origin") != "http://127.0.0.1:8080" ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), c.method) ||
			h.Get("Access-Control-Allow-Headers") != c.headers {
			t.Errorf("%s: preflight %d %v", c.name, resp.StatusCode, h)
		}
	}
	// A real answer exposes ETag and the CRC header to the page.
	a, err := v.VODClient().Apply(t.Context(), v.Signer(vod.SignatureParams{}), vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(3))})
	if err != nil {
		t.Fatal(err)
	}
	c := v.COSClient(a)
	ctx := t.Context()
	resp, err := c.Object.Put(ctx, a.Video.Key(), strings.NewReader("abc"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS headers on a request without Origin")
	}
	req, _ := http.NewRequest(http.MethodGet, "http://vod2.qcloud.com/healthz", nil)
	req.Header.Set("Origin", "https://page.example")
	r2, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if !strings.Contains(r2.Header.Get("Access-Control-Expose-Headers"), "x-cos-hash-crc64ecma") ||
		!strings.Contains(r2.Header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Fatalf("exposed headers = %q", r2.Header.Get("Access-Control-Expose-Headers"))
	}
}

// vodsim serves the same APIs over TLS, as https://vod2.qcloud.com.
func TestTLSListener(t *testing.T) {
	v := testharness.StartVodsim(t)
	addr := v.StartTLS(t)
	tr := vod.DialOverride(addr)
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, ServerName: "vod2.qcloud.com"} //nolint:gosec // self-signed test certificate
	vc := vod.NewClient(vod.WithEndpoint("https://vod2.qcloud.com"), vod.WithHTTPClient(&http.Client{Transport: tr}))
	if _, err := vc.Apply(t.Context(), v.Signer(vod.SignatureParams{}), vod.ApplyRequest{VideoName: "v", VideoType: "mp4", VideoSize: ptr(int64(1))}); err != nil {
		t.Fatalf("apply over TLS: %v", err)
	}
}
