package vodsim

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Errors of COS request authentication, matched with errors.Is. They stand
// for COS's 403 answers AccessDenied (malformed or expired),
// SignatureDoesNotMatch and RequestTimeTooSkewed.
var (
	ErrCOSAuthMalformed     = errors.New("vodsim: COS Authorization malformed")
	ErrCOSSignatureMismatch = errors.New("vodsim: COS signature does not match")
	ErrCOSRequestExpired    = errors.New("vodsim: COS request outside its signed time")
	ErrCOSTimeTooSkewed     = errors.New("vodsim: COS request time too far in the future")
)

// MaxCOSClockSkew is how far in the future a q-sign-time or q-key-time start
// may be before the request fails with ErrCOSTimeTooSkewed rather than
// ErrCOSRequestExpired, COS's RequestTimeTooSkewed window.
const MaxCOSClockSkew = 15 * time.Minute

// maxCOSAuthLen bounds what ParseCOSAuthorization splits, so a huge header
// cannot cost memory. The SDK's header stays well under it even with many
// x-cos-meta-* headers signed.
const maxCOSAuthLen = 16 << 10

// COSAuth is the parsed q-sign Authorization header.
type COSAuth struct {
	Algorithm, AccessKey string
	// SignStart..SignEnd and KeyStart..KeyEnd are the windows of q-sign-time
	// and q-key-time, whose raw text is SignTime and KeyTime.
	SignStart, SignEnd, KeyStart, KeyEnd time.Time
	SignTime, KeyTime                    string
	// HeaderList and ParamList are q-header-list and q-url-param-list as
	// sent: lower-cased, URL-encoded names, sorted, with a name repeated once
	// per value the SDK signed.
	HeaderList, ParamList []string
	Signature             string
}

// ParseCOSAuthorization parses a COS Authorization header of the form
// q-sign-algorithm=sha1&q-ak=…&q-sign-time=s;e&q-key-time=s;e&q-header-list=…&q-url-param-list=…&q-signature=….
// Each of the seven fields must appear exactly once; unknown fields are
// ignored so a client that sends more still parses. It also enforces what COS requires of
// any signature (sha1, host signed), so a request that can never verify fails
// here. Errors wrap ErrCOSAuthMalformed.
func ParseCOSAuthorization(h string) (*COSAuth, error) {
	if len(h) > maxCOSAuthLen {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrCOSAuthMalformed, len(h), maxCOSAuthLen)
	}
	fields := make(map[string]string, 7)
	for kv := range strings.SplitSeq(h, "&") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%w: field %q has no '='", ErrCOSAuthMalformed, kv)
		}
		if _, dup := fields[k]; dup {
			return nil, fmt.Errorf("%w: field %s repeated", ErrCOSAuthMalformed, k)
		}
		fields[k] = v
	}
	for _, k := range []string{"q-sign-algorithm", "q-ak", "q-sign-time", "q-key-time", "q-header-list", "q-url-param-list", "q-signature"} {
		if _, ok := fields[k]; !ok {
			return nil, fmt.Errorf("%w: field %s missing", ErrCOSAuthMalformed, k)
		}
	}

	a := &COSAuth{
		Algorithm: fields["q-sign-algorithm"],
		AccessKey: fields["q-ak"],
		SignTime:  fields["q-sign-time"],
		KeyTime:   fields["q-key-time"],
		Signature: fields["q-signature"],
	}
	var err error
	if a.SignStart, a.SignEnd, err = parseCOSTimeRange(a.SignTime); err != nil {
		return nil, fmt.Errorf("%w: q-sign-time: %v", ErrCOSAuthMalformed, err)
	}
	if a.KeyStart, a.KeyEnd, err = parseCOSTimeRange(a.KeyTime); err != nil {
		return nil, fmt.Errorf("%w: q-key-time: %v", ErrCOSAuthMalformed, err)
	}
	if a.HeaderList, err = parseCOSNameList(fields["q-header-list"]); err != nil {
		return nil, fmt.Errorf("%w: q-header-list: %v", ErrCOSAuthMalformed, err)
	}
	if a.ParamList, err = parseCOSNameList(fields["q-url-param-list"]); err != nil {
		return nil, fmt.Errorf("%w: q-url-param-list: %v", ErrCOSAuthMalformed, err)
	}
	if err := a.validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// VerifyCOSRequest checks that a, parsed from r's Authorization header, is a
// signature of r as a server received it made with secretKey (the key of
// a.AccessKey, which the caller looks up), and that now lies within both
// signed windows.
//
// Only the headers named in q-header-list and the parameters named in
// q-url-param-list are covered; others may change freely, as at COS. The
// host comes from r.Host because Go's server moves it out of r.Header, the
// path is the decoded r.URL.Path the SDK signs, and the query is parsed from
// r.URL.RawQuery. A named header or parameter that is absent is a mismatch.
//
// The signature is checked before the times, so a time error is only ever
// reported to a holder of the key (q-key-time is part of the signing key;
// q-sign-time, as the SDK signs, is covered by nothing). Times have
// whole-second precision and both ends are inclusive. A start within
// MaxCOSClockSkew in the future is ErrCOSRequestExpired (not yet valid; no
// skew is forgiven), further ahead ErrCOSTimeTooSkewed.
func VerifyCOSRequest(r *http.Request, a *COSAuth, secretKey string, now time.Time) error {
	if a == nil {
		return fmt.Errorf("%w: no authorization", ErrCOSAuthMalformed)
	}
	if err := a.validate(); err != nil {
		return err
	}
	got, _ := hex.DecodeString(a.Signature) // validate checked it
	formatString, err := cosFormatString(r, a)
	if err != nil {
		return err
	}
	// StringToSign carries q-key-time because that is what the SDK hashes.
	// Its AuthorizationTransport sends the same value as q-sign-time, so only
	// a caller-made cos.AuthTime with different windows tells the two apart.
	sum := sha1.Sum([]byte(formatString))
	stringToSign := "sha1\n" + a.KeyTime + "\n" + hex.EncodeToString(sum[:]) + "\n"
	signKey := hex.EncodeToString(cosHMACSHA1([]byte(secretKey), a.KeyTime))
	if want := cosHMACSHA1([]byte(signKey), stringToSign); !hmac.Equal(got, want) {
		return ErrCOSSignatureMismatch
	}

	sec := now.Unix()
	for _, w := range []struct {
		name       string
		start, end time.Time
	}{
		{"q-sign-time", a.SignStart, a.SignEnd},
		{"q-key-time", a.KeyStart, a.KeyEnd},
	} {
		switch {
		case w.start.Unix()-sec > int64(MaxCOSClockSkew/time.Second):
			return fmt.Errorf("%w: %s starts %ds after now", ErrCOSTimeTooSkewed, w.name, w.start.Unix()-sec)
		case sec < w.start.Unix():
			return fmt.Errorf("%w: %s starts %ds after now", ErrCOSRequestExpired, w.name, w.start.Unix()-sec)
		case sec > w.end.Unix():
			return fmt.Errorf("%w: %s ended %ds before now", ErrCOSRequestExpired, w.name, sec-w.end.Unix())
		}
	}
	return nil
}

// validate checks what COS requires of any signature. VerifyCOSRequest
// repeats it because a COSAuth need not come from ParseCOSAuthorization.
func (a *COSAuth) validate() error {
	if a.Algorithm != "sha1" {
		return fmt.Errorf("%w: q-sign-algorithm %q, only sha1 is supported", ErrCOSAuthMalformed, a.Algorithm)
	}
	if a.AccessKey == "" {
		return fmt.Errorf("%w: q-ak empty", ErrCOSAuthMalformed)
	}
	// host need not be signed: COS accepts unsigned hosts, and the official web
	// upload SDK (vod-js-sdk-v6 with cos-js-sdk-v5, ForceSignHost:false) never
	// signs it. When it is in q-header-list it is verified like any header.
	if sig, err := hex.DecodeString(a.Signature); err != nil || len(sig) != sha1.Size {
		return fmt.Errorf("%w: q-signature is not %d hex-encoded bytes", ErrCOSAuthMalformed, sha1.Size)
	}
	return nil
}

// cosFormatString builds FormatString = method\npath\nparams\nheaders\n over
// the parameters and headers a names, or reports which one r lacks.
func cosFormatString(r *http.Request, a *COSAuth) (string, error) {
	// url.ParseQuery keeps the pairs it can parse and drops the rest, as the
	// SDK's req.URL.Query() does when it signs, so the error is not fatal.
	query, _ := url.ParseQuery(r.URL.RawQuery)
	params, err := cosNamedPairs(query, a.ParamList, "parameter", "q-url-param-list")
	if err != nil {
		return "", err
	}

	// Go's server takes Host and Transfer-Encoding out of r.Header; put them
	// back as the client had them when it signed. A Host left in r.Header (a
	// hand-built request) is dropped so the host is not signed twice.
	headers := make(map[string][]string, len(r.Header)+2)
	for k, vs := range r.Header {
		if !strings.EqualFold(k, "host") {
			headers[k] = vs
		}
	}
	headers["Host"] = []string{r.Host}
	if _, ok := headers["Transfer-Encoding"]; !ok && len(r.TransferEncoding) > 0 {
		headers["Transfer-Encoding"] = r.TransferEncoding
	}
	hdrs, err := cosNamedPairs(headers, a.HeaderList, "header", "q-header-list")
	if err != nil {
		return "", err
	}

	return strings.ToLower(r.Method) + "\n" + r.URL.Path + "\n" + params.encode() + "\n" + hdrs.encode() + "\n", nil
}

// cosSignPairs maps a lower-cased, URL-encoded name to its raw values, the form
// the SDK's valuesSignMap signs.
type cosSignPairs map[string][]string

// cosNamedPairs keeps the entries of src whose signed name is in names and
// fails if a name has no entry.
func cosNamedPairs(src map[string][]string, names []string, what, list string) (cosSignPairs, error) {
	named := make(map[string]bool, len(names))
	for _, n := range names {
		named[n] = true
	}
	p := make(cosSignPairs, len(named))
	for k, vs := range src {
		// Names are matched in their signed form, not decoded, because the
		// SDK lower-cases after encoding ("a*" becomes "a%2a").
		if sk := cosSignName(k); named[sk] {
			p[sk] = append(p[sk], vs...)
		}
	}
	for _, n := range names {
		if _, ok := p[n]; !ok {
			return nil, fmt.Errorf("%w: %s %q in %s is not on the request", ErrCOSSignatureMismatch, what, n, list)
		}
	}
	return p, nil
}

// encode joins the pairs as k=v&… sorted by name, then by raw value: the SDK
// sorts values before encoding them, and the two orders differ ("a/" sorts
// after "a-" raw but before it encoded as "a%2F").
func (p cosSignPairs) encode() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(p)) {
		vs := slices.Clone(p[k])
		slices.Sort(vs)
		for _, v := range vs {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(cosURLEncode(v))
		}
	}
	return b.String()
}

// cosSignName is the name under which the SDK signs a header or parameter.
func cosSignName(name string) string {
	return strings.ToLower(cosURLEncode(name))
}

// cosURLEncode percent-encodes every byte outside RFC 3986's unreserved set
// (A-Z a-z 0-9 - _ . ~) as %XX with upper-case hex. That is what the SDK's
// safeURLEncode produces: encodeURIComponent, which spares ! ' ( ) *, and
// then those five encoded as well.
func cosURLEncode(s string) string {
	const hexDigits = "0123456789ABCDEF"
	escapes := 0
	for i := 0; i < len(s); i++ {
		if !cosUnreserved(s[i]) {
			escapes++
		}
	}
	if escapes == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*escapes)
	for i := 0; i < len(s); i++ {
		if c := s[i]; cosUnreserved(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&0xF])
		}
	}
	return string(b)
}

func cosUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}

// parseCOSTimeRange parses "start;end" in Unix seconds, start <= end.
func parseCOSTimeRange(s string) (start, end time.Time, err error) {
	a, b, ok := strings.Cut(s, ";")
	if !ok {
		return time.Time{}, time.Time{}, fmt.Errorf("%q is not start;end", s)
	}
	sa, err := parseCOSUnixSeconds(a)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	sb, err := parseCOSUnixSeconds(b)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	if sa > sb {
		return time.Time{}, time.Time{}, fmt.Errorf("%q ends before it starts", s)
	}
	return time.Unix(sa, 0), time.Unix(sb, 0), nil
}

func parseCOSUnixSeconds(s string) (int64, error) {
	// ParseInt alone would accept "+5" and "-5", neither of which the SDK writes.
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not Unix seconds", s)
	}
	return strconv.ParseInt(s, 10, 64)
}

// parseCOSNameList splits a ';'-separated list of signed names. A name must
// be in the form the SDK signs, lower-case letters, digits, "-_.~" and %xx
// escapes with lower-case hex: any other could never match a name on the
// request.
func parseCOSNameList(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	names := strings.Split(s, ";")
	for _, n := range names {
		if !isCOSSignName(n) {
			return nil, fmt.Errorf("name %q is not lower-case and URL-encoded", n)
		}
	}
	return names, nil
}

func isCOSSignName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		switch c := n[i]; {
		case c == '%':
			if i+2 >= len(n) || !isCOSLowerHex(n[i+1]) || !isCOSLowerHex(n[i+2]) {
				return false
			}
			i += 2
		case 'A' <= c && c <= 'Z', !cosUnreserved(c):
			return false
		}
	}
	return true
}

func isCOSLowerHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f'
}

func cosHMACSHA1(key []byte, msg string) []byte {
	m := hmac.New(sha1.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
