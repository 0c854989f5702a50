package ingest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// UploadTokenConfig configures the upload tokens an application's backend
// mints for its end users (POST /v1/upload-tokens): each fixes the policy of
// every signature its holder may get.
type UploadTokenConfig struct {
	// UploadTokenKeys sign and verify tokens: the first signs, every one
	// verifies, so a key is rotated by putting the new one first.
	UploadTokenKeys     []string `envconfig:"UPLOAD_TOKEN_KEYS" desc:"keys that sign upload tokens, comma-separated, each at least 32 characters: the first signs, all verify (prefer UPLOAD_TOKEN_KEYS_FILE); empty: upload tokens are off"`
	UploadTokenKeysFile string   `envconfig:"UPLOAD_TOKEN_KEYS_FILE" desc:"file holding the upload-token keys, one per line or comma-separated, e.g. a mounted Kubernetes secret"`
	// UploadTokenMaxTTL bounds a token's lifetime.
	UploadTokenMaxTTL time.Duration `envconfig:"UPLOAD_TOKEN_MAX_TTL" default:"1h" desc:"longest lifetime of an upload token"`
	// UploadTokenSignRate and UploadTokenSignBurst limit the signatures of one token.
	UploadTokenSignRate  float64 `envconfig:"UPLOAD_TOKEN_SIGN_RATE" default:"1" desc:"signatures per second per upload token"`
	UploadTokenSignBurst int     `envconfig:"UPLOAD_TOKEN_SIGN_BURST" default:"10" desc:"burst of signatures per upload token"`
	// UploadTokenMaxStreams bounds the upload page's event streams of one
	// end user, so that no one takes every stream VODPIPE_SSE_MAX_STREAMS allows.
	UploadTokenMaxStreams int `envconfig:"UPLOAD_TOKEN_MAX_STREAMS" default:"4" desc:"upload page event streams one end user (a token's user) may have open at once; more are answered 429"`
}

// minTokenKey is the shortest upload-token key accepted.
const minTokenKey = 32

// defaultTokenTTL is a token's lifetime when the request names none.
const defaultTokenTTL = 30 * time.Minute

// tokenPrefix starts every upload token (and names its format's version).
const tokenPrefix = "ut1."

// userPattern is what an end user's name may be.
var userPattern = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)

// keys returns the configured keys, the signing one first, or none.
func (c UploadTokenConfig) keys() ([][]byte, error) {
	entries, from, err := config.KeyList("UPLOAD_TOKEN_KEYS", c.UploadTokenKeys, c.UploadTokenKeysFile)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for i, e := range entries {
		if len(e) < minTokenKey {
			return nil, fmt.Errorf("ingest: %s: key %d is shorter than %d characters", from, i+1, minTokenKey)
		}
		out = append(out, []byte(e))
	}
	return out, nil
}

// uploadClaims are what a token carries, signed.
type uploadClaims struct {
	ID       string `json:"jti"`
	User     string `json:"sub"`
	Issuer   string `json:"iss"` // the API key that minted it
	Expires  int64  `json:"exp"`
	Validity int64  `json:"val"` // seconds of each signature
	OneTime  bool   `json:"one"`
	Policy   struct {
		Procedure      string `json:"p,omitempty"`
		StorageRegion  string `json:"r,omitempty"`
		ClassID        int64  `json:"c,omitempty"`
		SubAppID       uint64 `json:"a,omitempty"`
		SourceContext  string `json:"s,omitempty"`
		SessionContext string `json:"x,omitempty"`
	} `json:"pol"`
}

// request is the signature request the token allows.
func (c *uploadClaims) request() signer.Request {
	return signer.Request{Procedure: c.Policy.Procedure, StorageRegion: c.Policy.StorageRegion, ClassID: c.Policy.ClassID,
		SubAppID: c.Policy.SubAppID, SourceContext: c.Policy.SourceContext, SessionContext: c.Policy.SessionContext,
		OneTime: c.OneTime, Validity: time.Duration(c.Validity) * time.Second}
}

var errUploadToken = errors.New("upload token invalid or expired")

// issue signs claims with the first key.
func (s *Service) issueUploadToken(c *uploadClaims) (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	payload := tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(tokenMAC(s.tokenKeys[0], payload)), nil
}

func tokenMAC(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// verifyUploadToken checks a token's MAC under every key and its expiry.
func (s *Service) verifyUploadToken(tok string, now time.Time) (*uploadClaims, error) {
	i := strings.LastIndexByte(tok, '.')
	if !strings.HasPrefix(tok, tokenPrefix) || i <= len(tokenPrefix) || len(s.tokenKeys) == 0 {
		return nil, errUploadToken
	}
	payload := tok[:i]
	mac, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		return nil, errUploadToken
	}
	valid := false
	for _, k := range s.tokenKeys {
		valid = hmac.Equal(mac, tokenMAC(k, payload)) || valid
	}
	if !valid {
		return nil, errUploadToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload[len(tokenPrefix):])
	if err != nil {
		return nil, errUploadToken
	}
	var c uploadClaims
	if err := json.Unmarshal(raw, &c); err != nil || now.Unix() >= c.Expires || c.ID == "" {
		return nil, errUploadToken
	}
	return &c, nil
}

// createUploadToken mints a token for one end user of the application whose
// backend calls it (sign scope). The policy is checked now, so a token that
// is handed out can be used.
func (s *Service) createUploadToken(w http.ResponseWriter, r *http.Request) {
	if len(s.tokenKeys) == 0 {
		httpapi.Refuse(w, http.StatusNotImplemented, httpapi.CodeUploadTokensOff, "upload tokens are off: set VODPIPE_UPLOAD_TOKEN_KEYS (or _FILE)", nil)
		return
	}
	var req client.UploadTokenRequest
	if !s.decode(w, r, &req) {
		return
	}
	resp, bad, err := s.MintUploadToken(keyFrom(r).Name, req)
	switch {
	case len(bad) > 0:
		httpapi.Refuse(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, "the upload-token request is not valid", bad)
	case errors.Is(err, errTokenNotMade):
		httpapi.Refuse(w, http.StatusInternalServerError, httpapi.CodeInternal, "the token could not be made", nil)
	case err != nil:
		s.writeSignError(w, err)
	default:
		w.Header().Set("Cache-Control", "no-store")
		httpapi.WriteJSON(w, http.StatusCreated, resp)
	}
}

var errTokenNotMade = errors.New("ingest: the upload token could not be made")

// MintUploadToken mints an upload token for req's end user, as
// POST /v1/upload-tokens does for an API key of sign scope named issuer:
// the field refusals of the request, or an error (a policy refusal from a
// trial signature, or upload tokens off), or the token. `vodpipe up` mints
// its page's link with it.
func (s *Service) MintUploadToken(issuer string, req client.UploadTokenRequest) (client.UploadTokenResponse, []job.FieldError, error) {
	if len(s.tokenKeys) == 0 {
		return client.UploadTokenResponse{}, nil, errors.New("ingest: upload tokens are off: set VODPIPE_UPLOAD_TOKEN_KEYS (or _FILE)")
	}
	var bad []job.FieldError
	if !userPattern.MatchString(req.User) {
		bad = append(bad, job.FieldError{Field: "user", Reason: "required: 1..64 letters, digits or _ . @ -"})
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	if req.TTLSeconds == 0 {
		ttl = min(defaultTokenTTL, s.cfg.UploadTokenMaxTTL)
	}
	if req.TTLSeconds < 0 || req.TTLSeconds > int64(s.cfg.UploadTokenMaxTTL/time.Second) || ttl <= 0 {
		bad = append(bad, job.FieldError{Field: "ttlSeconds", Reason: fmt.Sprintf("must be 1..%d", int64(s.cfg.UploadTokenMaxTTL/time.Second))})
	}
	// Bounded before any multiplication (a Duration overflows past 292
	// years); the signing policy checks the lifetime itself below.
	if req.SignatureValiditySeconds < 0 || req.SignatureValiditySeconds > int64(math.MaxInt64/time.Second) {
		bad = append(bad, job.FieldError{Field: "signatureValiditySeconds", Reason: "must be a number of seconds, 0 or more (0: the signing policy's longest)"})
	}
	if len(bad) > 0 {
		return client.UploadTokenResponse{}, bad, nil
	}
	now := time.Now()
	c := &uploadClaims{ID: randomID(), User: req.User, Issuer: issuer, Expires: now.Add(ttl).Unix(),
		Validity: req.SignatureValiditySeconds, OneTime: req.OneTime == nil || *req.OneTime}
	if c.Validity == 0 {
		c.Validity = int64(s.cfg.MaxValidity / time.Second)
	}
	c.Policy.Procedure, c.Policy.StorageRegion, c.Policy.ClassID, c.Policy.SubAppID = req.Procedure, req.StorageRegion, req.ClassID, req.SubAppID
	c.Policy.SourceContext, c.Policy.SessionContext = req.SourceContext, req.SessionContext
	if c.Policy.SourceContext == "" {
		c.Policy.SourceContext = "user=" + req.User
	}
	// A trial signature checks the whole policy (allow-lists, lengths) now.
	if _, err := s.signer.Sign(c.request()); err != nil {
		return client.UploadTokenResponse{}, nil, err
	}
	tok, err := s.issueUploadToken(c)
	if err != nil {
		return client.UploadTokenResponse{}, nil, errTokenNotMade
	}
	s.metrics.sigs.WithLabelValues("token_minted").Inc()
	return client.UploadTokenResponse{Token: tok, User: req.User, ExpiresAt: time.Unix(c.Expires, 0).UTC()}, nil, nil
}

// tokenSignRequest is the signature a token's holder gets: the token's
// policy. A body may repeat the token's values or ask for a shorter life or
// a one-time signature; any other value it names is refused by field.
func tokenSignRequest(c *uploadClaims, body client.SignatureRequest) (signer.Request, []job.FieldError) {
	want := c.request()
	var bad []job.FieldError
	fixed := func(field string, differs bool) {
		if differs {
			bad = append(bad, job.FieldError{Field: field, Reason: "fixed by the upload token"})
		}
	}
	fixed("procedure", body.Procedure != "" && body.Procedure != want.Procedure)
	fixed("storageRegion", body.StorageRegion != "" && body.StorageRegion != want.StorageRegion)
	fixed("classId", body.ClassID != 0 && body.ClassID != want.ClassID)
	fixed("subAppId", body.SubAppID != 0 && body.SubAppID != want.SubAppID)
	fixed("sourceContext", body.SourceContext != "" && body.SourceContext != want.SourceContext)
	fixed("sessionContext", body.SessionContext != "" && body.SessionContext != want.SessionContext)
	// Compared in seconds before any multiplication: a huge value would
	// overflow a Duration to a negative one, which the signer reads as
	// "its longest".
	switch {
	case body.ValiditySeconds < 0:
		bad = append(bad, job.FieldError{Field: "validitySeconds", Reason: "must not be negative"})
	case body.ValiditySeconds > int64(want.Validity/time.Second):
		fixed("validitySeconds", true)
	case body.ValiditySeconds > 0:
		want.Validity = time.Duration(body.ValiditySeconds) * time.Second
	}
	want.OneTime = want.OneTime || body.OneTime
	return want, bad
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
