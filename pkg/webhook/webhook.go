// Package webhook signs and verifies vodpipe's webhook deliveries as
// Standard Webhooks (https://www.standardwebhooks.com) defines them: notify
// signs each delivery with the subscription's whsec_ secret, and a receiver
// checks it with Verify. It imports nothing beyond the standard library, so
// a receiver can use it without pulling in the rest of vodpipe.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers of a webhook delivery, as Standard Webhooks
// (https://www.standardwebhooks.com) names them.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every signing secret; the rest is the base64 of the key.
const SecretPrefix = "whsec_"

// secretBytes is the size of a generated signing key.
const secretBytes = 32

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock before Verify refuses it (replay protection).
const DefaultTolerance = 5 * time.Minute

// Errors of Verify, matched with errors.Is.
var (
	ErrSecretMalformed    = errors.New("webhook: signing secret is not whsec_<base64>")
	ErrSignatureMissing   = errors.New("webhook: webhook headers missing")
	ErrSignatureTimestamp = errors.New("webhook: webhook timestamp outside the tolerance")
	ErrSignatureMismatch  = errors.New("webhook: no webhook signature matches")
)

// NewSecret returns a fresh signing secret, whsec_<base64 of 32 random bytes>.
func NewSecret() string {
	b := make([]byte, secretBytes)
	_, _ = rand.Read(b)
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// secretKey decodes the HMAC key of a whsec_ secret.
func secretKey(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, ErrSecretMalformed
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(key) == 0 {
		return nil, ErrSecretMalformed
	}
	return key, nil
}

// Sign returns the webhook-signature value of one delivery:
// "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>".
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + signature(key, id, strconv.FormatInt(ts.Unix(), 10), body), nil
}

func signature(key []byte, id, ts string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Verify checks a delivery as a receiver should: the three headers are
// present, the timestamp is within tolerance of now (DefaultTolerance when
// tolerance is 0), and one of the space-separated v1 signatures matches.
// It returns the webhook id, which stays the same across redeliveries of
// one event, for the receiver's de-duplication.
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return "", ErrSignatureMissing
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: %q is not Unix seconds", ErrSignatureTimestamp, ts)
	}
	if tolerance == 0 {
		tolerance = DefaultTolerance
	}
	if d := now.Sub(time.Unix(sec, 0)).Abs(); d > tolerance {
		return "", fmt.Errorf("%w: %s away", ErrSignatureTimestamp, d.Truncate(time.Second))
	}
	want := signature(key, id, ts, body)
	for s := range strings.FieldsSeq(sigs) {
		v, sig, ok := strings.Cut(s, ",")
		if ok && v == "v1" && hmac.Equal([]byte(sig), []byte(want)) {
			return id, nil
		}
	}
	return "", ErrSignatureMismatch
}
