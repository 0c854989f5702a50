package vod

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

type vectorFile struct {
	SecretID  string `json:"secretId"`
	SecretKey string `json:"secretKey"`
	Vectors   []struct {
		Name      string `json:"name"`
		Original  string `json:"original"`
		Signature string `json:"signature"`
	} `json:"vectors"`
}

func loadVectors(t *testing.T) vectorFile {
	t.Helper()
	b, err := os.ReadFile("testdata/signatures/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func vector(t *testing.T, v vectorFile, name string) string {
	t.Helper()
	for _, x := range v.Vectors {
		if x.Name == name {
			return x.Signature
		}
	}
	t.Fatalf("no vector %q", name)
	return ""
}

// fixedNow is inside every vector's validity window.
var fixedNow = time.Unix(1700000100, 0)

func testVerifier(v vectorFile) Verifier {
	return Verifier{Keys: StaticKeys{v.SecretID: v.SecretKey}, Now: func() time.Time { return fixedNow }}
}

func TestSignMatchesIndependentVectors(t *testing.T) {
	v := loadVectors(t)
	cases := []struct {
		name string
		p    SignatureParams
	}{
		{"minimal", SignatureParams{SecretID: v.SecretID, CurrentTimeStamp: 1700000000, ExpireTime: 1700086400, Random: 220625}},
		{"full_policy", SignatureParams{
			SecretID: v.SecretID, CurrentTimeStamp: 1700000000, ExpireTime: 1700003600, Random: 4294967295,
			Procedure: "LongVideoPreset", StorageRegion: "ap-chongqing", ClassID: 12,
			SourceContext: "user=42&job=a b/ü", OneTimeValid: true, VodSubAppID: 1500000001,
			SessionContext: "ctx", TaskPriority: -3, HasTaskPriority: true, TaskNotifyMode: NotifyModeFinish,
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Sign(v.SecretKey, c.p)
			if err != nil {
				t.Fatal(err)
			}
			if want := vector(t, v, c.name); got != want {
				t.Fatalf("Sign = %s\nwant   %s", got, want)
			}
		})
	}
}

func TestVerifyIndependentVectors(t *testing.T) {
	v := loadVectors(t)
	ver := testVerifier(v)
	for _, name := range []string{"minimal", "full_policy", "percent20_spaces"} {
		t.Run(name, func(t *testing.T) {
			s, err := ver.Verify(vector(t, v, name))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if s.Params.SecretID != v.SecretID {
				t.Fatalf("secretId = %q", s.Params.SecretID)
			}
		})
	}
	s, err := ver.Verify(vector(t, v, "full_policy"))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Params
	if p.Procedure != "LongVideoPreset" || p.StorageRegion != "ap-chongqing" || p.ClassID != 12 ||
		p.SourceContext != "user=42&job=a b/ü" || !p.OneTimeValid || p.VodSubAppID != 1500000001 ||
		p.SessionContext != "ctx" || !p.HasTaskPriority || p.TaskPriority != -3 || p.TaskNotifyMode != "Finish" ||
		p.Random != 4294967295 {
		t.Fatalf("decoded policy = %+v", p)
	}
	s, err = ver.Verify(vector(t, v, "percent20_spaces"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Params.SourceContext != "hello world" {
		t.Fatalf("sourceContext = %q", s.Params.SourceContext)
	}
}

func TestVerifyRefusals(t *testing.T) {
	v := loadVectors(t)
	good := vector(t, v, "minimal")
	raw, _ := base64.StdEncoding.DecodeString(good)

	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		return base64.StdEncoding.EncodeToString(b)
	}
	// A signature whose parameters were changed after signing: the MAC stays, the text changes.
	tamperedParams := base64.StdEncoding.EncodeToString(append(append([]byte(nil), raw[:20]...),
		strings.Replace(string(raw[20:]), "random=220625", "random=220626", 1)...))
	unknownID := mustSign(t, "other-key", SignatureParams{SecretID: "AKIDnobody", CurrentTimeStamp: 1700000000, ExpireTime: 1700086400, Random: 1})
	expired := mustSign(t, v.SecretKey, SignatureParams{SecretID: v.SecretID, CurrentTimeStamp: 1699990000, ExpireTime: 1700000099, Random: 1})
	future := mustSign(t, v.SecretKey, SignatureParams{SecretID: v.SecretID, CurrentTimeStamp: 1700000100 + 301, ExpireTime: 1700086400, Random: 1})
	nonNumeric := signOriginal(v.SecretKey, "secretId="+v.SecretID+"&currentTimeStamp=1700000000&expireTime=soon&random=1")
	random33 := signOriginal(v.SecretKey, "secretId="+v.SecretID+"&currentTimeStamp=1700000000&expireTime=1700086400&random=4294967296")
	missingRandom := signOriginal(v.SecretKey, "secretId="+v.SecretID+"&currentTimeStamp=1700000000&expireTime=1700086400")
	longContext := signOriginal(v.SecretKey, "secretId="+v.SecretID+"&currentTimeStamp=1700000000&expireTime=1700086400&random=1&sourceContext="+strings.Repeat("x", 251))

	cases := []struct {
		name string
		sig  string
		want error
	}{
		{"empty", "", ErrSignatureMalformed},
		{"not base64", "%%%not-base64%%%", ErrSignatureMalformed},
		{"too short", base64.StdEncoding.EncodeToString([]byte("short")), ErrSignatureMalformed},
		{"huge", strings.Repeat("A", MaxSignatureLen+4), ErrSignatureMalformed},
		{"tampered mac", flip(3), ErrSignatureInvalid},
		{"tampered params", tamperedParams, ErrSignatureInvalid},
		{"unknown secretId", unknownID, ErrUnknownSecretID},
		{"expired", expired, ErrSignatureExpired},
		{"over-long-lived", vector(t, v, "too_long_lived"), ErrSignatureTooLongLived},
		{"from the future", future, ErrSignatureNotYetValid},
		{"non-numeric expireTime", nonNumeric, ErrSignatureMalformed},
		{"random over 32 bits", random33, ErrSignatureMalformed},
		{"missing random", missingRandom, ErrSignatureMalformed},
		{"sourceContext too long", longContext, ErrSignatureFieldInvalid},
	}
	ver := testVerifier(v)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ver.Verify(c.sig)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify error = %v, want %v", err, c.want)
			}
			// Each refusal is distinct: it matches none of the other sentinels.
			for _, other := range []error{ErrSignatureMalformed, ErrSignatureInvalid, ErrUnknownSecretID,
				ErrSignatureExpired, ErrSignatureTooLongLived, ErrSignatureNotYetValid, ErrSignatureFieldInvalid} {
				if other != c.want && errors.Is(err, other) {
					t.Fatalf("error %v also matches %v", err, other)
				}
			}
			if err != nil && strings.Contains(err.Error(), v.SecretKey) {
				t.Fatal("error text carries the SecretKey")
			}
		})
	}
}

func TestSignValidatesFields(t *testing.T) {
	base := SignatureParams{SecretID: "id", CurrentTimeStamp: 1700000000, ExpireTime: 1700086400, Random: 1}
	cases := []struct {
		name  string
		mod   func(*SignatureParams)
		field string
		want  error
	}{
		{"sourceContext 251 chars", func(p *SignatureParams) { p.SourceContext = strings.Repeat("é", 251) }, "sourceContext", ErrSignatureFieldInvalid},
		{"expiry over 90 days", func(p *SignatureParams) { p.ExpireTime = p.CurrentTimeStamp + 90*86400 + 1 }, "expireTime", ErrSignatureTooLongLived},
		{"expiry before now", func(p *SignatureParams) { p.ExpireTime = p.CurrentTimeStamp }, "expireTime", ErrSignatureMalformed},
		{"bad region", func(p *SignatureParams) { p.StorageRegion = "Guangzhou!" }, "storageRegion", ErrSignatureFieldInvalid},
		{"bad procedure", func(p *SignatureParams) { p.Procedure = "has space" }, "procedure", ErrSignatureFieldInvalid},
		{"priority 11", func(p *SignatureParams) { p.TaskPriority, p.HasTaskPriority = 11, true }, "taskPriority", ErrSignatureFieldInvalid},
		{"notify mode", func(p *SignatureParams) { p.TaskNotifyMode = "Sometimes" }, "taskNotifyMode", ErrSignatureFieldInvalid},
		{"negative class", func(p *SignatureParams) { p.ClassID = -1 }, "classId", ErrSignatureFieldInvalid},
		{"no secretId", func(p *SignatureParams) { p.SecretID = "" }, "secretId", ErrSignatureMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := base
			c.mod(&p)
			_, err := Sign("key", p)
			if !errors.Is(err, c.want) {
				t.Fatalf("Sign error = %v, want %v", err, c.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("error %v does not name field %q", err, c.field)
			}
		})
	}
	p := base
	p.SourceContext = strings.Repeat("é", 250)
	if _, err := Sign("key", p); err != nil {
		t.Fatalf("250 characters refused: %v", err)
	}
	if _, err := Sign("", base); !errors.Is(err, ErrMissingSecretKey) {
		t.Fatalf("empty key: %v", err)
	}
}

func TestSignRoundTrip(t *testing.T) {
	p := SignatureParams{SecretID: "id", CurrentTimeStamp: time.Now().Unix(), ExpireTime: time.Now().Add(time.Hour).Unix(),
		Random: NewRandom(), Procedure: "p1", SourceContext: "a+b c&d=e%", OneTimeValid: true, HasTaskPriority: true}
	sig, err := Sign("secret", p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Verifier{Keys: StaticKeys{"id": "secret"}}.Verify(sig)
	if err != nil {
		t.Fatal(err)
	}
	if s.Params.SourceContext != p.SourceContext || !s.Params.OneTimeValid || s.Params.Procedure != "p1" ||
		!s.Params.HasTaskPriority || s.Params.TaskPriority != 0 {
		t.Fatalf("round trip = %+v", s.Params)
	}
}

func TestParseSignatureKeepsUnknownParameters(t *testing.T) {
	sig := signOriginal("k", "secretId=a&currentTimeStamp=1&expireTime=2&random=3&newThing=x")
	s, err := ParseSignature(sig)
	if err != nil {
		t.Fatal(err)
	}
	if s.Params.Extra.Get("newThing") != "x" {
		t.Fatalf("extra = %v", s.Params.Extra)
	}
}

func mustSign(t *testing.T, key string, p SignatureParams) string {
	t.Helper()
	s, err := Sign(key, p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signOriginal signs a raw query string, bypassing validation, to build bad signatures.
func signOriginal(key, original string) string {
	return base64.StdEncoding.EncodeToString(append(hmacSHA1(key, original), original...))
}

func FuzzParseSignature(f *testing.F) {
	f.Add(signOriginal("k", "secretId=a&currentTimeStamp=1&expireTime=2&random=3"))
	f.Add(signOriginal("k", "secretId=a&currentTimeStamp=1&expireTime=2&random=3&sourceContext=%zz"))
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, sig string) {
		s, err := ParseSignature(sig)
		if err != nil {
			if s != nil {
				t.Fatal("signature returned with error")
			}
			if !errors.Is(err, ErrSignatureMalformed) {
				t.Fatalf("error %v is not ErrSignatureMalformed", err)
			}
			return
		}
		// The MAC check agrees with the MAC: a signature verifies under key
		// "k" exactly when its MAC is k's over the original it carries.
		raw, _ := base64.StdEncoding.DecodeString(sig)
		if want := bytes.Equal(raw[:macLen], hmacSHA1("k", s.Original)); s.CheckMAC("k") != want {
			t.Fatalf("CheckMAC(k) = %v, want %v", !want, want)
		}
		// Signed again with k over the same original, it verifies under k
		// and under no other key, and a changed original does not verify.
		again, err := ParseSignature(signOriginal("k", s.Original))
		if err != nil {
			t.Fatalf("the same original signed again does not parse: %v", err)
		}
		if !again.CheckMAC("k") || again.CheckMAC("k2") {
			t.Fatal("a signature made with k does not verify under k alone")
		}
		tampered := *again
		tampered.Original += "&x=1"
		if tampered.CheckMAC("k") {
			t.Fatal("a changed original verifies")
		}
		// The parsed parameters re-encode into a signature that parses into the same parameters.
		re, err := ParseSignature(signOriginal("k", s.Params.Encode()))
		if err != nil {
			t.Fatalf("re-encoded params do not parse: %v", err)
		}
		if re.Params.Encode() != s.Params.Encode() {
			t.Fatalf("params changed through an encoding:\n%s\n%s", s.Params.Encode(), re.Params.Encode())
		}
	})
}
