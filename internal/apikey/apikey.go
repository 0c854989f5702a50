// Package apikey holds vodpipe's bearer API keys, shared by ingest and
// notify (one VODPIPE_API_KEYS serves both): comma-separated entries, each
// a bare key or name:key[:scope+scope]. Only SHA-256 hashes of the keys are
// kept, and a presented token is compared with every hash in constant time.
package apikey

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"strings"
)

// Scopes a key may carry: ingest checks submit, read, control and sign;
// notify checks read and control.
const (
	ScopeSubmit  = "submit"
	ScopeRead    = "read"
	ScopeControl = "control"
	ScopeSign    = "sign"
)

// AllScopes is what a key without a scope list may do.
var AllScopes = []string{ScopeSubmit, ScopeRead, ScopeControl, ScopeSign}

// MinLength is the shortest key accepted.
const MinLength = 8

// Key is one hashed key with its scopes.
type Key struct {
	Name   string
	Hash   [sha256.Size]byte
	Scopes []string
}

// Allows reports whether the key carries scope.
func (k *Key) Allows(scope string) bool { return slices.Contains(k.Scopes, scope) }

// Keys are the configured keys.
type Keys []Key

// Decode implements envconfig.Decoder. A bare key is named key<N> after its
// place in the list; a key without scopes has them all.
func (k *Keys) Decode(v string) error {
	var out Keys
	for i, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		key := Key{Name: fmt.Sprintf("key%d", i+1), Scopes: slices.Clone(AllScopes)}
		secret := entry
		if parts := strings.SplitN(entry, ":", 3); len(parts) > 1 {
			key.Name, secret = parts[0], parts[1]
			if len(parts) == 3 {
				key.Scopes = strings.Split(parts[2], "+")
				for _, sc := range key.Scopes {
					if !slices.Contains(AllScopes, sc) {
						return &DecodeError{Entry: i + 1, Why: "unknown scope (known: " + strings.Join(AllScopes, ", ") + ")"}
					}
				}
			}
		}
		if key.Name == "" || len(secret) < MinLength {
			return &DecodeError{Entry: i + 1, Why: fmt.Sprintf("want key or name:key[:scope+scope], the key at least %d characters", MinLength)}
		}
		key.Hash = sha256.Sum256([]byte(secret))
		out = append(out, key)
	}
	*k = out
	return nil
}

// DecodeError is a malformed entry of a key list. It names the entry by its
// place only: a name, a scope or any other part of it may be a mistyped key.
type DecodeError struct {
	Entry int    // 1-based place in the list
	Why   string // what is wrong
}

func (e *DecodeError) Error() string { return "apikey: " + e.Reason() }

// Reason says what is wrong without quoting the entry.
func (e *DecodeError) Reason() string { return fmt.Sprintf("API key entry %d: %s", e.Entry, e.Why) }

// Lookup finds the key matching a bearer token, comparing every hash in
// constant time so the answer's timing does not tell which key is close.
func (k Keys) Lookup(token string) (*Key, bool) {
	h := sha256.Sum256([]byte(token))
	var found *Key
	for i := range k {
		if subtle.ConstantTimeCompare(h[:], k[i].Hash[:]) == 1 {
			found = &k[i]
		}
	}
	return found, found != nil
}
