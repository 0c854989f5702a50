package ingest_test

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/ingest"
	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// The attacks of issue 18 on ingest's signature paths, each refused.

const (
	tokenKey    = "upload-token-key-0123456789abcdef-0001"
	oldTokenKey = "upload-token-key-0123456789abcdef-0000"
)

func withUploadTokens(c *ingest.Config) {
	c.UploadTokenKeys = []string{tokenKey, oldTokenKey}
	c.UploadPage = true
	c.WebDir = "."
}

// mint asks for an upload token with the backend's sign key.
func (a *api) mint(body string) string {
	a.t.Helper()
	r := a.do("POST", "/v1/upload-tokens", signKey, "application/json", body)
	if r.status != http.StatusCreated {
		a.t.Fatalf("mint %s: %d %s", body, r.status, r.raw)
	}
	return r.body["token"].(string)
}

// craft makes a token from raw claims under key, as only a holder of the key could.
func craft(key, claims string) string {
	payload := "ut1." + base64.RawURLEncoding.EncodeToString([]byte(claims))
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(payload))
	return payload + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestUploadPageIsOffByDefault(t *testing.T) {
	a := startIngest(t)
	for _, path := range []string{"/upload?user=victim", "/upload/vod-js-sdk-v6.js"} {
		if r := a.do("GET", path, "", "", ""); r.status != http.StatusNotFound {
			t.Errorf("GET %s: %d %s, want 404", path, r.status, r.raw)
		}
	}
	if r := a.do("POST", "/v1/upload-tokens", signKey, "application/json", `{"user":"alice"}`); r.status != http.StatusNotImplemented ||
		!strings.Contains(string(r.raw), "VODPIPE_UPLOAD_TOKEN_KEYS") {
		t.Errorf("minting without keys: %d %s", r.status, r.raw)
	}
	// The page cannot be switched on without a key to verify its tokens.
	creds := config.Credentials{SecretID: testharness.VodsimSecretID, SecretKey: testharness.VodsimSecretKey}
	if _, err := ingest.New(t.Context(), ingest.Config{NATS: natsconf.NATS{URL: a.nats.URL}, PageConfig: ingest.PageConfig{UploadPage: true},
		Credentials: creds}, nil); err == nil || !strings.Contains(err.Error(), "UPLOAD_TOKEN_KEYS") {
		t.Errorf("page without token keys: %v", err)
	}
	// A short key is refused, and the error does not carry it.
	_, err := ingest.New(t.Context(), ingest.Config{NATS: natsconf.NATS{URL: a.nats.URL}, Credentials: creds,
		UploadTokenConfig: ingest.UploadTokenConfig{UploadTokenKeys: []string{"short-secret"}}}, nil)
	if err == nil || strings.Contains(err.Error(), "short-secret") {
		t.Errorf("short token key: %v", err)
	}
}

func TestUploadTokenFixesThePolicy(t *testing.T) {
	a := startIngest(t, withUploadTokens)
	tok := a.mint(`{"user":"alice","procedure":"LongVideoPreset","storageRegion":"ap-guangzhou"}`)
	// The token names its user and the key that minted it (signed, not secret).
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	var claims struct{ Sub, Iss string }
	if err != nil || json.Unmarshal(raw, &claims) != nil || claims.Sub != "alice" || claims.Iss != "web" {
		t.Fatalf("token claims %s (%v), want user alice minted by key web", raw, err)
	}
	r := a.do("POST", "/v1/signatures", tok, "application/json", `{}`)
	if r.status != http.StatusOK {
		t.Fatalf("sign with the token: %d %s", r.status, r.raw)
	}
	p, err := vod.ParseSignature(r.body["signature"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Params; got.SourceContext != "user=alice" || got.Procedure != "LongVideoPreset" || got.StorageRegion != "ap-guangzhou" ||
		!got.OneTimeValid || got.ClassID != 0 || got.VodSubAppID != 0 {
		t.Fatalf("signature params = %+v", got)
	}
	// The browser chooses nothing the token does not allow (issue 18's request, field by field).
	for field, body := range map[string]string{
		"sourceContext":   `{"sourceContext":"user=victim"}`,
		"storageRegion":   `{"storageRegion":"ap-shanghai"}`,
		"classId":         `{"classId":77}`,
		"subAppId":        `{"subAppId":1500009999}`,
		"procedure":       `{"procedure":"OtherFlow"}`,
		"validitySeconds": `{"validitySeconds":86400}`,
		// 9223372037 s overflow a Duration to a negative one, which the
		// signer read as "its longest": a signature outliving the token's.
		"validitySeconds ": `{"validitySeconds":9223372037}`,
	} {
		field = strings.TrimSpace(field)
		r := a.do("POST", "/v1/signatures", tok, "application/json", body)
		if r.status != http.StatusForbidden || !slices.Equal(r.errorFields(), []string{field}) {
			t.Errorf("%s: %d %s, want 403 naming %s", body, r.status, r.raw, field)
		}
	}
	if r := a.do("POST", "/v1/signatures", tok, "application/json", `{"validitySeconds":-5}`); r.status != http.StatusBadRequest ||
		!slices.Equal(r.errorFields(), []string{"validitySeconds"}) {
		t.Errorf("a negative validity: %d %s, want 400 naming validitySeconds", r.status, r.raw)
	}
	// Repeating the token's own values, or asking for less, is fine.
	if r := a.do("POST", "/v1/signatures", tok, "application/json", `{"procedure":"LongVideoPreset","validitySeconds":60}`); r.status != http.StatusOK {
		t.Errorf("the token's own values: %d %s", r.status, r.raw)
	}
	// A token gets signatures and its events, nothing else: not another token, not the jobs.
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/upload-tokens", `{"user":"mallory","procedure":"LongVideoPreset"}`},
		{"GET", "/v1/jobs", ""},
		{"POST", "/v1/jobs", `{"source":"file:///etc/passwd"}`},
		{"GET", "/v1/dead-letters", ""},
	} {
		if r := a.do(c.method, c.path, tok, "application/json", c.body); r.status != http.StatusForbidden {
			t.Errorf("token on %s %s: %d %s, want 403", c.method, c.path, r.status, r.raw)
		}
	}
}

func TestMintingIsCheckedAgainstThePolicy(t *testing.T) {
	a := startIngest(t, withUploadTokens)
	for _, c := range []struct {
		body   string
		status int
		field  string
	}{
		{`{"user":"alice","procedure":"NotAllowed"}`, 403, "procedure"},
		{`{"user":"alice","storageRegion":"ap-shanghai"}`, 403, "storageRegion"},
		{`{"user":"alice","classId":77}`, 403, "classId"},
		{`{"user":"alice","subAppId":1500009999}`, 403, "subAppId"},
		{`{"user":"alice","signatureValiditySeconds":86400}`, 403, "validity"},
		{`{"user":"alice","signatureValiditySeconds":9223372037}`, 400, "signatureValiditySeconds"}, // a Duration's overflow
		{`{"user":"alice","signatureValiditySeconds":-1}`, 400, "signatureValiditySeconds"},
		{`{"user":"alice","ttlSeconds":9223372037}`, 400, "ttlSeconds"},
		{`{"user":"alice","sourceContext":"` + strings.Repeat("x", 251) + `"}`, 400, "sourceContext"},
		{`{"user":"../../etc"}`, 400, "user"},
		{`{}`, 400, "user"},
		{`{"user":"alice","ttlSeconds":86400}`, 400, "ttlSeconds"},
		{`{"user":"alice","colour":"red"}`, 400, "colour"},
		{`{"user":7}`, 400, "user"},
	} {
		r := a.do("POST", "/v1/upload-tokens", signKey, "application/json", c.body)
		if r.status != c.status || !slices.Equal(r.errorFields(), []string{c.field}) {
			t.Errorf("%.60s: %d %s, want %d naming %s", c.body, r.status, r.raw, c.status, c.field)
		}
	}
	if r := a.do("POST", "/v1/upload-tokens", readerKey, "application/json", `{"user":"alice"}`); r.status != http.StatusForbidden {
		t.Errorf("a read key minted a token: %d %s", r.status, r.raw)
	}
	if r := a.do("POST", "/v1/upload-tokens", "", "application/json", `{"user":"alice"}`); r.status != http.StatusUnauthorized {
		t.Errorf("no key minted a token: %d %s", r.status, r.raw)
	}
}

func TestForgedAndExpiredTokensAreRefused(t *testing.T) {
	a := startIngest(t, withUploadTokens)
	tok := a.mint(`{"user":"alice"}`)
	payload, mac, _ := strings.Cut(strings.TrimPrefix(tok, "ut1."), ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	claims["sub"] = "victim"
	changed, _ := json.Marshal(claims)
	future := time.Now().Add(time.Hour).Unix()
	valid := fmt.Sprintf(`{"jti":"j1","sub":"alice","exp":%d,"val":60,"one":true,"pol":{"s":"user=alice"}}`, future)
	for name, bad := range map[string]string{
		"user changed":        "ut1." + base64.RawURLEncoding.EncodeToString(changed) + "." + mac,
		"another key":         craft("some-other-key-0123456789abcdef-xyz", valid),
		"expired":             craft(tokenKey, fmt.Sprintf(`{"jti":"j2","sub":"alice","exp":%d,"val":60,"one":true}`, time.Now().Add(-time.Second).Unix())),
		"no id":               craft(tokenKey, fmt.Sprintf(`{"sub":"alice","exp":%d,"val":60}`, future)),
		"old page token form": "pt." + payload + "." + mac,
		"truncated":           tok[:len(tok)-3],
	} {
		if r := a.do("POST", "/v1/signatures", bad, "application/json", `{}`); r.status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", name, r.status, r.raw)
		}
	}
	// Rotation: a token under the previous key (listed second) still verifies.
	if r := a.do("POST", "/v1/signatures", craft(oldTokenKey, valid), "application/json", `{}`); r.status != http.StatusOK {
		t.Errorf("token under the previous key: %d %s", r.status, r.raw)
	}
	// The token is never taken from a URL, where proxies log it.
	if r := a.do("GET", "/upload/events?token="+tok, "", "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("token in the query: %d %s", r.status, r.raw)
	}
}

func TestSignatureRateLimits(t *testing.T) {
	a := startIngest(t, withUploadTokens, func(c *ingest.Config) {
		c.UploadTokenSignRate, c.UploadTokenSignBurst = 0.001, 2
		c.SignGlobalRate, c.SignGlobalBurst = 0.001, 5
	})
	alice, bob := a.mint(`{"user":"alice"}`), a.mint(`{"user":"bob"}`)
	statuses := func(tok string, n int) (out []int) {
		for range n {
			out = append(out, a.do("POST", "/v1/signatures", tok, "application/json", `{}`).status)
		}
		return out
	}
	// Per token: alice's third is refused, bob (another token) still signs.
	if got := statuses(alice, 3); !slices.Equal(got, []int{200, 200, 429}) {
		t.Fatalf("alice: %v", got)
	}
	if got := statuses(bob, 2); !slices.Equal(got, []int{200, 200}) {
		t.Fatalf("bob: %v", got)
	}
	// Globally: 4 of 5 are spent; new tokens (a rotating attacker) get one more, then none.
	carol, dave := a.mint(`{"user":"carol"}`), a.mint(`{"user":"dave"}`)
	if got := append(statuses(carol, 1), statuses(dave, 1)...); !slices.Equal(got, []int{200, 429}) {
		t.Fatalf("after the global burst: %v", got)
	}
	r := a.do("POST", "/v1/signatures", dave, "application/json", `{}`)
	if r.status != 429 || !strings.Contains(string(r.raw), "this service") || r.header.Get("Retry-After") == "" {
		t.Fatalf("global limit: %d %s", r.status, r.raw)
	}
}

func TestUploadEventsShowOnlyTheTokensOwn(t *testing.T) {
	a := startIngest(t, withUploadTokens, func(c *ingest.Config) { c.MaxStreams = 1 })
	nc := a.nats.Connect(t)
	publish := func(id, fileID, sourceContext string) {
		t.Helper()
		b := fmt.Sprintf(`{"id":%q,"type":"vod.file_uploaded","time":"2026-12-05T10:00:00Z","data":{"fileId":%q,"sourceContext":%q}}`, id, fileID, sourceContext)
		if err := nc.Publish("vodpipe.events.vod.file_uploaded.none", []byte(b)); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// Published before the page opens its stream: alice's is replayed to her, bob's not.
	publish("e1", "bob-1", "user=bob")
	publish("e2", "alice-1", "user=alice")
	testharness.WaitFor(t, 5*time.Second, "ingest to receive both events", func() bool {
		return strings.Contains(string(a.do("GET", "/metrics", "", "", "").raw), "vodpipe_ingest_page_events_total 2\n")
	})
	// An API key has no user: it gets no page's events.
	if r := a.do("GET", "/upload/events", signKey, "", ""); r.status != http.StatusForbidden {
		t.Fatalf("events for an API key: %d %s", r.status, r.raw)
	}
	alice := a.mint(`{"user":"alice"}`)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", a.url+"/upload/events", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	// The streams are capped: a second page is told to come back later.
	if r := a.do("GET", "/upload/events", a.mint(`{"user":"carol"}`), "", ""); r.status != http.StatusServiceUnavailable {
		t.Fatalf("a stream over the cap: %d %s", r.status, r.raw)
	}
	publish("e3", "bob-2", "user=bob")
	publish("e4", "alice-2", "user=alice")
	var got []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !slices.Contains(got, "alice-2") {
		var ev struct {
			Data struct {
				FileID string `json:"fileId"`
			} `json:"data"`
		}
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && json.Unmarshal([]byte(data), &ev) == nil {
			got = append(got, ev.Data.FileID)
		}
	}
	if !slices.Equal(got, []string{"alice-1", "alice-2"}) {
		t.Fatalf("alice's page saw %v, want alice-1 and alice-2 only", got)
	}
}

// TestSecurityRequeueNeedsTheControlScope: running a dead letter's job
// again is the control scope's: a read key, a sign key (an application's
// backend) and no key are refused, and the dead letter stays; the control
// key requeues it, once.
func TestSecurityRequeueNeedsTheControlScope(t *testing.T) {
	a := startIngest(t)
	msg := []byte(`{"v":1,"id":"dl-sec-1","source":"file:///media/a.mp4"}`)
	if err := a.svc.Queue().DeadLetters.Publish(t.Context(), job.DeadLetter{JobID: "dl-sec-1", Code: "source_not_found", Reason: "gone"}, msg); err != nil {
		t.Fatal(err)
	}
	page, _, err := a.svc.Queue().DeadLetters.Page(t.Context(), 0, 10)
	if err != nil || len(page) != 1 {
		t.Fatalf("dead letters: %v %v", page, err)
	}
	path := fmt.Sprintf("/v1/dead-letters/%d/requeue", page[0].Seq)
	for key, want := range map[string]int{readerKey: http.StatusForbidden, signKey: http.StatusForbidden, "": http.StatusUnauthorized} {
		if r := a.do("POST", path, key, "", ""); r.status != want {
			t.Errorf("requeue with key %q: %d %s, want %d", key, r.status, r.raw, want)
		}
	}
	if r := a.do("GET", fmt.Sprintf("/v1/dead-letters/%d", page[0].Seq), adminKey, "", ""); r.status != http.StatusOK {
		t.Fatalf("the dead letter after the refused requeues: %d", r.status)
	}
	if r := a.do("POST", path, adminKey, "", ""); r.status != http.StatusOK || r.body["state"] != "queued" {
		t.Fatalf("requeue with the control key: %d %s", r.status, r.raw)
	}
	if r := a.do("POST", path, adminKey, "", ""); r.status != http.StatusNotFound {
		t.Errorf("a second requeue: %d, want 404 (the dead letter is gone)", r.status)
	}
}
