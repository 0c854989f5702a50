package vod

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of the upload signature, from VOD's documentation of the client-upload
// signature. They live here, in one place, so a corrected limit is a one-line change.
const (
	// MaxSignatureLifetime is the longest expireTime − currentTimeStamp VOD accepts (90 days).
	MaxSignatureLifetime = 90 * 24 * time.Hour
	// DefaultClockSkew is how far in the future currentTimeStamp may be (assumed: 300 s).
	DefaultClockSkew = 300 * time.Second
	// MaxSourceContextLen is the longest sourceContext, in characters (assumed from the docs).
	MaxSourceContextLen = 250
	// MaxSessionContextLen is the longest sessionContext, in characters.
	MaxSessionContextLen = 1000
	// MaxProcedureLen is the longest task-flow name.
	MaxProcedureLen = 40
	// MaxSignatureLen bounds what a verifier decodes, so a huge header cannot cost memory.
	MaxSignatureLen = 8192
	macLen          = sha1.Size
)

// Task-flow notify modes a signature may carry.
const (
	NotifyModeFinish = "Finish"
	NotifyModeChange = "Change"
	NotifyModeNone   = "None"
)

var (
	regionPattern   = regexp.MustCompile(`^[a-z]{2,}(-[a-z]+)+(-[0-9]+)?$`)
	procedurePatten = regexp.MustCompile(`^[A-Za-z0-9_\-.]+$`)
)

// SignatureParams are the parameters an upload signature carries: the four
// required ones and the optional upload policy.
type SignatureParams struct {
	SecretID         string
	CurrentTimeStamp int64
	ExpireTime       int64
	Random           uint32

	// Policy. Zero values are omitted from the signature.
	Procedure      string
	StorageRegion  string
	ClassID        int64
	SourceContext  string
	OneTimeValid   bool
	VodSubAppID    uint64
	SessionContext string
	// TaskPriority is meaningful only when HasTaskPriority is set (0 is a valid priority).
	TaskPriority    int
	HasTaskPriority bool
	TaskNotifyMode  string

	// Extra holds parameters this package does not know; decoded signatures keep
	// them so that operators see everything a signature says.
	Extra url.Values
}

// Signature is a decoded upload signature.
type Signature struct {
	Params SignatureParams
	// Original is the signed query string, byte for byte as received.
	Original string
	mac      []byte
}

// Lifetime is expireTime − currentTimeStamp.
func (p SignatureParams) Lifetime() time.Duration {
	return time.Duration(p.ExpireTime-p.CurrentTimeStamp) * time.Second
}

// Validate checks every field against VOD's limits and returns all violations
// joined, each a *FieldError naming the parameter.
func (p SignatureParams) Validate() error {
	var errs []error
	bad := func(field, reason string, sentinel error) {
		errs = append(errs, &FieldError{Field: field, Reason: reason, Err: sentinel})
	}
	if p.SecretID == "" {
		bad("secretId", "is required", ErrSignatureMalformed)
	}
	if p.CurrentTimeStamp <= 0 {
		bad("currentTimeStamp", "must be a positive Unix time", ErrSignatureMalformed)
	}
	if p.ExpireTime <= p.CurrentTimeStamp {
		bad("expireTime", "must be after currentTimeStamp", ErrSignatureMalformed)
	} else if p.Lifetime() > MaxSignatureLifetime {
		bad("expireTime", fmt.Sprintf("lifetime %s exceeds the maximum of %s", p.Lifetime(), MaxSignatureLifetime), ErrSignatureTooLongLived)
	}
	if n := utf8.RuneCountInString(p.SourceContext); n > MaxSourceContextLen {
		bad("sourceContext", fmt.Sprintf("is %d characters, at most %d allowed", n, MaxSourceContextLen), ErrSignatureFieldInvalid)
	}
	if n := utf8.RuneCountInString(p.SessionContext); n > MaxSessionContextLen {
		bad("sessionContext", fmt.Sprintf("is %d characters, at most %d allowed", n, MaxSessionContextLen), ErrSignatureFieldInvalid)
	}
	if p.Procedure != "" && (len(p.Procedure) > MaxProcedureLen || !procedurePatten.MatchString(p.Procedure)) {
		bad("procedure", fmt.Sprintf("must be 1..%d letters, digits, '_', '-' or '.'", MaxProcedureLen), ErrSignatureFieldInvalid)
	}
	if p.StorageRegion != "" && !regionPattern.MatchString(p.StorageRegion) {
		bad("storageRegion", "must look like ap-guangzhou", ErrSignatureFieldInvalid)
	}
	if p.ClassID < 0 {
		bad("classId", "must not be negative", ErrSignatureFieldInvalid)
	}
	if p.HasTaskPriority && (p.TaskPriority < -10 || p.TaskPriority > 10) {
		bad("taskPriority", "must be between -10 and 10", ErrSignatureFieldInvalid)
	}
	switch p.TaskNotifyMode {
	case "", NotifyModeFinish, NotifyModeChange, NotifyModeNone:
	default:
		bad("taskNotifyMode", "must be Finish, Change or None", ErrSignatureFieldInvalid)
	}
	return errors.Join(errs...)
}

// Encode returns the query string that is signed: required parameters first,
// then the policy, each value form-encoded.
func (p SignatureParams) Encode() string {
	var b strings.Builder
	add := func(k, v string) {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(k))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(v))
	}
	add("secretId", p.SecretID)
	add("currentTimeStamp", strconv.FormatInt(p.CurrentTimeStamp, 10))
	add("expireTime", strconv.FormatInt(p.ExpireTime, 10))
	add("random", strconv.FormatUint(uint64(p.Random), 10))
	if p.Procedure != "" {
		add("procedure", p.Procedure)
	}
	if p.StorageRegion != "" {
		add("storageRegion", p.StorageRegion)
	}
	if p.ClassID != 0 {
		add("classId", strconv.FormatInt(p.ClassID, 10))
	}
	if p.SourceContext != "" {
		add("sourceContext", p.SourceContext)
	}
	if p.OneTimeValid {
		add("oneTimeValid", "1")
	}
	if p.VodSubAppID != 0 {
		add("vodSubAppId", strconv.FormatUint(p.VodSubAppID, 10))
	}
	if p.SessionContext != "" {
		add("sessionContext", p.SessionContext)
	}
	if p.HasTaskPriority {
		add("taskPriority", strconv.Itoa(p.TaskPriority))
	}
	if p.TaskNotifyMode != "" {
		add("taskNotifyMode", p.TaskNotifyMode)
	}
	if len(p.Extra) > 0 {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.Extra.Encode())
	}
	return b.String()
}

// Sign validates p and returns base64(HMAC-SHA1(secretKey, original) ++ original).
func Sign(secretKey string, p SignatureParams) (string, error) {
	if secretKey == "" {
		return "", fmt.Errorf("sign: %w", ErrMissingSecretKey)
	}
	if err := p.Validate(); err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	original := p.Encode()
	return base64.StdEncoding.EncodeToString(append(hmacSHA1(secretKey, original), original...)), nil
}

// NewRandom returns a random value for the signature's random parameter.
func NewRandom() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	return binary.BigEndian.Uint32(b[:])
}

// ParseSignature decodes a signature without checking its HMAC or times. It
// fails with ErrSignatureMalformed for anything that is not a well-formed signature.
func ParseSignature(sig string) (*Signature, error) {
	if sig == "" {
		return nil, fmt.Errorf("%w: empty", ErrSignatureMalformed)
	}
	if len(sig) > MaxSignatureLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrSignatureMalformed, MaxSignatureLen)
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64", ErrSignatureMalformed)
	}
	if len(raw) <= macLen {
		return nil, fmt.Errorf("%w: too short", ErrSignatureMalformed)
	}
	original := string(raw[macLen:])
	if !utf8.ValidString(original) {
		return nil, fmt.Errorf("%w: parameters are not UTF-8", ErrSignatureMalformed)
	}
	values, err := url.ParseQuery(original)
	if err != nil {
		return nil, fmt.Errorf("%w: parameters are not a query string", ErrSignatureMalformed)
	}
	p, err := paramsFromValues(values)
	if err != nil {
		return nil, err
	}
	return &Signature{Params: p, Original: original, mac: raw[:macLen]}, nil
}

func paramsFromValues(values url.Values) (SignatureParams, error) {
	var p SignatureParams
	var errs []error
	bad := func(field, reason string) {
		errs = append(errs, &FieldError{Field: field, Reason: reason, Err: ErrSignatureMalformed})
	}
	one := func(k string) (string, bool) {
		vs, ok := values[k]
		if !ok {
			return "", false
		}
		delete(values, k)
		if len(vs) != 1 {
			bad(k, "appears more than once")
			return "", false
		}
		return vs[0], true
	}
	intField := func(k string, bits int, required bool) int64 {
		v, ok := one(k)
		if !ok {
			if required {
				bad(k, "is required")
			}
			return 0
		}
		n, err := strconv.ParseInt(v, 10, bits)
		if err != nil {
			bad(k, "is not an integer")
		}
		return n
	}
	var ok bool
	if p.SecretID, ok = one("secretId"); !ok || p.SecretID == "" {
		bad("secretId", "is required")
	}
	p.CurrentTimeStamp = intField("currentTimeStamp", 64, true)
	p.ExpireTime = intField("expireTime", 64, true)
	if v, ok := one("random"); !ok {
		bad("random", "is required")
	} else if n, err := strconv.ParseUint(v, 10, 32); err != nil {
		bad("random", "must be an unsigned 32-bit integer")
	} else {
		p.Random = uint32(n)
	}
	p.Procedure, _ = one("procedure")
	p.StorageRegion, _ = one("storageRegion")
	p.ClassID = intField("classId", 64, false)
	p.SourceContext, _ = one("sourceContext")
	if v, ok := one("oneTimeValid"); ok {
		switch v {
		case "0":
		case "1":
			p.OneTimeValid = true
		default:
			bad("oneTimeValid", "must be 0 or 1")
		}
	}
	if v, ok := one("vodSubAppId"); ok {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			bad("vodSubAppId", "must be an unsigned integer")
		}
		p.VodSubAppID = n
	}
	p.SessionContext, _ = one("sessionContext")
	if _, present := values["taskPriority"]; present {
		p.HasTaskPriority = true
		p.TaskPriority = int(intField("taskPriority", 32, false))
	}
	p.TaskNotifyMode, _ = one("taskNotifyMode")
	if len(values) > 0 {
		p.Extra = values
	}
	return p, errors.Join(errs...)
}

// SecretKeys looks up the SecretKey of a SecretId.
type SecretKeys interface {
	SecretKey(secretID string) (string, bool)
}

// StaticKeys is a SecretKeys backed by a map of SecretId to SecretKey.
type StaticKeys map[string]string

// SecretKey implements SecretKeys.
func (k StaticKeys) SecretKey(id string) (string, bool) {
	v, ok := k[id]
	return v, ok
}

// Verifier checks upload signatures as VOD does.
type Verifier struct {
	Keys SecretKeys
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
	// ClockSkew is how far in the future currentTimeStamp may be; DefaultClockSkew when zero.
	ClockSkew time.Duration
}

// Verify decodes sig, checks its HMAC with the SecretKey of its secretId, its
// times and its field limits. Each failure wraps its own sentinel:
// ErrSignatureMalformed, ErrUnknownSecretID, ErrSignatureInvalid,
// ErrSignatureExpired, ErrSignatureTooLongLived, ErrSignatureNotYetValid,
// ErrSignatureFieldInvalid.
func (v Verifier) Verify(sig string) (*Signature, error) {
	s, err := ParseSignature(sig)
	if err != nil {
		return nil, err
	}
	key, ok := v.Keys.SecretKey(s.Params.SecretID)
	if !ok {
		return s, fmt.Errorf("%w: secretId not known", ErrUnknownSecretID)
	}
	if !s.CheckMAC(key) {
		return s, ErrSignatureInvalid
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	return s, s.CheckTimes(now, v.ClockSkew)
}

// CheckMAC reports whether the signature's HMAC matches secretKey, compared in constant time.
func (s *Signature) CheckMAC(secretKey string) bool {
	return subtle.ConstantTimeCompare(hmacSHA1(secretKey, s.Original), s.mac) == 1
}

// CheckTimes checks expiry, maximum lifetime, clock skew and field limits at now.
func (s *Signature) CheckTimes(now time.Time, skew time.Duration) error {
	if skew == 0 {
		skew = DefaultClockSkew
	}
	p := s.Params
	if p.ExpireTime <= now.Unix() {
		return fmt.Errorf("%w: expired at %s", ErrSignatureExpired, time.Unix(p.ExpireTime, 0).UTC().Format(time.RFC3339))
	}
	if p.CurrentTimeStamp > now.Add(skew).Unix() {
		return fmt.Errorf("%w: currentTimeStamp is %s in the future", ErrSignatureNotYetValid, time.Unix(p.CurrentTimeStamp, 0).Sub(now).Round(time.Second))
	}
	return p.Validate()
}

// Expired reports whether the signature has expired at now.
func (s *Signature) Expired(now time.Time) bool {
	return s.Params.ExpireTime <= now.Unix()
}

func hmacSHA1(key, msg string) []byte {
	m := hmac.New(sha1.New, []byte(key))
	m.Write([]byte(msg))
	return m.Sum(nil)
}
