package apikey_test

import (
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/internal/apikey"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string // name=scopes of each key
		err      string
	}{
		{"named with every scope", "ops:0123456789abcdef", []string{"ops=submit+read+control+sign"}, ""},
		{"named with scopes", "web:0123456789abcdef:sign+read", []string{"web=sign+read"}, ""},
		{"bare key named by place", " , 0123456789abcdef", []string{"key2=submit+read+control+sign"}, ""},
		{"several", "a:aaaaaaaa:read,b:bbbbbbbb", []string{"a=read", "b=submit+read+control+sign"}, ""},
		{"empty", "", nil, ""},
		{"short key", "ops:short", nil, `API key entry 1: want key or name:key[:scope+scope], the key at least 8 characters`},
		{"empty name", ":0123456789abcdef", nil, `API key entry 1: want key`},
		{"unknown scope", "ops:0123456789abcdef:read+admin", nil, `API key entry 1: unknown scope (known: submit, read, control, sign)`},
		// A key with a colon in it splits into a name, a short key and a "scope": no part is quoted.
		{"key split by a colon", "ops:0123456:789abcdef", nil, `API key entry 1: unknown scope`},
		{"key taken for a name", "0123456789abcdef:read", nil, `API key entry 1: want key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var k apikey.Keys
			err := k.Decode(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "0123456789") || strings.Contains(err.Error(), "abcdef") {
					t.Fatalf("the error shows the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, key := range k {
				got = append(got, key.Name+"="+strings.Join(key.Scopes, "+"))
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("keys = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLookupAndAllows(t *testing.T) {
	var k apikey.Keys
	if err := k.Decode("ops:ops-secret-1,reader:reader-secret:read"); err != nil {
		t.Fatal(err)
	}
	// What is kept of a key is its SHA-256, nothing else of it.
	for i, secret := range []string{"ops-secret-1", "reader-secret"} {
		if k[i].Hash != sha256.Sum256([]byte(secret)) {
			t.Fatalf("key %s: hash %x is not the SHA-256 of its key", k[i].Name, k[i].Hash)
		}
	}
	r, ok := k.Lookup("reader-secret")
	if !ok || r.Name != "reader" || !r.Allows(apikey.ScopeRead) || r.Allows(apikey.ScopeSubmit) {
		t.Fatalf("reader = %+v, %v", r, ok)
	}
	if o, ok := k.Lookup("ops-secret-1"); !ok || o.Name != "ops" || !o.Allows(apikey.ScopeControl) {
		t.Fatalf("ops = %+v, %v", o, ok)
	}
	for _, bad := range []string{"", "ops-secret", "ops-secret-12", "reader"} {
		if _, ok := k.Lookup(bad); ok {
			t.Fatalf("token %q accepted", bad)
		}
	}
}
