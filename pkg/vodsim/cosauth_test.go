package vodsim

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cos "github.com/tencentyun/cos-go-sdk-v5"
)

const (
	testBucketURL  = "http://examplebucket-1250000000.cos.ap-guangzhou.myqcloud.com"
	testBucketHost = "examplebucket-1250000000.cos.ap-guangzhou.myqcloud.com"
	testSecretID   = "AKIDexampleSecretID0123456789"
	testSecretKey  = "exampleSecretKey0123456789abcdef"
	testToken      = "session-token-for/temporary+credentials=="
	testUploadID   = "1585130821cbb7df1d11846c073ad648e8f33b087cec2381df437acdc833cf654b9ecc6361"
)

// testObjectKeys are keys whose path encoding is easy to get wrong: the SDK
// escapes '/' as %2F and spares !'()*, the server decodes, and the signature
// covers the decoded path.
var testObjectKeys = []string{
	"plain.mp4",
	"dir/sub/file.mp4",
	"with space.mp4",
	"视频/上传 测试.mp4",
	"a+b=c&d.mp4",
	"100%.mp4",
	"%2F-not-a-slash.mp4",
	"!'()*~_-.mp4",
	"semi;colon,comma?hash#.mp4",
	"trailing/",
}

func TestVerifyCOSRequestSDKOperations(t *testing.T) {
	for _, key := range testObjectKeys {
		t.Run(key, func(t *testing.T) {
			ep := newCOSEndpoint(t, testSecretKey)
			c := ep.client(t, cosCreds{id: testSecretID, key: testSecretKey}, nil)
			ctx := t.Context()
			wantPath := "/" + key

			ops := []struct {
				name       string
				call       func() error
				wantMethod string
				wantParams []string
				// wantHeaders is q-header-list exactly as the SDK sends it,
				// which documents what it signs by default.
				wantHeaders []string
			}{
				{
					name: "Put",
					call: func() error {
						_, err := c.Object.Put(ctx, key, strings.NewReader("small media"), &cos.ObjectPutOptions{
							ObjectPutHeaderOptions: &cos.ObjectPutHeaderOptions{
								ContentType: "video/mp4",
								XCosMetaXXX: &http.Header{"X-Cos-Meta-Author": {"vodpipe"}},
							},
						})
						return err
					},
					wantMethod:  http.MethodPut,
					wantHeaders: []string{"content-length", "content-type", "host", "x-cos-meta-author"},
				},
				{
					name: "Head",
					call: func() error {
						_, err := c.Object.Head(ctx, key, nil)
						return err
					},
					wantMethod:  http.MethodHead,
					wantHeaders: []string{"host"},
				},
				{
					name: "InitiateMultipartUpload",
					call: func() error {
						res, _, err := c.Object.InitiateMultipartUpload(ctx, key, &cos.InitiateMultipartUploadOptions{
							ObjectPutHeaderOptions: &cos.ObjectPutHeaderOptions{ContentType: "video/mp4"},
						})
						if err == nil && res.UploadID != testUploadID {
							err = fmt.Errorf("UploadID %q, want %q", res.UploadID, testUploadID)
						}
						return err
					},
					wantMethod:  http.MethodPost,
					wantParams:  []string{"uploads"},
					wantHeaders: []string{"content-length", "content-type", "host"},
				},
				{
					name: "UploadPart",
					call: func() error {
						_, err := c.Object.UploadPart(ctx, key, testUploadID, 1, bytes.NewReader(bytes.Repeat([]byte("p"), 4096)), nil)
						return err
					},
					wantMethod:  http.MethodPut,
					wantParams:  []string{"partnumber", "uploadid"},
					wantHeaders: []string{"content-length", "host"},
				},
				{
					name: "ListParts",
					call: func() error {
						_, _, err := c.Object.ListParts(ctx, key, testUploadID, &cos.ObjectListPartsOptions{
							MaxParts:         "1000",
							EncodingType:     "url",
							PartNumberMarker: "0",
						})
						return err
					},
					wantMethod:  http.MethodGet,
					wantParams:  []string{"encoding-type", "max-parts", "part-number-marker", "uploadid"},
					wantHeaders: []string{"host"},
				},
				{
					name: "CompleteMultipartUpload",
					call: func() error {
						_, _, err := c.Object.CompleteMultipartUpload(ctx, key, testUploadID, &cos.CompleteMultipartUploadOptions{
							Parts: []cos.Object{{PartNumber: 1, ETag: `"etag-1"`}},
						})
						return err
					},
					wantMethod:  http.MethodPost,
					wantParams:  []string{"uploadid"},
					wantHeaders: []string{"content-length", "content-md5", "content-type", "host"},
				},
				{
					name: "AbortMultipartUpload",
					call: func() error {
						_, err := c.Object.AbortMultipartUpload(ctx, key, testUploadID)
						return err
					},
					wantMethod:  http.MethodDelete,
					wantParams:  []string{"uploadid"},
					wantHeaders: []string{"host"},
				},
			}
			for _, op := range ops {
				t.Run(op.name, func(t *testing.T) {
					if err := op.call(); err != nil {
						t.Fatalf("%s: %v", op.name, err)
					}
					got := ep.takeOne(t)
					if got.err != nil {
						t.Fatalf("verify: %v", got.err)
					}
					if got.method != op.wantMethod || got.path != wantPath {
						t.Errorf("request %s %q, want %s %q", got.method, got.path, op.wantMethod, wantPath)
					}
					if !slices.Equal(got.auth.HeaderList, op.wantHeaders) {
						t.Errorf("q-header-list %q, want %q", got.auth.HeaderList, op.wantHeaders)
					}
					if !slices.Equal(got.auth.ParamList, op.wantParams) {
						t.Errorf("q-url-param-list %q, want %q", got.auth.ParamList, op.wantParams)
					}
				})
			}
		})
	}
}

// TestVerifyCOSRequestSDKSigningDetails covers what the SDK signs beyond the
// defaults: the session token, repeated and oddly named headers, and a body
// of unknown length sent chunked.
func TestVerifyCOSRequestSDKSigningDetails(t *testing.T) {
	tests := []struct {
		name        string
		creds       cosCreds
		call        func(ctx context.Context, c *cos.Client) error
		wantHeaders []string
	}{
		{
			name:  "session token is signed",
			creds: cosCreds{id: testSecretID, key: testSecretKey, token: testToken},
			call: func(ctx context.Context, c *cos.Client) error {
				_, err := c.Object.Head(ctx, "a.mp4", nil)
				return err
			},
			wantHeaders: []string{"host", "x-cos-security-token"},
		},
		{
			// The SDK lists a name once per value and sorts values raw,
			// before encoding: "a/" < "a-" encoded ("%2F" < "-") but not raw.
			name:  "repeated header values",
			creds: cosCreds{id: testSecretID, key: testSecretKey},
			call: func(ctx context.Context, c *cos.Client) error {
				_, err := c.Object.Head(ctx, "a.mp4", &cos.ObjectHeadOptions{
					XOptionHeader: &http.Header{"X-Cos-Meta-Tag": {"a/", "a-", "A b"}},
				})
				return err
			},
			wantHeaders: []string{"host", "x-cos-meta-tag", "x-cos-meta-tag", "x-cos-meta-tag"},
		},
		{
			// A token character the SDK escapes: it lower-cases after
			// encoding, so the name is signed as %2a, not %2A.
			name:  "header name with an escaped character",
			creds: cosCreds{id: testSecretID, key: testSecretKey},
			call: func(ctx context.Context, c *cos.Client) error {
				_, err := c.Object.Head(ctx, "a.mp4", &cos.ObjectHeadOptions{
					XOptionHeader: &http.Header{"X-Cos-Meta-A*b": {"star"}},
				})
				return err
			},
			wantHeaders: []string{"host", "x-cos-meta-a%2ab"},
		},
		{
			name:  "signed conditional header",
			creds: cosCreds{id: testSecretID, key: testSecretKey},
			call: func(ctx context.Context, c *cos.Client) error {
				_, err := c.Object.Head(ctx, "a.mp4", &cos.ObjectHeadOptions{
					IfModifiedSince: "Mon, 02 Jan 2006 15:04:05 GMT",
				})
				return err
			},
			wantHeaders: []string{"host", "if-modified-since"},
		},
		{
			// Go's server moves Transfer-Encoding out of r.Header into
			// r.TransferEncoding; the verifier must find it there.
			name:  "chunked body with signed Transfer-Encoding",
			creds: cosCreds{id: testSecretID, key: testSecretKey},
			call: func(ctx context.Context, c *cos.Client) error {
				body := io.MultiReader(strings.NewReader("length "), strings.NewReader("unknown"))
				_, err := c.Object.Put(ctx, "chunked.mp4", body, &cos.ObjectPutOptions{
					ObjectPutHeaderOptions: &cos.ObjectPutHeaderOptions{
						XOptionHeader: &http.Header{"Transfer-Encoding": {"chunked"}},
					},
				})
				return err
			},
			wantHeaders: []string{"host", "transfer-encoding"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := newCOSEndpoint(t, tt.creds.key)
			c := ep.client(t, tt.creds, nil)
			if err := tt.call(t.Context(), c); err != nil {
				t.Fatalf("SDK call: %v", err)
			}
			got := ep.takeOne(t)
			if got.err != nil {
				t.Fatalf("verify: %v", got.err)
			}
			if !slices.Equal(got.auth.HeaderList, tt.wantHeaders) {
				t.Errorf("q-header-list %q, want %q", got.auth.HeaderList, tt.wantHeaders)
			}
		})
	}
}

// TestVerifyCOSRequestTampered signs with the real SDK and then breaks one
// thing: the key, the request after signing, the Authorization header or
// the signed times.
func TestVerifyCOSRequestTampered(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		// key is the secret the client signs with; the endpoint knows
		// testSecretKey.
		key   string
		token string
		// sign, when set, replaces AuthorizationTransport with a signer
		// using cos.AddAuthorizationHeader and this AuthTime.
		sign *cos.AuthTime
		// tamper changes the signed request in flight.
		tamper  func(r *http.Request)
		call    func(ctx context.Context, c *cos.Client) error
		wantErr error
	}{
		{
			name:    "wrong secret key",
			key:     "not" + testSecretKey,
			call:    sdkPut,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name:    "content-type changed",
			tamper:  func(r *http.Request) { r.Header.Set("Content-Type", "text/html") },
			call:    sdkPut,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name:    "x-cos-meta header changed",
			tamper:  func(r *http.Request) { r.Header.Set("X-Cos-Meta-Author", "mallory") },
			call:    sdkPut,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name:    "signed header removed",
			tamper:  func(r *http.Request) { r.Header.Del("X-Cos-Meta-Author") },
			call:    sdkPut,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name:    "header value added to a signed header",
			tamper:  func(r *http.Request) { r.Header.Add("X-Cos-Meta-Author", "second") },
			call:    sdkPut,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name:    "host changed",
			tamper:  func(r *http.Request) { r.Host = "otherbucket-1250000000.cos.ap-guangzhou.myqcloud.com" },
			call:    sdkPut,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name:    "object key changed",
			tamper:  func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/other.mp4", "" },
			call:    sdkPut,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name:    "method changed",
			tamper:  func(r *http.Request) { r.Method = http.MethodGet },
			call:    sdkHead,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name: "query param changed",
			tamper: func(r *http.Request) {
				r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "partNumber=1", "partNumber=2", 1)
			},
			call:    sdkUploadPart,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name: "option query param changed",
			tamper: func(r *http.Request) {
				r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "max-parts=10", "max-parts=1000", 1)
			},
			call:    sdkListParts,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name: "signed query param removed",
			tamper: func(r *http.Request) {
				q := r.URL.Query()
				q.Del("encoding-type")
				r.URL.RawQuery = q.Encode()
			},
			call:    sdkListParts,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name:    "security token changed",
			token:   testToken,
			tamper:  func(r *http.Request) { r.Header.Set("X-Cos-Security-Token", "other-token") },
			call:    sdkHead,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name:    "signature altered",
			tamper:  rewriteCOSAuth(func(a string) string { return a[:len(a)-1] + flipHexDigit(a[len(a)-1]) }),
			call:    sdkHead,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			// q-key-time feeds the SignKey, so widening it breaks the signature.
			name: "key time extended",
			tamper: rewriteCOSAuthField("q-key-time", func(v string) string {
				s, _, _ := strings.Cut(v, ";")
				return s + ";" + strconv.FormatInt(now.Add(48*time.Hour).Unix(), 10)
			}),
			call:    sdkHead,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name:    "sign time expired",
			sign:    &cos.AuthTime{SignStartTime: now.Add(-2 * time.Hour), SignEndTime: now.Add(-time.Hour), KeyStartTime: now.Add(-2 * time.Hour), KeyEndTime: now.Add(-time.Hour)},
			call:    sdkHead,
			wantErr: ErrCOSRequestExpired,
		},
		{
			name:    "key time expired, sign time valid",
			sign:    &cos.AuthTime{SignStartTime: now.Add(-time.Minute), SignEndTime: now.Add(time.Hour), KeyStartTime: now.Add(-2 * time.Hour), KeyEndTime: now.Add(-time.Hour)},
			call:    sdkHead,
			wantErr: ErrCOSRequestExpired,
		},
		{
			name:    "sign time ended a second ago",
			sign:    &cos.AuthTime{SignStartTime: now.Add(-time.Hour), SignEndTime: now.Add(-2 * time.Second), KeyStartTime: now.Add(-time.Hour), KeyEndTime: now.Add(time.Hour)},
			call:    sdkHead,
			wantErr: ErrCOSRequestExpired,
		},
		{
			name:    "sign time starts in ten minutes",
			sign:    &cos.AuthTime{SignStartTime: now.Add(10 * time.Minute), SignEndTime: now.Add(time.Hour), KeyStartTime: now.Add(-time.Hour), KeyEndTime: now.Add(time.Hour)},
			call:    sdkHead,
			wantErr: ErrCOSRequestExpired,
		},
		{
			name:    "sign time starts in an hour",
			sign:    &cos.AuthTime{SignStartTime: now.Add(time.Hour), SignEndTime: now.Add(2 * time.Hour), KeyStartTime: now.Add(time.Hour), KeyEndTime: now.Add(2 * time.Hour)},
			call:    sdkHead,
			wantErr: ErrCOSTimeTooSkewed,
		},
		{
			// host may go unsigned (the web SDK does not sign it), but dropping it
			// from the list of a request signed with it breaks the signature.
			name: "host removed from header list after signing",
			tamper: rewriteCOSAuthField("q-header-list", func(v string) string {
				return strings.Join(slices.DeleteFunc(strings.Split(v, ";"), func(h string) bool { return h == "host" }), ";")
			}),
			call:    sdkPut,
			wantErr: ErrCOSSignatureMismatch,
		},
		{
			name:    "algorithm not sha1",
			tamper:  rewriteCOSAuthField("q-sign-algorithm", func(string) string { return "sha256" }),
			call:    sdkHead,
			wantErr: ErrCOSAuthMalformed,
		},
		{
			name:    "header not q-sign",
			tamper:  func(r *http.Request) { r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x") },
			call:    sdkHead,
			wantErr: ErrCOSAuthMalformed,
		},
		{
			name:    "no Authorization",
			tamper:  func(r *http.Request) { r.Header.Del("Authorization") },
			call:    sdkHead,
			wantErr: ErrCOSAuthMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := newCOSEndpoint(t, testSecretKey)
			creds := cosCreds{id: testSecretID, key: testSecretKey, token: tt.token, authTime: tt.sign}
			if tt.key != "" {
				creds.key = tt.key
			}
			c := ep.client(t, creds, tt.tamper)
			err := tt.call(t.Context(), c)
			if err == nil {
				t.Fatal("SDK call succeeded, want a COS error")
			}
			got := ep.takeOne(t)
			if !errors.Is(got.err, tt.wantErr) {
				t.Fatalf("verify error %v, want %v", got.err, tt.wantErr)
			}
			// The SDK must see the refusal as COS sends it.
			var cosErr *cos.ErrorResponse
			if !errors.As(err, &cosErr) || cosErr.Response.StatusCode != http.StatusForbidden {
				t.Errorf("SDK error %v, want a 403 *cos.ErrorResponse", err)
			}
		})
	}
}

// TestVerifyCOSRequestUnsignedParts changes what the signature does not
// cover; the request still verifies, as at COS.
func TestVerifyCOSRequestUnsignedParts(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(r *http.Request)
		call   func(ctx context.Context, c *cos.Client) error
	}{
		{
			name:   "unsigned header added",
			tamper: func(r *http.Request) { r.Header.Set("X-Cos-Added-After-Signing", "1") },
			call:   sdkPut,
		},
		{
			name:   "user agent changed",
			tamper: func(r *http.Request) { r.Header.Set("User-Agent", "curl/8") },
			call:   sdkPut,
		},
		{
			name:   "query param added",
			tamper: func(r *http.Request) { r.URL.RawQuery += "&added=1" },
			call:   sdkListParts,
		},
		{
			// q-sign-time is not in StringToSign (the SDK puts q-key-time
			// there), so it can be rewritten within the q-key-time window.
			name:   "sign time rewritten",
			tamper: rewriteCOSAuthField("q-sign-time", func(v string) string { s, _, _ := strings.Cut(v, ";"); return s + ";" + s + "9" }),
			call:   sdkHead,
		},
		{
			name:   "auth fields reordered",
			tamper: rewriteCOSAuth(func(a string) string { f := strings.Split(a, "&"); slices.Reverse(f); return strings.Join(f, "&") }),
			call:   sdkHead,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := newCOSEndpoint(t, testSecretKey)
			c := ep.client(t, cosCreds{id: testSecretID, key: testSecretKey}, tt.tamper)
			if err := tt.call(t.Context(), c); err != nil {
				t.Fatalf("SDK call: %v", err)
			}
			if got := ep.takeOne(t); got.err != nil {
				t.Fatalf("verify: %v", got.err)
			}
		})
	}
}

// TestVerifyCOSRequestTimes walks the edges of the signed windows on one
// request signed at a fixed time.
func TestVerifyCOSRequestTimes(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	authTime := &cos.AuthTime{
		SignStartTime: t0, SignEndTime: t0.Add(time.Hour),
		KeyStartTime: t0.Add(-time.Hour), KeyEndTime: t0.Add(2 * time.Hour),
	}
	r := httptest.NewRequest(http.MethodHead, testBucketURL+"/a.mp4", nil)
	cos.AddAuthorizationHeader(testSecretID, testSecretKey, "", r, authTime)
	a, err := ParseCOSAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		now     time.Time
		wantErr error
	}{
		{name: "at sign start", now: t0},
		{name: "inside", now: t0.Add(30 * time.Minute)},
		{name: "last instant of sign end", now: t0.Add(time.Hour + 999*time.Millisecond)},
		{name: "one second after sign end", now: t0.Add(time.Hour + time.Second), wantErr: ErrCOSRequestExpired},
		{name: "after key end", now: t0.Add(3 * time.Hour), wantErr: ErrCOSRequestExpired},
		{name: "one second before sign start", now: t0.Add(-time.Second), wantErr: ErrCOSRequestExpired},
		{name: "sign start exactly max skew ahead", now: t0.Add(-MaxCOSClockSkew), wantErr: ErrCOSRequestExpired},
		{name: "sign start beyond max skew", now: t0.Add(-MaxCOSClockSkew - time.Second), wantErr: ErrCOSTimeTooSkewed},
		{name: "key start far ahead", now: t0.Add(-2 * time.Hour), wantErr: ErrCOSTimeTooSkewed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := VerifyCOSRequest(r, a, testSecretKey, tt.now); !errors.Is(err, tt.wantErr) {
				t.Errorf("VerifyCOSRequest at %v: %v, want %v", tt.now.Sub(t0), err, tt.wantErr)
			}
		})
	}
	// A wrong key is reported as such even when the times are also wrong:
	// the signature is checked first.
	if err := VerifyCOSRequest(r, a, "wrong", t0.Add(5*time.Hour)); !errors.Is(err, ErrCOSSignatureMismatch) {
		t.Errorf("wrong key, expired: %v, want %v", err, ErrCOSSignatureMismatch)
	}
}

// TestVerifyCOSRequestHandBuilt verifies requests built in-process rather
// than received by a server, where Host may still sit in r.Header under any
// spelling: the host must come from r.Host alone, once.
func TestVerifyCOSRequestHandBuilt(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(r *http.Request)
		wantErr error
	}{
		{name: "as signed, Host in r.Header", mutate: func(*http.Request) {}},
		{name: "Host removed from r.Header", mutate: func(r *http.Request) { r.Header.Del("Host") }},
		{name: "lower-case host key in r.Header", mutate: func(r *http.Request) { r.Header.Del("Host"); r.Header["host"] = []string{testBucketHost} }},
		{name: "stale Host in r.Header ignored", mutate: func(r *http.Request) { r.Header.Set("Host", "other.example") }},
		{name: "r.Host changed", mutate: func(r *http.Request) { r.Host = "other.example" }, wantErr: ErrCOSSignatureMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPut, testBucketURL+"/dir%2Fa.mp4?partNumber=3&uploadId="+testUploadID, strings.NewReader("body"))
			r.Header.Set("Content-Type", "video/mp4")
			cos.AddAuthorizationHeader(testSecretID, testSecretKey, "", r, cos.NewAuthTime(time.Hour))
			a, err := ParseCOSAuthorization(r.Header.Get("Authorization"))
			if err != nil {
				t.Fatal(err)
			}
			tt.mutate(r)
			if err := VerifyCOSRequest(r, a, testSecretKey, time.Now()); !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("VerifyCOSRequest: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyCOSRequestBadAuth(t *testing.T) {
	r := httptest.NewRequest(http.MethodHead, testBucketURL+"/a.mp4", nil)
	cos.AddAuthorizationHeader(testSecretID, testSecretKey, "", r, cos.NewAuthTime(time.Hour))
	valid, err := ParseCOSAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(a *COSAuth) *COSAuth
	}{
		{name: "nil", mutate: func(*COSAuth) *COSAuth { return nil }},
		{name: "algorithm", mutate: func(a *COSAuth) *COSAuth { a.Algorithm = "SHA1"; return a }},
		{name: "no access key", mutate: func(a *COSAuth) *COSAuth { a.AccessKey = ""; return a }},
		{name: "signature not hex", mutate: func(a *COSAuth) *COSAuth { a.Signature = strings.Repeat("z", 40); return a }},
		{name: "signature short", mutate: func(a *COSAuth) *COSAuth { a.Signature = a.Signature[:38]; return a }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := *valid
			if err := VerifyCOSRequest(r, tt.mutate(&a), testSecretKey, time.Now()); !errors.Is(err, ErrCOSAuthMalformed) {
				t.Errorf("VerifyCOSRequest: %v, want %v", err, ErrCOSAuthMalformed)
			}
		})
	}
}

func TestParseCOSAuthorization(t *testing.T) {
	const sig = "0123456789abcdef0123456789abcdef01234567"
	valid := "q-sign-algorithm=sha1&q-ak=AKIDtest&q-sign-time=1700000000;1700003600&q-key-time=1699990000;1700007200" +
		"&q-header-list=content-type;host;x-cos-meta-a%2ab&q-url-param-list=max-parts;uploadid&q-signature=" + sig
	replace := func(old, new string) string {
		if !strings.Contains(valid, old) {
			panic("test bug: " + old)
		}
		return strings.Replace(valid, old, new, 1)
	}

	t.Run("valid", func(t *testing.T) {
		a, err := ParseCOSAuthorization(valid)
		if err != nil {
			t.Fatal(err)
		}
		want := COSAuth{
			Algorithm: "sha1", AccessKey: "AKIDtest",
			SignStart: time.Unix(1700000000, 0), SignEnd: time.Unix(1700003600, 0),
			KeyStart: time.Unix(1699990000, 0), KeyEnd: time.Unix(1700007200, 0),
			SignTime: "1700000000;1700003600", KeyTime: "1699990000;1700007200",
			HeaderList: []string{"content-type", "host", "x-cos-meta-a%2ab"},
			ParamList:  []string{"max-parts", "uploadid"},
			Signature:  sig,
		}
		if fmt.Sprint(*a) != fmt.Sprint(want) {
			t.Errorf("got  %+v\nwant %+v", *a, want)
		}
	})

	tests := []struct {
		name   string
		header string
		// wantErr nil means it parses.
		wantErr error
	}{
		{name: "empty param list", header: replace("max-parts;uploadid", "")},
		{name: "unknown field ignored", header: valid + "&q-extra=1"},
		{name: "instant window", header: replace("1700000000;1700003600", "1700000000;1700000000")},
		{name: "empty", header: "", wantErr: ErrCOSAuthMalformed},
		{name: "other scheme", header: "Bearer abc", wantErr: ErrCOSAuthMalformed},
		{name: "field without =", header: valid + "&q-extra", wantErr: ErrCOSAuthMalformed},
		{name: "field repeated", header: valid + "&q-ak=other", wantErr: ErrCOSAuthMalformed},
		{name: "signature missing", header: strings.TrimSuffix(valid, "&q-signature="+sig), wantErr: ErrCOSAuthMalformed},
		{name: "param list missing", header: replace("&q-url-param-list=max-parts;uploadid", ""), wantErr: ErrCOSAuthMalformed},
		{name: "algorithm sha256", header: replace("sha1", "sha256"), wantErr: ErrCOSAuthMalformed},
		{name: "access key empty", header: replace("AKIDtest", ""), wantErr: ErrCOSAuthMalformed},
		{name: "host not in header list", header: replace(";host;", ";")}, // the web SDK never signs host
		{name: "header list empty", header: replace("content-type;host;x-cos-meta-a%2ab", "")},
		{name: "header list upper case", header: replace("content-type", "Content-Type"), wantErr: ErrCOSAuthMalformed},
		{name: "header list upper-case escape", header: replace("%2ab", "%2Ab"), wantErr: ErrCOSAuthMalformed},
		{name: "header list raw star", header: replace("a%2ab", "a*b"), wantErr: ErrCOSAuthMalformed},
		{name: "header list truncated escape", header: replace("a%2ab", "a%2"), wantErr: ErrCOSAuthMalformed},
		{name: "header list empty name", header: replace("content-type;host", "content-type;;host"), wantErr: ErrCOSAuthMalformed},
		{name: "param list empty name", header: replace("max-parts;uploadid", "max-parts;"), wantErr: ErrCOSAuthMalformed},
		{name: "sign time one value", header: replace("1700000000;1700003600", "1700000000"), wantErr: ErrCOSAuthMalformed},
		{name: "sign time reversed", header: replace("1700000000;1700003600", "1700003600;1700000000"), wantErr: ErrCOSAuthMalformed},
		{name: "sign time negative", header: replace("1700000000;1700003600", "-1;1700003600"), wantErr: ErrCOSAuthMalformed},
		{name: "sign time plus sign", header: replace("1700000000;1700003600", "+1700000000;1700003600"), wantErr: ErrCOSAuthMalformed},
		{name: "sign time empty end", header: replace("1700000000;1700003600", "1700000000;"), wantErr: ErrCOSAuthMalformed},
		{name: "key time overflow", header: replace("1699990000;1700007200", "1699990000;99999999999999999999"), wantErr: ErrCOSAuthMalformed},
		{name: "signature short", header: replace(sig, sig[:38]), wantErr: ErrCOSAuthMalformed},
		{name: "signature not hex", header: replace(sig, "z"+sig[1:]), wantErr: ErrCOSAuthMalformed},
		{name: "signature upper-case hex", header: replace(sig, strings.ToUpper(sig))},
		{name: "too long", header: valid + "&q-pad=" + strings.Repeat("x", 16<<10), wantErr: ErrCOSAuthMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseCOSAuthorization(tt.header)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("ParseCOSAuthorization: %v, want %v", err, tt.wantErr)
			}
			if err == nil && a == nil {
				t.Fatal("nil COSAuth without error")
			}
		})
	}
}

// TestCOSURLEncode checks the reimplementation against the SDK's exported
// EncodeURIComponent plus the five replacements its safeURLEncode adds.
func TestCOSURLEncode(t *testing.T) {
	sdkSafe := strings.NewReplacer("!", "%21", "'", "%27", "(", "%28", ")", "%29", "*", "%2A")
	inputs := []string{"", "plain", "with space", "a+b", "100%", "视频", "!'()*", "-_.~", "a/b?c#d&e=f;g,h", "\x00\x7f\xff"}
	for c := range 256 {
		inputs = append(inputs, string([]byte{byte(c)}))
	}
	for _, in := range inputs {
		want := sdkSafe.Replace(cos.EncodeURIComponent(in))
		if got := cosURLEncode(in); got != want {
			t.Errorf("cosURLEncode(%q) = %q, want %q", in, got, want)
		}
	}
}

// cosCreds are what the client signs with.
type cosCreds struct {
	id, key, token string
	// authTime, when set, signs with these times through
	// cos.AddAuthorizationHeader instead of AuthorizationTransport's
	// now..now+1h.
	authTime *cos.AuthTime
}

// cosEndpoint is a minimal COS bucket endpoint: it verifies each request,
// records the outcome, and answers just enough for the SDK call to succeed,
// or with a COS error document when verification fails.
type cosEndpoint struct {
	srv       *httptest.Server
	secretKey string

	mu   sync.Mutex
	seen []seenCOSRequest
}

// seenCOSRequest is what the endpoint saw of one request.
type seenCOSRequest struct {
	method, path string
	auth         *COSAuth
	err          error
}

func newCOSEndpoint(t *testing.T, secretKey string) *cosEndpoint {
	t.Helper()
	ep := &cosEndpoint{secretKey: secretKey}
	ep.srv = httptest.NewServer(ep)
	t.Cleanup(ep.srv.Close)
	return ep
}

// client returns an unmodified cos.Client for the example bucket whose
// connections all go to the endpoint. tamper, if set, changes each request
// after the SDK signed it.
func (ep *cosEndpoint) client(t *testing.T, creds cosCreds, tamper func(*http.Request)) *cos.Client {
	t.Helper()
	addr := ep.srv.Listener.Addr().String()
	base := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
	}
	t.Cleanup(base.CloseIdleConnections)

	var next http.RoundTripper = base
	if tamper != nil {
		next = testRoundTripFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			tamper(r)
			return base.RoundTrip(r)
		})
	}
	var rt http.RoundTripper = &cos.AuthorizationTransport{
		SecretID: creds.id, SecretKey: creds.key, SessionToken: creds.token, Transport: next,
	}
	if creds.authTime != nil {
		rt = testRoundTripFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			cos.AddAuthorizationHeader(creds.id, creds.key, creds.token, r, creds.authTime)
			return next.RoundTrip(r)
		})
	}
	u, err := url.Parse(testBucketURL)
	if err != nil {
		t.Fatal(err)
	}
	return cos.NewClient(&cos.BaseURL{BucketURL: u}, &http.Client{Transport: rt})
}

// takeOne returns the one request seen since the last call.
func (ep *cosEndpoint) takeOne(t *testing.T) seenCOSRequest {
	t.Helper()
	ep.mu.Lock()
	defer ep.mu.Unlock()
	seen := ep.seen
	ep.seen = nil
	if len(seen) != 1 {
		t.Fatalf("endpoint saw %d requests, want 1", len(seen))
	}
	return seen[0]
}

func (ep *cosEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, readErr := io.ReadAll(r.Body)
	a, err := ParseCOSAuthorization(r.Header.Get("Authorization"))
	if err == nil {
		err = VerifyCOSRequest(r, a, ep.secretKey, time.Now())
	}
	ep.mu.Lock()
	ep.seen = append(ep.seen, seenCOSRequest{method: r.Method, path: r.URL.Path, auth: a, err: err})
	ep.mu.Unlock()

	w.Header().Set("X-Cos-Request-Id", "vodsim-test")
	switch {
	case readErr != nil:
		http.Error(w, readErr.Error(), http.StatusBadRequest)
		return
	case err != nil:
		writeCOSAuthError(w, err)
		return
	}

	key := strings.TrimPrefix(r.URL.Path, "/")
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		writeTestXML(w, cos.InitiateMultipartUploadResult{Bucket: "examplebucket-1250000000", Key: key, UploadID: testUploadID})
	case r.Method == http.MethodPost:
		writeTestXML(w, cos.CompleteMultipartUploadResult{Bucket: "examplebucket-1250000000", Key: key, ETag: `"etag-complete-1"`})
	case r.Method == http.MethodGet:
		writeTestXML(w, cos.ObjectListPartsResult{Key: key, UploadID: testUploadID, MaxParts: q.Get("max-parts")})
	case r.Method == http.MethodPut:
		// The SDK fails a body upload whose CRC does not come back.
		sum := md5.Sum(body)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
		w.Header().Set("X-Cos-Hash-Crc64ecma", strconv.FormatUint(crc64.Checksum(body, crc64.MakeTable(crc64.ECMA)), 10))
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	}
}

func writeCOSAuthError(w http.ResponseWriter, err error) {
	code := "AccessDenied"
	switch {
	case errors.Is(err, ErrCOSSignatureMismatch):
		code = "SignatureDoesNotMatch"
	case errors.Is(err, ErrCOSTimeTooSkewed):
		code = "RequestTimeTooSkewed"
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusForbidden)
	var msg bytes.Buffer
	xml.EscapeText(&msg, []byte(err.Error()))
	fmt.Fprintf(w, "<Error><Code>%s</Code><Message>%s</Message><RequestId>vodsim-test</RequestId></Error>", code, msg.String())
}

func writeTestXML(w http.ResponseWriter, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Write(b)
}

type testRoundTripFunc func(*http.Request) (*http.Response, error)

func (f testRoundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// rewriteCOSAuth returns a tamper that rewrites the whole Authorization header.
func rewriteCOSAuth(f func(string) string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", f(r.Header.Get("Authorization"))) }
}

// rewriteCOSAuthField returns a tamper that rewrites one field of the
// Authorization header.
func rewriteCOSAuthField(name string, f func(string) string) func(*http.Request) {
	return rewriteCOSAuth(func(a string) string {
		fields := strings.Split(a, "&")
		for i, kv := range fields {
			if k, v, _ := strings.Cut(kv, "="); k == name {
				fields[i] = k + "=" + f(v)
			}
		}
		return strings.Join(fields, "&")
	})
}

func flipHexDigit(c byte) string {
	if c == '0' {
		return "1"
	}
	return "0"
}

func sdkPut(ctx context.Context, c *cos.Client) error {
	_, err := c.Object.Put(ctx, "dir/media file.mp4", strings.NewReader("media"), &cos.ObjectPutOptions{
		ObjectPutHeaderOptions: &cos.ObjectPutHeaderOptions{
			ContentType: "video/mp4",
			XCosMetaXXX: &http.Header{"X-Cos-Meta-Author": {"vodpipe"}},
		},
	})
	return err
}

func sdkHead(ctx context.Context, c *cos.Client) error {
	_, err := c.Object.Head(ctx, "dir/media file.mp4", nil)
	return err
}

func sdkUploadPart(ctx context.Context, c *cos.Client) error {
	_, err := c.Object.UploadPart(ctx, "dir/media file.mp4", testUploadID, 1, strings.NewReader("part one"), nil)
	return err
}

func sdkListParts(ctx context.Context, c *cos.Client) error {
	_, _, err := c.Object.ListParts(ctx, "dir/media file.mp4", testUploadID, &cos.ObjectListPartsOptions{MaxParts: "10", EncodingType: "url"})
	return err
}
