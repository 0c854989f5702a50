package webhook_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/pkg/webhook"
)

// The vector of the Standard Webhooks specification's reference libraries.
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = 1614265330
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignMatchesStandardWebhooksVector(t *testing.T) {
	got, err := webhook.Sign(specSecret, specID, time.Unix(specTS, 0), []byte(specBody))
	if err != nil || got != specSig {
		t.Fatalf("Sign = %q, %v; want %q", got, err, specSig)
	}
}

func TestVerify(t *testing.T) {
	at := time.Unix(specTS, 0)
	headers := func(id, ts, sig string) http.Header {
		h := http.Header{}
		for k, v := range map[string]string{webhook.HeaderID: id, webhook.HeaderTimestamp: ts, webhook.HeaderSignature: sig} {
			if v != "" {
				h.Set(k, v)
			}
		}
		return h
	}
	cases := []struct {
		name   string
		secret string
		h      http.Header
		body   string
		now    time.Time
		want   error
	}{
		{"valid", specSecret, headers(specID, "1614265330", specSig), specBody, at, nil},
		{"valid among several (key rotation)", specSecret, headers(specID, "1614265330", "v1,AAAA "+specSig), specBody, at, nil},
		{"within tolerance", specSecret, headers(specID, "1614265330", specSig), specBody, at.Add(4 * time.Minute), nil},
		{"too old", specSecret, headers(specID, "1614265330", specSig), specBody, at.Add(6 * time.Minute), webhook.ErrSignatureTimestamp},
		{"from the future", specSecret, headers(specID, "1614265330", specSig), specBody, at.Add(-6 * time.Minute), webhook.ErrSignatureTimestamp},
		{"timestamp not a number", specSecret, headers(specID, "soon", specSig), specBody, at, webhook.ErrSignatureTimestamp},
		{"body changed", specSecret, headers(specID, "1614265330", specSig), `{"test": 1}`, at, webhook.ErrSignatureMismatch},
		{"id changed", specSecret, headers("msg_other", "1614265330", specSig), specBody, at, webhook.ErrSignatureMismatch},
		{"wrong version", specSecret, headers(specID, "1614265330", strings.Replace(specSig, "v1,", "v2,", 1)), specBody, at, webhook.ErrSignatureMismatch},
		{"wrong secret", webhook.NewSecret(), headers(specID, "1614265330", specSig), specBody, at, webhook.ErrSignatureMismatch},
		{"no signature", specSecret, headers(specID, "1614265330", ""), specBody, at, webhook.ErrSignatureMissing},
		{"no id", specSecret, headers("", "1614265330", specSig), specBody, at, webhook.ErrSignatureMissing},
		{"secret without prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", headers(specID, "1614265330", specSig), specBody, at, webhook.ErrSecretMalformed},
		{"secret not base64", "whsec_***", headers(specID, "1614265330", specSig), specBody, at, webhook.ErrSecretMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := webhook.Verify(tc.secret, tc.h, []byte(tc.body), tc.now, 0)
			if !errors.Is(err, tc.want) || (tc.want == nil && id != specID) {
				t.Fatalf("Verify = %q, %v; want %v", id, err, tc.want)
			}
		})
	}
}

func TestNewSecretIsFreshAndUsable(t *testing.T) {
	a, b := webhook.NewSecret(), webhook.NewSecret()
	if a == b || !strings.HasPrefix(a, webhook.SecretPrefix) || len(a) != len(webhook.SecretPrefix)+44 {
		t.Fatalf("secrets %q, %q", a, b)
	}
	now := time.Now()
	sig, err := webhook.Sign(a, "ev-1", now, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(webhook.HeaderID, "ev-1")
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(webhook.HeaderSignature, sig)
	if _, err := webhook.Verify(a, h, []byte("{}"), now, 0); err != nil {
		t.Fatal(err)
	}
}

func verifyErr(secret string, h http.Header, body []byte, now time.Time) error {
	_, err := webhook.Verify(secret, h, body, now, 0)
	return err
}

// FuzzVerify: whatever headers and body arrive, Verify never panics, accepts
// only what Sign signed, and a signed delivery verifies.
func FuzzVerify(f *testing.F) {
	f.Add("msg_1", "1700000000", "v1,abc", []byte(`{"a":1}`))
	f.Add("", "", "", []byte{})
	f.Add("id", "notanumber", "v1,", []byte("x"))
	f.Add("id", "1700000000", "v2,zzz v1,", []byte("body"))
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	other := webhook.NewSecret()
	now := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(webhook.HeaderID, id)
		h.Set(webhook.HeaderTimestamp, ts)
		h.Set(webhook.HeaderSignature, sig)
		if got, err := webhook.Verify(secret, h, body, now, 0); err == nil {
			good, serr := webhook.Sign(secret, id, now, body)
			if serr != nil || got != id || !strings.Contains(sig, strings.TrimPrefix(good, "v1,")) {
				t.Fatalf("accepted a signature Sign did not make: %q", sig)
			}
		}
		if id == "" || strings.ContainsAny(id, "\r\n") {
			return
		}
		good, err := webhook.Sign(secret, id, now, body)
		if err != nil {
			t.Fatal(err)
		}
		h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		h.Set(webhook.HeaderSignature, good)
		if got, err := webhook.Verify(secret, h, body, now, 0); err != nil || got != id {
			t.Fatalf("a signed delivery does not verify: %v", err)
		}
		// Anything changed after signing is refused: the body, the id, the
		// timestamp, the signature, or the secret it is checked with.
		if err := verifyErr(secret, h, append(append([]byte{}, body...), 'x'), now); err == nil {
			t.Fatal("a delivery with a changed body verifies")
		}
		h2 := h.Clone()
		h2.Set(webhook.HeaderID, id+"x")
		if err := verifyErr(secret, h2, body, now); err == nil {
			t.Fatal("a delivery with a changed id verifies")
		}
		h2 = h.Clone()
		h2.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix()-1, 10))
		if err := verifyErr(secret, h2, body, now); err == nil {
			t.Fatal("a delivery with a changed timestamp verifies")
		}
		h2 = h.Clone()
		mac := []byte(good)
		mac[len(mac)/2+2] ^= 1
		h2.Set(webhook.HeaderSignature, string(mac))
		if err := verifyErr(secret, h2, body, now); err == nil {
			t.Fatal("a delivery with a changed signature verifies")
		}
		if err := verifyErr(other, h, body, now); err == nil {
			t.Fatal("a delivery verifies under another secret")
		}
	})
}
