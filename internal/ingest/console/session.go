package console

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/vodpipe/vodpipe/internal/apikey"
)

// cookieName is the session cookie's name.
const cookieName = "vodpipe_console"

// session is what the sealed cookie holds: the API key the operator signed
// in with (the console calls ingest's and notify's APIs with it, so the
// APIs decide what it may do), when the session ends, and the session's
// CSRF token.
type session struct {
	Key     string `json:"k"`
	Expires int64  `json:"e"`
	CSRF    string `json:"c"`
}

// sealer seals sessions into cookie values with AES-256-GCM under a key
// derived from a secret every ingest replica shares, so any replica opens
// the cookie another one set. The browser holds only ciphertext: it cannot
// read the key in it nor forge a session.
type sealer struct{ aead cipher.AEAD }

// sessionInfo binds the sealed bytes to their use.
var sessionInfo = []byte("vodpipe console session v1")

func newSealer(secret []byte) (*sealer, error) {
	if len(secret) == 0 {
		return nil, errors.New("console: no secret to seal sessions with")
	}
	key, err := hkdf.Key(sha256.New, secret, nil, string(sessionInfo), 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(sess session) (string, error) {
	b, err := json.Marshal(sess)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, b, sessionInfo)), nil
}

func (s *sealer) open(v string, now time.Time) (session, bool) {
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(b) < s.aead.NonceSize() {
		return session{}, false
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, b[:n], b[n:], sessionInfo)
	if err != nil {
		return session{}, false
	}
	var sess session
	if json.Unmarshal(plain, &sess) != nil || sess.Key == "" || sess.CSRF == "" || now.Unix() >= sess.Expires {
		return session{}, false
	}
	return sess, true
}

// randomToken is 32 random bytes, base64url.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// secure tells whether the browser reached us over HTTPS (directly, or
// through a proxy that says so): the cookie is then Secure.
func secure(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

// operator is a signed-in request's session and its key (both unexported:
// templates see only its name and scopes, never the key).
type operator struct {
	sess session
	key  *apikey.Key
}

// Name is the key's name.
func (o *operator) Name() string { return o.key.Name }

// Scopes are the key's scopes.
func (o *operator) Scopes() []string { return o.key.Scopes }

// can tells whether the operator's key has the scope: the console shows
// only what it allows (and the APIs refuse the rest anyway).
func (o *operator) can(scope string) bool { return o.key.Allows(scope) }

type ctxKey struct{}

func operatorFrom(ctx context.Context) *operator {
	o, _ := ctx.Value(ctxKey{}).(*operator)
	return o
}

// validCSRF compares a request's token with the session's in constant time.
func validCSRF(sess session, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(sess.CSRF)) == 1
}
