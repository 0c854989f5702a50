package ingest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/ingest"
	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

const (
	adminKey  = "admin-key-0123456789"
	readerKey = "reader-key-0123456789"
	signKey   = "signer-key-0123456789"
)

type api struct {
	t    *testing.T
	url  string
	svc  *ingest.Service
	nats *testharness.NATS
	// openapi checks every answer against docs/openapi.json.
	openapi *testharness.OpenAPI
	// stop ends the service's ServeListener as SIGTERM does; stopped is
	// closed when it has returned.
	stop    context.CancelFunc
	stopped <-chan struct{}
}

func startIngest(t *testing.T, mod ...func(*ingest.Config)) *api {
	t.Helper()
	a := startIngestB(t, mod...)
	a.t = t
	return a
}

func startIngestB(t testing.TB, mod ...func(*ingest.Config)) *api {
	t.Helper()
	n := testharness.StartNATS(t)
	var keys ingest.APIKeys
	if err := keys.Decode("admin:" + adminKey + ",reader:" + readerKey + ":read,web:" + signKey + ":sign"); err != nil {
		t.Fatal(err)
	}
	cfg := ingest.Config{
		NATS: natsconf.NATS{URL: n.URL}, QueueConfig: ingest.QueueConfig{MaxAckPending: 100000},
		Credentials: config.Credentials{SecretID: testharness.VodsimSecretID, SecretKey: testharness.VodsimSecretKey},
		Policy: signer.Policy{Procedures: []string{"LongVideoPreset"}, StorageRegions: []string{"ap-guangzhou", "ap-chongqing"},
			MaxValidity: time.Hour},
		APIKeys: keys, BatchMax: 50, MaxBody: 1 << 20, SignRate: 1000, SignBurst: 1000,
		CORSOrigins: []string{"https://app.example"},
	}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := ingest.New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.ServeListener(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done; s.Close() })
	return &api{url: "http://" + l.Addr().String(), svc: s, nats: n, openapi: testharness.LoadOpenAPI(t, "openapi.json"),
		stop: cancel, stopped: done}
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (a *api) do(method, path, key, contentType, body string, headers ...string) reply {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	// Every answer of the API tests is checked against docs/openapi.json.
	a.openapi.CheckResponse(a.t, method, path, resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	return r
}

func (r reply) errorFields() []string {
	e, _ := r.body["error"].(map[string]any)
	var out []string
	fs, _ := e["fields"].([]any)
	for _, f := range fs {
		out = append(out, f.(map[string]any)["field"].(string))
	}
	sort.Strings(out)
	return out
}

func TestAuthFailures(t *testing.T) {
	a := startIngest(t)
	cases := []struct {
		name, method, path, key string
		status                  int
	}{
		{"no key", "GET", "/v1/jobs", "", 401},
		{"wrong key", "GET", "/v1/jobs", "nope-nope-nope", 401},
		{"reader cannot submit", "POST", "/v1/jobs", readerKey, 403},
		{"reader cannot cancel", "POST", "/v1/jobs/x/cancel", readerKey, 403},
		{"signer cannot read", "GET", "/v1/jobs", signKey, 403},
		{"reader can read", "GET", "/v1/jobs", readerKey, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := a.do(c.method, c.path, c.key, "application/json", `{}`)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.raw)
			}
			if c.status >= 400 {
				e, ok := r.body["error"].(map[string]any)
				if !ok || e["code"] == "" || e["message"] == "" {
					t.Fatalf("no JSON error body: %s", r.raw)
				}
			}
		})
	}
}

func TestValidationErrorsNameEachField(t *testing.T) {
	a := startIngest(t)
	cases := []struct {
		name   string
		ctype  string
		body   string
		status int
		fields []string
	}{
		{"malformed", "application/json", `{"source":`, 400, []string{"(message)"}},
		{"unknown field", "application/json", `{"source":"file:///a.mp4","colour":1}`, 400, []string{"colour"}},
		{"wrong type", "application/json", `{"source":"file:///a.mp4","priority":"high"}`, 400, []string{"priority"}},
		{"missing source", "application/json", `{"id":"x"}`, 400, []string{"source"}},
		{"several", "application/json", `{"id":"bad id","source":"ftp://h/a","procedure":"a b","storageRegion":"X","sourceContext":"` +
			strings.Repeat("s", 251) + `"}`, 400, []string{"id", "procedure", "source", "sourceContext", "storageRegion"}},
		{"traversal", "application/json", `{"source":"file:///data/../etc/passwd.mp4"}`, 400, []string{"source"}},
		{"wrong version", "application/json", `{"v":2,"source":"file:///a.mp4"}`, 400, []string{"v"}},
		{"content type", "text/plain", `{"source":"file:///a.mp4"}`, 415, nil},
		{"too large", "application/json", `{"source":"file:///a.mp4","sessionContext":"` + strings.Repeat("x", 1<<20) + `"}`, 413, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := a.do("POST", "/v1/jobs", adminKey, c.ctype, c.body)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.raw)
			}
			if got := r.errorFields(); c.fields != nil && strings.Join(got, ",") != strings.Join(c.fields, ",") {
				t.Fatalf("fields %v, want %v", got, c.fields)
			}
		})
	}
}

func TestIdempotentSubmit(t *testing.T) {
	a := startIngest(t)
	r1 := a.do("POST", "/v1/jobs", adminKey, "application/json", `{"id":"same-1","source":"file:///in/a.mp4"}`)
	r2 := a.do("POST", "/v1/jobs", adminKey, "application/json", `{"id":"same-1","source":"file:///in/other.mp4"}`)
	if r1.status != 201 || r2.status != 200 || r2.body["id"] != "same-1" {
		t.Fatalf("repeat by id: %d %d %s", r1.status, r2.status, r2.raw)
	}
	if src := r2.body["job"].(map[string]any)["source"]; src != "file:///in/a.mp4" {
		t.Fatalf("the repeat replaced the job: %v", src)
	}
	k1 := a.do("POST", "/v1/jobs", adminKey, "application/json", `{"source":"file:///in/b.mp4"}`, "Idempotency-Key", "key-1")
	k2 := a.do("POST", "/v1/jobs", adminKey, "application/json", `{"source":"file:///in/b.mp4"}`, "Idempotency-Key", "key-1")
	if k1.status != 201 || k2.status != 200 || k1.body["id"] != k2.body["id"] || k1.body["id"] == "" {
		t.Fatalf("repeat by Idempotency-Key: %d %v / %d %v", k1.status, k1.body["id"], k2.status, k2.body["id"])
	}
	// The stream's count is exact once each publish is acknowledged.
	st, err := a.nats.JetStream(t).Stream(t.Context(), queue.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	if si, err := st.Info(t.Context()); err != nil || si.State.Msgs != 2 {
		t.Fatalf("queued messages: %+v (%v), want 2", si.State, err)
	}
}

func TestBatchReportsEachItem(t *testing.T) {
	a := startIngest(t)
	a.do("POST", "/v1/jobs", adminKey, "application/json", `{"id":"exists-1","source":"file:///in/a.mp4"}`)
	arr := `[{"id":"b-1","source":"file:///in/1.mp4"},{"id":"exists-1","source":"file:///in/a.mp4"},{"id":"b-3","source":"gopher://x"},{"source":"file:///in/4.mp4","bogus":true}]`
	r := a.do("POST", "/v1/jobs:batch", adminKey, "application/json", arr)
	if r.status != 207 || r.body["queued"] != 1.0 || r.body["duplicate"] != 1.0 || r.body["invalid"] != 2.0 {
		t.Fatalf("array batch: %d %s", r.status, r.raw)
	}
	items := r.body["items"].([]any)
	want := []string{"queued", "duplicate", "invalid", "invalid"}
	for i, it := range items {
		m := it.(map[string]any)
		if m["result"] != want[i] || m["index"] != float64(i) {
			t.Fatalf("item %d = %v", i, m)
		}
	}
	if f := items[2].(map[string]any)["fields"].([]any)[0].(map[string]any)["field"]; f != "source" {
		t.Fatalf("invalid item names %v", f)
	}
	nd := "{\"id\":\"n-1\",\"source\":\"file:///in/n1.mp4\"}\n\n{\"id\":\"n-2\",\"source\":\"file:///in/n2.mp4\"}\n"
	r = a.do("POST", "/v1/jobs:batch", adminKey, "application/x-ndjson", nd)
	if r.status != 200 || r.body["queued"] != 2.0 {
		t.Fatalf("ndjson batch: %d %s", r.status, r.raw)
	}
	var big bytes.Buffer
	for i := range 51 {
		fmt.Fprintf(&big, "{\"source\":\"file:///in/%d.mp4\"}\n", i)
	}
	if r := a.do("POST", "/v1/jobs:batch", adminKey, "application/x-ndjson", big.String()); r.status != 413 {
		t.Fatalf("over-limit batch: %d", r.status)
	}
	if r := a.do("POST", "/v1/jobs:batch", adminKey, "application/json", `[]`); r.status != 400 {
		t.Fatalf("empty batch: %d", r.status)
	}
}

func TestGetListAndControlErrors(t *testing.T) {
	a := startIngest(t)
	for i := range 5 {
		a.do("POST", "/v1/jobs", adminKey, "application/json", fmt.Sprintf(`{"id":"l-%d","source":"file:///in/%d.mp4"}`, i, i))
	}
	if r := a.do("GET", "/v1/jobs/l-3", readerKey, "", ""); r.status != 200 || r.body["state"] != "queued" {
		t.Fatalf("get: %d %s", r.status, r.raw)
	}
	// The runs that count against the job's bound are shown.
	q, err := queue.Open(t.Context(), a.nats.JetStream(t), queue.Config{MaxAckPending: 100000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Statuses.Update(t.Context(), "l-3", func(s *job.Status) error { s.Runs = 2; return nil }); err != nil {
		t.Fatal(err)
	}
	if r := a.do("GET", "/v1/jobs/l-3", readerKey, "", ""); r.status != 200 || r.body["runs"] != 2.0 {
		t.Fatalf("get after 2 runs: %d %s", r.status, r.raw)
	}
	if r := a.do("GET", "/v1/jobs/nope", readerKey, "", ""); r.status != 404 {
		t.Fatalf("get unknown: %d", r.status)
	}
	var ids []string
	cursor := ""
	for page := 0; page < 5; page++ {
		r := a.do("GET", "/v1/jobs?state=queued&limit=2"+cursor, readerKey, "", "")
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.raw)
		}
		for _, j := range r.body["jobs"].([]any) {
			ids = append(ids, j.(map[string]any)["id"].(string))
		}
		next, _ := r.body["nextCursor"].(string)
		if next == "" {
			break
		}
		cursor = "&cursor=" + next
	}
	if strings.Join(ids, ",") != "l-0,l-1,l-2,l-3,l-4" {
		t.Fatalf("paged ids = %v", ids)
	}
	// Counts by state, in one read.
	if r := a.do("GET", "/v1/jobs:counts", readerKey, "", ""); r.status != 200 || r.body["all"] != 5.0 ||
		r.body["states"].(map[string]any)["queued"] != 5.0 || r.body["states"].(map[string]any)["running"] != 0.0 {
		t.Fatalf("counts: %d %s", r.status, r.raw)
	}
	if r := a.do("GET", "/v1/jobs:counts?state=queued", readerKey, "", ""); r.status != 400 || strings.Join(r.errorFields(), ",") != "state" {
		t.Fatalf("counts with a query: %d %s", r.status, r.raw)
	}
	// Counts are the read scope's: no key, and a key that may only sign, are refused.
	if r := a.do("GET", "/v1/jobs:counts", "", "", ""); r.status != 401 {
		t.Fatalf("counts without a key: %d %s", r.status, r.raw)
	}
	if r := a.do("GET", "/v1/jobs:counts", signKey, "", ""); r.status != 403 {
		t.Fatalf("counts with a sign-only key: %d %s", r.status, r.raw)
	}
	// A cursor belongs to its listing: another filter's, a forged or an
	// overflowing one is refused, naming the cursor.
	first := a.do("GET", "/v1/jobs?state=queued&limit=2", readerKey, "", "")
	for _, c := range []string{first.body["nextCursor"].(string) + "&state=running",
		base64.RawURLEncoding.EncodeToString([]byte(":18446744073709551615")), "not-base64!", "cXVldWVk"} {
		if r := a.do("GET", "/v1/jobs?limit=2&cursor="+c, readerKey, "", ""); r.status != 400 || strings.Join(r.errorFields(), ",") != "cursor" {
			t.Fatalf("cursor %q: %d %s", c, r.status, r.raw)
		}
	}
	if r := a.do("GET", "/v1/jobs?state=bogus&size=3", readerKey, "", ""); r.status != 400 || strings.Join(r.errorFields(), ",") != "size,state" {
		t.Fatalf("bad query: %d %s", r.status, r.raw)
	}
	if r := a.do("POST", "/v1/jobs/nope/pause", adminKey, "", ""); r.status != 404 {
		t.Fatalf("pause unknown: %d", r.status)
	}
	if r := a.do("POST", "/v1/jobs/l-1/resume", adminKey, "", ""); r.status != 409 {
		t.Fatalf("resume of a queued job: %d %s", r.status, r.raw)
	}
	if r := a.do("POST", "/v1/jobs/l-1/pause", adminKey, "", ""); r.status != 202 {
		t.Fatalf("pause: %d %s", r.status, r.raw)
	}
}

func TestSignaturesPolicyRateLimitAndCORS(t *testing.T) {
	a := startIngest(t, func(c *ingest.Config) { c.SignRate, c.SignBurst = 0.001, 3 })
	sim := testharness.StartVodsim(t)
	r := a.do("POST", "/v1/signatures", signKey, "application/json", `{"procedure":"LongVideoPreset","oneTime":true,"sourceContext":"user=7"}`)
	if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("sign: %d %s", r.status, r.raw)
	}
	sig := r.body["signature"].(string)
	// vodsim (the VOD emulator with the same app key) accepts it once.
	fixed := func(context.Context) (string, error) { return sig, nil }
	size := int64(1)
	if _, err := sim.VODClient().Apply(t.Context(), fixed, vod.ApplyRequest{VideoName: "a", VideoType: "mp4", VideoSize: &size}); err != nil {
		t.Fatalf("vodsim refused the signature: %v", err)
	}
	if r := a.do("POST", "/v1/signatures", signKey, "application/json", `{"procedure":"NotAllowed"}`); r.status != 403 ||
		!strings.Contains(string(r.raw), "procedure") {
		t.Fatalf("outside policy: %d %s", r.status, r.raw)
	}
	if r := a.do("POST", "/v1/signatures", signKey, "application/json", `{"colour":"red"}`); r.status != 429 && r.status != 400 {
		t.Fatalf("unknown field: %d %s", r.status, r.raw)
	}
	if r := a.do("POST", "/v1/signatures", signKey, "application/json", `{}`); r.status != 429 {
		t.Fatalf("rate limit: %d %s", r.status, r.raw)
	}
	pre := a.do("OPTIONS", "/v1/signatures", "", "", "", "Origin", "https://app.example", "Access-Control-Request-Method", "POST")
	if pre.status != 204 || pre.header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(pre.header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", pre.status, pre.header)
	}
	other := a.do("OPTIONS", "/v1/signatures", "", "", "", "Origin", "https://evil.example")
	if other.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS allowed an unknown origin")
	}
}

// The routes served are exactly the ones docs/openapi.json describes.
func TestRoutesMatchOpenAPI(t *testing.T) {
	a := startIngest(t)
	documented, served := a.openapi.Routes(), a.svc.Routes()
	sort.Strings(served)
	if strings.Join(documented, "\n") != strings.Join(served, "\n") {
		t.Fatalf("OpenAPI paths:\n%s\n\nserved routes:\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}
}

// TestDeadLettersThroughTheAPI: the dead-letter stream read page by page
// (messages left out), one entry whole with its message, and bad requests
// answered 400 naming the field or 404.
func TestDeadLettersThroughTheAPI(t *testing.T) {
	a := startIngest(t)
	q, err := queue.Open(t.Context(), a.nats.JetStream(t), queue.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		d := job.DeadLetter{JobID: fmt.Sprintf("bad-%d", i), Code: "invalid_message", Reason: fmt.Sprintf("reason %d", i), Attempt: 1, StreamSeq: uint64(100 + i)}
		if err := q.DeadLetters.Publish(t.Context(), d, []byte(fmt.Sprintf(`{"id":"bad-%d","source":42}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	c := client.NewClient(a.url, readerKey)
	var got []job.DeadLetterEntry
	pages := 0
	for after := uint64(0); ; pages++ {
		page, err := c.DeadLetters(t.Context(), after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.DeadLetters {
			if e.Message != nil || e.RawMessage != nil {
				t.Fatalf("listed dead letter %d carries its message", e.Seq)
			}
		}
		got = append(got, page.DeadLetters...)
		if page.Next == 0 {
			break
		}
		after = page.Next
	}
	if len(got) != 5 || pages != 2 {
		t.Fatalf("%d dead letters in %d pages after the first, want 5 in pages of 2: %+v", len(got), pages, got)
	}
	for i, e := range got {
		if e.JobID != fmt.Sprintf("bad-%d", i) || e.Reason != fmt.Sprintf("reason %d", i) || e.Code != "invalid_message" || (i > 0 && e.Seq <= got[i-1].Seq) {
			t.Fatalf("dead letter %d: %+v", i, e)
		}
	}
	if _, err := c.DeadLetter(t.Context(), got[3].Seq); err == nil {
		t.Fatal("a read key got a whole dead letter, message included; that needs the control scope")
	}
	one, err := client.NewClient(a.url, adminKey).DeadLetter(t.Context(), got[3].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if one.JobID != "bad-3" || string(one.Message) != `{"id":"bad-3","source":42}` || one.StreamSeq != 103 {
		t.Fatalf("dead letter %d: %+v (message %s)", got[3].Seq, one, one.Message)
	}

	for path, field := range map[string]string{
		"/v1/dead-letters?limit=0":  "limit",
		"/v1/dead-letters?after=-1": "after",
		"/v1/dead-letters?afetr=3":  "afetr",
		"/v1/dead-letters/abc":      "seq",
		"/v1/dead-letters/0":        "seq",
	} {
		r := a.do("GET", path, adminKey, "", "")
		if r.status != http.StatusBadRequest || !slices.Contains(r.errorFields(), field) {
			t.Errorf("GET %s: %d %s, want 400 naming %s", path, r.status, r.raw, field)
		}
	}
	if r := a.do("GET", "/v1/dead-letters?after=18446744073709551615", readerKey, "", ""); r.status != http.StatusOK || !strings.Contains(string(r.raw), `"deadLetters":[]`) {
		t.Errorf("after the largest seq: %d %s, want an empty page", r.status, r.raw)
	}
	// An entry gone (expired, removed) is skipped; one that is not a dead
	// letter is listed as undecodable instead of hiding the rest.
	js := a.nats.JetStream(t)
	dlq, err := js.Stream(t.Context(), queue.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := dlq.DeleteMsg(t.Context(), got[1].Seq); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), queue.DLQPrefix+".junk", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	all, err := c.DeadLetters(t.Context(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(all.DeadLetters); n != 5 || all.DeadLetters[1].JobID != "bad-2" || all.DeadLetters[4].Code != "undecodable" || all.Next != 0 {
		t.Fatalf("after a removal and a stranger: %+v", all)
	}
	if r := a.do("GET", "/v1/dead-letters/999", adminKey, "", ""); r.status != http.StatusNotFound {
		t.Errorf("unknown dead letter: %d %s", r.status, r.raw)
	}
	if r := a.do("GET", "/v1/dead-letters", signKey, "", ""); r.status != http.StatusForbidden {
		t.Errorf("a key without the read scope: %d", r.status)
	}
}

// Every 4xx a field causes names it in fields, whatever refused it: the
// JSON decoder, VOD's signature limits or the signing policy.
func TestFieldRefusalsNameTheField(t *testing.T) {
	a := startIngest(t)
	for _, tc := range []struct {
		body   string
		status int
		code   string
		field  string
	}{
		{`{"sourceContext":"` + strings.Repeat("x", 251) + `"}`, 400, "invalid_request", "sourceContext"},
		{`{"colour":"red"}`, 400, "unknown_field", "colour"},
		{`{"classId":"seven"}`, 400, "invalid_field", "classId"},
		{`{"oneTime":1}`, 400, "invalid_field", "oneTime"},
		{`{"procedure":"NotAllowed"}`, 403, "policy_refused", "procedure"},
	} {
		r := a.do("POST", "/v1/signatures", signKey, "application/json", tc.body)
		if r.status != tc.status || r.body["error"].(map[string]any)["code"] != tc.code || !slices.Equal(r.errorFields(), []string{tc.field}) {
			t.Errorf("%.40s: %d %s, want %d %s naming %s", tc.body, r.status, r.raw, tc.status, tc.code, tc.field)
		}
	}
}

// The error codes docs/openapi.json lists are the table's, all of them.
func TestOpenAPIListsEveryErrorCode(t *testing.T) {
	b, err := os.ReadFile("../../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas struct {
				Error struct {
					Properties struct {
						Error struct {
							Properties struct {
								Code struct {
									Enum []string `json:"enum"`
								} `json:"code"`
							} `json:"properties"`
						} `json:"error"`
					} `json:"properties"`
				} `json:"Error"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	got := doc.Components.Schemas.Error.Properties.Error.Properties.Code.Enum
	if !slices.Equal(got, httpapi.Codes()) {
		t.Fatalf("OpenAPI error codes = %v\nwant httpapi.Codes() = %v", got, httpapi.Codes())
	}
}

// With VODPIPE_INGEST_ADMIN_ADDR, /metrics is served there and not on the
// API's address (which the chart's Ingress may publish); the probes answer
// on both. An admin address that cannot be listened on stops the service
// with its error instead of serving without metrics.
func TestMetricsOnTheAdminListener(t *testing.T) {
	p, err := testharness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	adminURL := "http://127.0.0.1:" + strconv.Itoa(p)
	a := startIngest(t, func(c *ingest.Config) { c.AdminAddr = "127.0.0.1:" + strconv.Itoa(p) })
	if r := a.do("GET", "/metrics", adminKey, "", ""); r.status != http.StatusNotFound {
		t.Errorf("GET /metrics on the API's address: %d, want 404", r.status)
	}
	if r := a.do("GET", "/readyz", "", "", ""); r.status != http.StatusOK {
		t.Errorf("GET /readyz on the API's address: %d", r.status)
	}
	var body []byte
	testharness.WaitFor(t, 5*time.Second, "the admin listener's /metrics", func() bool {
		resp, err := http.Get(adminURL + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK
	})
	if !strings.Contains(string(body), "vodpipe_build_info{") {
		t.Fatalf("admin /metrics lacks vodpipe_build_info:\n%s", body)
	}
	if resp, err := http.Get(adminURL + "/v1/jobs"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("the admin listener serves the API: GET /v1/jobs %d", resp.StatusCode)
		}
	}

	// Its address taken: ServeListener returns the listen error.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	b := startIngestB(t)
	_ = b // a running ingest for its NATS; a second service on that NATS:
	s, err := ingest.New(t.Context(), ingest.Config{NATS: natsconf.NATS{URL: b.nats.URL},
		Credentials: config.Credentials{SecretID: testharness.VodsimSecretID, SecretKey: testharness.VodsimSecretKey},
		AdminAddr:   taken.Addr().String()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServeListener(t.Context(), l) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "admin listener") {
			t.Fatalf("ServeListener with its admin address taken: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ingest kept serving without its admin listener")
	}
}
