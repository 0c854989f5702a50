// Package secretbox seals short secrets with AES-256-GCM under keys kept
// outside the store that holds the sealed values. A box seals with its first
// key and opens with any of its keys, so a key is rotated by putting a new
// one first and keeping the old ones until everything is sealed again.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the size of a key: AES-256.
const KeySize = 32

// Prefix starts every sealed value and names its format's version:
// "sb1.<key id>.<base64url of nonce and ciphertext>".
const Prefix = "sb1."

// Errors of New, ParseKeys and Open, matched with errors.Is. None carries a
// key or a plaintext; an unknown key is named by its id only.
var (
	ErrNoKey        = errors.New("secretbox: no key")
	ErrKey          = errors.New("secretbox: not a 32-byte key in base64 or hex")
	ErrMalformed    = errors.New("secretbox: not a sealed value")
	ErrUnknownKey   = errors.New("secretbox: sealed under an unknown key")
	ErrNotAuthentic = errors.New("secretbox: sealed value does not open: altered, or sealed for other additional data")
)

// Box seals and opens values.
type Box struct {
	keys []boxKey // the first seals
}

type boxKey struct {
	id   string
	aead cipher.AEAD
}

// New returns a box over keys of KeySize bytes; the first seals.
func New(keys ...[]byte) (*Box, error) {
	if len(keys) == 0 {
		return nil, ErrNoKey
	}
	b := &Box{}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("key %d: %w", i+1, ErrKey)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, ErrKey)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		b.keys = append(b.keys, boxKey{id: KeyID(k), aead: aead})
	}
	return b, nil
}

// ParseKeys decodes keys separated by commas or newlines, each 32 bytes in
// hex or base64 (standard or URL alphabet, padded or not). Its error names
// the key's position, never its text.
func ParseKeys(text string) ([][]byte, error) {
	var out [][]byte
	n := 0
	for part := range strings.FieldsFuncSeq(text, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n++
		k, ok := decodeKey(part)
		if !ok {
			return nil, fmt.Errorf("key %d: %w", n, ErrKey)
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, ErrNoKey
	}
	return out, nil
}

func decodeKey(s string) ([]byte, bool) {
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, true
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, true
		}
	}
	return nil, false
}

// KeyID names a key in sealed values and errors: the first 8 hex digits of
// its SHA-256.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// KeyID is the id of the key the box seals with.
func (b *Box) KeyID() string { return b.keys[0].id }

// Seal encrypts plaintext under the first key, bound to ad: the value opens
// only with the same additional data.
func (b *Box) Seal(plaintext, ad []byte) string {
	k := b.keys[0]
	nonce := make([]byte, k.aead.NonceSize())
	_, _ = rand.Read(nonce) // never fails (crypto/rand)
	sealed := k.aead.Seal(nonce, nonce, plaintext, ad)
	return Prefix + k.id + "." + base64.RawURLEncoding.EncodeToString(sealed)
}

// Open decrypts a value Seal returned with one of the box's keys, given the
// additional data it was sealed with.
func (b *Box) Open(sealed string, ad []byte) ([]byte, error) {
	id, data, ok := split(sealed)
	if !ok {
		return nil, ErrMalformed
	}
	for _, k := range b.keys {
		if k.id != id {
			continue
		}
		raw, err := base64.RawURLEncoding.DecodeString(data)
		if err != nil || len(raw) < k.aead.NonceSize()+k.aead.Overhead() {
			return nil, ErrMalformed
		}
		n := k.aead.NonceSize()
		plain, err := k.aead.Open(nil, raw[:n], raw[n:], ad)
		if err != nil {
			return nil, fmt.Errorf("key id %s: %w", id, ErrNotAuthentic)
		}
		return plain, nil
	}
	return nil, fmt.Errorf("%w: key id %s", ErrUnknownKey, id)
}

// SealedKeyID returns the id of the key a sealed value names, and whether
// the value looks sealed at all.
func SealedKeyID(sealed string) (string, bool) {
	id, _, ok := split(sealed)
	return id, ok
}

// split takes a sealed value apart into its key id and its data.
func split(sealed string) (id, data string, ok bool) {
	rest, ok := strings.CutPrefix(sealed, Prefix)
	if !ok {
		return "", "", false
	}
	id, data, ok = strings.Cut(rest, ".")
	if !ok || len(id) != 8 || data == "" {
		return "", "", false
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", "", false
	}
	return id, data, true
}
