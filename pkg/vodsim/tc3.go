package vodsim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vodpipe/vodpipe/pkg/vod"
)

// Errors of TC3-HMAC-SHA256 verification, matched with errors.Is. Each
// stands for one Cloud API 3.0 error code: AuthFailure.InvalidAuthorization,
// InvalidParameter (a timestamp that is not a number),
// AuthFailure.SignatureExpire, AuthFailure.SecretIdNotFound and
// AuthFailure.SignatureFailure.
var (
	ErrTC3AuthMalformed     = errors.New("vodsim: TC3 Authorization malformed")
	ErrTC3TimestampInvalid  = errors.New("vodsim: X-TC-Timestamp is not a Unix time in seconds")
	ErrTC3SignatureExpired  = errors.New("vodsim: X-TC-Timestamp too far from the server's time")
	ErrTC3SecretIDNotFound  = errors.New("vodsim: SecretId not found")
	ErrTC3SignatureMismatch = errors.New("vodsim: TC3 signature does not match")
)

// TC3Algorithm is the only signing algorithm of Cloud API 3.0 that vodsim
// accepts (the v1 HmacSHA1/HmacSHA256 query signatures are not emulated).
const TC3Algorithm = "TC3-HMAC-SHA256"

// MaxTC3ClockSkew is how far X-TC-Timestamp may be from the server's clock,
// either way, before the request fails with AuthFailure.SignatureExpire.
const MaxTC3ClockSkew = 5 * time.Minute

// maxTC3AuthLen bounds what ParseTC3Authorization splits; the SDK's header
// is about 200 bytes.
const maxTC3AuthLen = 4 << 10

// tc3UnsignedPayload is the X-TC-Content-SHA256 value with which a client
// leaves the body out of the signature; the literal string is hashed instead.
const tc3UnsignedPayload = "UNSIGNED-PAYLOAD"

// TC3Auth is a parsed TC3-HMAC-SHA256 Authorization header:
// `TC3-HMAC-SHA256 Credential=<SecretId>/<Date>/<Service>/tc3_request, SignedHeaders=content-type;host, Signature=<hex>`.
type TC3Auth struct {
	SecretID string
	// Date (YYYY-MM-DD, UTC) and Service form the credential scope.
	Date    string
	Service string
	// SignedHeaders are lower-case header names in ascending order; they
	// always include content-type and host.
	SignedHeaders []string
	// Signature is 64 lower-case hex digits.
	Signature string
}

// Scope is the credential scope, Date/Service/tc3_request.
func (a *TC3Auth) Scope() string { return a.Date + "/" + a.Service + "/tc3_request" }

// ParseTC3Authorization parses a TC3-HMAC-SHA256 Authorization header. It
// checks the form Cloud API requires of any such header (algorithm, a
// four-part credential ending in tc3_request, sorted lower-case signed
// headers that include content-type and host, a 64-digit hex signature), so a
// header that could never verify fails here. Errors wrap ErrTC3AuthMalformed.
func ParseTC3Authorization(h string) (*TC3Auth, error) {
	if h == "" {
		return nil, fmt.Errorf("%w: no Authorization header", ErrTC3AuthMalformed)
	}
	if len(h) > maxTC3AuthLen {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTC3AuthMalformed, len(h), maxTC3AuthLen)
	}
	alg, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if alg != TC3Algorithm {
		return nil, fmt.Errorf("%w: algorithm %q, want %s", ErrTC3AuthMalformed, alg, TC3Algorithm)
	}
	fields := make(map[string]string, 3)
	for kv := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("%w: field %q has no '='", ErrTC3AuthMalformed, strings.TrimSpace(kv))
		}
		if _, dup := fields[k]; dup {
			return nil, fmt.Errorf("%w: field %s repeated", ErrTC3AuthMalformed, k)
		}
		fields[k] = v
	}
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if fields[k] == "" {
			return nil, fmt.Errorf("%w: field %s missing", ErrTC3AuthMalformed, k)
		}
	}

	cred := strings.Split(fields["Credential"], "/")
	if len(cred) != 4 || cred[0] == "" || cred[2] == "" || cred[3] != "tc3_request" {
		return nil, fmt.Errorf("%w: Credential is not SecretId/Date/Service/tc3_request", ErrTC3AuthMalformed)
	}
	if _, err := time.Parse(time.DateOnly, cred[1]); err != nil {
		return nil, fmt.Errorf("%w: Credential date %q is not YYYY-MM-DD", ErrTC3AuthMalformed, cred[1])
	}
	a := &TC3Auth{SecretID: cred[0], Date: cred[1], Service: cred[2], Signature: fields["Signature"]}

	a.SignedHeaders = strings.Split(fields["SignedHeaders"], ";")
	for i, name := range a.SignedHeaders {
		if name == "" || name != strings.ToLower(name) || i > 0 && name <= a.SignedHeaders[i-1] {
			return nil, fmt.Errorf("%w: SignedHeaders %q must be distinct lower-case names in ascending order",
				ErrTC3AuthMalformed, fields["SignedHeaders"])
		}
	}
	if !slices.Contains(a.SignedHeaders, "content-type") || !slices.Contains(a.SignedHeaders, "host") {
		return nil, fmt.Errorf("%w: SignedHeaders must include content-type and host", ErrTC3AuthMalformed)
	}
	if len(a.Signature) != sha256.Size*2 || strings.ToLower(a.Signature) != a.Signature {
		return nil, fmt.Errorf("%w: Signature is not 64 lower-case hex digits", ErrTC3AuthMalformed)
	}
	if _, err := hex.DecodeString(a.Signature); err != nil {
		return nil, fmt.Errorf("%w: Signature is not 64 lower-case hex digits", ErrTC3AuthMalformed)
	}
	return a, nil
}

// TC3Verifier checks TC3-HMAC-SHA256 signed Cloud API 3.0 requests for one
// service, as Tencent Cloud's API gateway does.
type TC3Verifier struct {
	// Service is the service name the credential scope must carry ("vod").
	Service string
	// Keys maps SecretId to SecretKey.
	Keys vod.SecretKeys
	// Now returns the server's time; time.Now when nil.
	Now func() time.Time
}

// Verify checks r, whose body the caller has read into body, and returns the
// parsed Authorization. The checks run in this order, so a request gets the
// first error that applies: the header's form (ErrTC3AuthMalformed), the
// timestamp (ErrTC3TimestampInvalid; more than MaxTC3ClockSkew from Now
// either way is ErrTC3SignatureExpired), the SecretId
// (ErrTC3SecretIDNotFound), then the signature (ErrTC3SignatureMismatch),
// which also covers a scope whose service or date disagrees with the service
// and the timestamp's UTC date.
//
// The canonical request is the one Tencent Cloud documents for POST:
//
//	POST\n/\n\n<name>:<value>\n… (each signed header, lower-cased and trimmed)\n<SignedHeaders>\n<hex sha256(body)>
//
// with host taken from r.Host, because Go's server moves it out of r.Header.
// A client that sends X-TC-Content-SHA256: UNSIGNED-PAYLOAD signs the hash of
// that literal string instead of the body, as the SDK's UnsignedPayload
// option does.
func (v TC3Verifier) Verify(r *http.Request, body []byte) (*TC3Auth, error) {
	a, err := ParseTC3Authorization(r.Header.Get("Authorization"))
	if err != nil {
		return nil, err
	}
	timestamp := r.Header.Get("X-TC-Timestamp")
	sec, err := parseTC3Timestamp(timestamp)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	if skew := now.Sub(time.Unix(sec, 0)).Abs(); skew > MaxTC3ClockSkew {
		return nil, fmt.Errorf("%w: X-TC-Timestamp %s is %s from the server's time %d, more than %s",
			ErrTC3SignatureExpired, timestamp, skew.Truncate(time.Second), now.Unix(), MaxTC3ClockSkew)
	}
	key, ok := v.Keys.SecretKey(a.SecretID)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrTC3SecretIDNotFound, a.SecretID)
	}
	if a.Service != v.Service {
		return nil, fmt.Errorf("%w: credential scope names service %q, this endpoint is %q",
			ErrTC3SignatureMismatch, a.Service, v.Service)
	}
	if date := time.Unix(sec, 0).UTC().Format(time.DateOnly); a.Date != date {
		return nil, fmt.Errorf("%w: credential scope date %s is not the UTC date %s of X-TC-Timestamp",
			ErrTC3SignatureMismatch, a.Date, date)
	}
	canonical, err := tc3CanonicalRequest(r, a.SignedHeaders, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTC3SignatureMismatch, err)
	}
	want := tc3Signature(key, a.Date, a.Service, tc3StringToSign(timestamp, a.Scope(), canonical))
	if !hmac.Equal([]byte(want), []byte(a.Signature)) {
		return nil, ErrTC3SignatureMismatch
	}
	return a, nil
}

// parseTC3Timestamp accepts only decimal digits, as Cloud API's Timestamp
// is an unsigned integer.
func parseTC3Timestamp(s string) (int64, error) {
	if s == "" || len(s) > 12 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w: %q", ErrTC3TimestampInvalid, s)
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrTC3TimestampInvalid, s)
	}
	return sec, nil
}

func tc3CanonicalRequest(r *http.Request, signed []string, body []byte) (string, error) {
	var b strings.Builder
	b.WriteString(r.Method + "\n/\n\n")
	for _, name := range signed {
		var value string
		if name == "host" {
			value = r.Host
		} else {
			values := r.Header.Values(name)
			if len(values) == 0 {
				return "", fmt.Errorf("signed header %s is absent from the request", name)
			}
			value = strings.Join(values, ",")
		}
		b.WriteString(name + ":" + strings.ToLower(strings.TrimSpace(value)) + "\n")
	}
	b.WriteString("\n" + strings.Join(signed, ";") + "\n")
	payload := body
	if r.Header.Get("X-TC-Content-SHA256") == tc3UnsignedPayload {
		payload = []byte(tc3UnsignedPayload)
	}
	b.WriteString(sha256Hex(payload))
	return b.String(), nil
}

func tc3StringToSign(timestamp, scope, canonicalRequest string) string {
	return TC3Algorithm + "\n" + timestamp + "\n" + scope + "\n" + sha256Hex([]byte(canonicalRequest))
}

// tc3Signature derives the signing key TC3<SecretKey> → date → service →
// "tc3_request" and signs stringToSign with it.
func tc3Signature(secretKey, date, service, stringToSign string) string {
	k := tc3HMAC([]byte("TC3"+secretKey), date)
	k = tc3HMAC(k, service)
	k = tc3HMAC(k, "tc3_request")
	return hex.EncodeToString(tc3HMAC(k, stringToSign))
}

func tc3HMAC(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
