package secretbox_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/internal/secretbox"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, secretbox.KeySize)
	_, _ = rand.Read(k)
	return k
}

func newBox(t *testing.T, keys ...[]byte) *secretbox.Box {
	t.Helper()
	b, err := secretbox.New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealOpen(t *testing.T) {
	k := newKey(t)
	b := newBox(t, k)
	secret := []byte("whsec_c2VjcmV0")
	sealed := b.Seal(secret, []byte("sub_a"))
	if !strings.HasPrefix(sealed, secretbox.Prefix+secretbox.KeyID(k)+".") {
		t.Fatalf("sealed value %q does not name its key id %s", sealed, secretbox.KeyID(k))
	}
	if strings.Contains(sealed, string(secret)) {
		t.Fatal("sealed value holds the plaintext")
	}
	if again := b.Seal(secret, []byte("sub_a")); again == sealed {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
	got, err := b.Open(sealed, []byte("sub_a"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if id, ok := secretbox.SealedKeyID(sealed); !ok || id != b.KeyID() {
		t.Fatalf("SealedKeyID = %q, %v; want %s", id, ok, b.KeyID())
	}
}

// TestRotation: a box whose first key is new opens values sealed under the
// old key, and seals under the new one.
func TestRotation(t *testing.T) {
	oldKey, newKey := newKey(t), newKey(t)
	sealed := newBox(t, oldKey).Seal([]byte("s"), nil)
	rotated := newBox(t, newKey, oldKey)
	if got, err := rotated.Open(sealed, nil); err != nil || string(got) != "s" {
		t.Fatalf("Open after rotation = %q, %v", got, err)
	}
	if id, _ := secretbox.SealedKeyID(rotated.Seal([]byte("s"), nil)); id != secretbox.KeyID(newKey) {
		t.Fatalf("sealed under %s, want the first key %s", id, secretbox.KeyID(newKey))
	}
}

func TestOpenErrors(t *testing.T) {
	k, other := newKey(t), newKey(t)
	b := newBox(t, k)
	sealed := b.Seal([]byte("plain-secret"), []byte("sub_a"))
	foreign := newBox(t, other).Seal([]byte("plain-secret"), []byte("sub_a"))
	id, data, _ := strings.Cut(strings.TrimPrefix(sealed, secretbox.Prefix), ".")
	flipped := []byte(data)
	if i := len(flipped) / 2; flipped[i] == 'A' { // a byte of the ciphertext, still base64
		flipped[i] = 'B'
	} else {
		flipped[i] = 'A'
	}
	for _, tc := range []struct {
		name, sealed, ad string
		want             error
		wantIn           string
	}{
		{"other additional data", sealed, "sub_b", secretbox.ErrNotAuthentic, id},
		{"altered", secretbox.Prefix + id + "." + string(flipped), "sub_a", secretbox.ErrNotAuthentic, id},
		{"unknown key", foreign, "sub_a", secretbox.ErrUnknownKey, secretbox.KeyID(other)},
		{"clear text", "whsec_c2VjcmV0", "sub_a", secretbox.ErrMalformed, ""},
		{"no data", secretbox.Prefix + id + ".", "sub_a", secretbox.ErrMalformed, ""},
		{"bad key id", secretbox.Prefix + "zz" + "." + data, "sub_a", secretbox.ErrMalformed, ""},
		{"short", secretbox.Prefix + id + ".AAAA", "sub_a", secretbox.ErrMalformed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.Open(tc.sealed, []byte(tc.ad))
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("Open = %q, %v; want %v", got, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("error %q does not name key id %s", err, tc.wantIn)
			}
			for _, leak := range []string{"plain-secret", hex.EncodeToString(k), hex.EncodeToString(other), base64.StdEncoding.EncodeToString(k)} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error %q leaks %q", err, leak)
				}
			}
		})
	}
}

func TestParseKeys(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	for _, tc := range []struct {
		name, text string
		want       [][]byte
		err        error
		errIn      string
	}{
		{"hex", hex.EncodeToString(k1), [][]byte{k1}, nil, ""},
		{"base64", base64.StdEncoding.EncodeToString(k1), [][]byte{k1}, nil, ""},
		{"raw url base64", base64.RawURLEncoding.EncodeToString(k1), [][]byte{k1}, nil, ""},
		{"comma", hex.EncodeToString(k1) + ", " + base64.StdEncoding.EncodeToString(k2), [][]byte{k1, k2}, nil, ""},
		{"lines", base64.StdEncoding.EncodeToString(k1) + "\r\n\n" + hex.EncodeToString(k2) + "\n", [][]byte{k1, k2}, nil, ""},
		{"empty", " \n, ", nil, secretbox.ErrNoKey, ""},
		{"short", hex.EncodeToString(k1[:16]), nil, secretbox.ErrKey, "key 1"},
		{"passphrase", hex.EncodeToString(k1) + ",correct horse battery staple", nil, secretbox.ErrKey, "key 2"},
		{"long", base64.StdEncoding.EncodeToString(append(k1, k2...)), nil, secretbox.ErrKey, "key 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := secretbox.ParseKeys(tc.text)
			if !errors.Is(err, tc.err) {
				t.Fatalf("ParseKeys error = %v, want %v", err, tc.err)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.errIn) || strings.Contains(err.Error(), "horse") || strings.Contains(err.Error(), hex.EncodeToString(k1[:16])) {
					t.Errorf("error %q: want %q in it and no key text", err, tc.errIn)
				}
				return
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d keys, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tc.want[i]) {
					t.Errorf("key %d differs", i+1)
				}
			}
		})
	}
}

func TestNewRefusesBadKeys(t *testing.T) {
	if _, err := secretbox.New(); !errors.Is(err, secretbox.ErrNoKey) {
		t.Errorf("New() = %v, want ErrNoKey", err)
	}
	if _, err := secretbox.New(newKey(t), make([]byte, 16)); !errors.Is(err, secretbox.ErrKey) || !strings.Contains(err.Error(), "key 2") {
		t.Errorf("New with a 16-byte key = %v, want ErrKey naming key 2", err)
	}
}
