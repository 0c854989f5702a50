package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// `vodpipe up` reads the services' own variables: both keys of
// VODPIPE_API_KEYS work at ingest and notify and no key is made, the signing
// policy refuses a task flow outside it, VODPIPE_MAX_BODY bounds a body,
// notify listens on VODPIPE_NOTIFY_HTTP_ADDR, the upload-token keys are
// used (the banner's upload page link carries a token signed with them),
// and vodsim serves TLS on VODPIPE_VODSIM_TLS_ADDR; the banner names each
// address.
func TestUpReadsTheServicesVariables(t *testing.T) {
	const keyA, keyB = "first-key-0123456789", "second-key-0123456789"
	notifyAddr, tlsAddr := freeAddr(t), freeAddr(t)
	for k, v := range map[string]string{
		"VODPIPE_API_KEYS":          "a:" + keyA + ",b:" + keyB,
		"VODPIPE_SIGN_PROCEDURES":   "LongVideoPreset",
		"VODPIPE_MAX_BODY":          "1024",
		"VODPIPE_NOTIFY_HTTP_ADDR":  notifyAddr,
		"VODPIPE_VODSIM_TLS_ADDR":   tlsAddr,
		"VODPIPE_UPLOAD_TOKEN_KEYS": "upload-token-key-0123456789abcdef-0123",
	} {
		t.Setenv(k, v)
	}
	b := startUp(t, "--ingest-addr", "127.0.0.1:0", "--workers-addr", "127.0.0.1:0", "--vodsim-addr", "127.0.0.1:0", "--workers", "1")

	for _, want := range []string{"from VODPIPE_API_KEYS (2; none made)", "signed with VODPIPE_UPLOAD_TOKEN_KEYS",
		"notify API    http://" + notifyAddr, "vodsim TLS    https://" + tlsAddr, "MAP vod2.qcloud.com " + tlsAddr} {
		if !strings.Contains(b.text, want) {
			t.Errorf("banner lacks %q:\n%s", want, b.text)
		}
	}
	ingestURL := b.field(t, `ingest API +(\S+)`)
	// up holds none of the operator's keys, and still prints a working
	// link to its upload page: a token minted in process.
	pageToken := b.field(t, `/upload#token=(ut1\.\S+)`)
	tests := []struct {
		name, method, url, key, body string
		want                         int
	}{
		{"the upload page's token", "POST", ingestURL + "/v1/signatures", pageToken, `{}`, http.StatusOK},
		{"first key at ingest", "GET", ingestURL + "/v1/jobs", keyA, "", http.StatusOK},
		{"second key at ingest", "GET", ingestURL + "/v1/jobs", keyB, "", http.StatusOK},
		{"first key at notify", "GET", "http://" + notifyAddr + "/v1/subscriptions", keyA, "", http.StatusOK},
		{"second key at notify", "GET", "http://" + notifyAddr + "/v1/subscriptions", keyB, "", http.StatusOK},
		{"another key", "GET", ingestURL + "/v1/jobs", "not-a-configured-key", "", http.StatusUnauthorized},
		{"task flow in the policy", "POST", ingestURL + "/v1/signatures", keyA, `{"procedure":"LongVideoPreset"}`, http.StatusOK},
		{"task flow outside the policy", "POST", ingestURL + "/v1/signatures", keyA, `{"procedure":"SimpleAesEncryptPreset"}`, http.StatusForbidden},
		{"body over VODPIPE_MAX_BODY", "POST", ingestURL + "/v1/jobs", keyA, `{"id":"big","source":"https://example.com/` + strings.Repeat("a", 2048) + `"}`, http.StatusRequestEntityTooLarge},
		{"worker health", "GET", b.field(t, `workers .*?(http://\S+)/worker-1/`) + "/worker-1/healthz", "", "", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, tt.url, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tt.key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s: %d, want %d: %s", tt.method, tt.url, resp.StatusCode, tt.want, body)
			}
		})
	}

	// vodsim answers over TLS as VOD does to a browser (the certificate is self-signed).
	tc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "vod2.qcloud.com"}}}
	resp, err := tc.Get("https://" + tlsAddr + "/vodsim/files")
	if err != nil {
		t.Fatalf("vodsim over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("vodsim over TLS: GET /vodsim/files: %d", resp.StatusCode)
	}
}

// With no variable set, up makes its API key and upload-token key, says
// so, and runs a job through the embedded vodsim with the key pair it shares
// between ingest and vodsim.
func TestUpRunsAJobOnItsOwnKeys(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "clip.mp4"), bytes.Repeat([]byte("clip"), 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	b := startUp(t, "--ingest-addr", "127.0.0.1:0", "--notify-addr", "127.0.0.1:0", "--workers-addr", "", "--vodsim-addr", "127.0.0.1:0",
		"--vodsim-tls-addr", "127.0.0.1:0", "--workers", "1", "--source-root", root)
	for _, want := range []string{"(made at start, every scope: VODPIPE_API_KEYS is not set)", "tokens die with this process",
		"(VODPIPE_WORKER_HTTP_ADDR empty: not served)", "/upload#token=ut1.", "--ignore-certificate-errors"} {
		if !strings.Contains(b.text, want) {
			t.Errorf("banner lacks %q:\n%s", want, b.text)
		}
	}
	c := client.NewClient(b.field(t, `ingest API +(\S+)`), b.field(t, `API keys +(vp_\S+)`))
	if _, _, err := c.Submit(t.Context(), &job.Job{ID: "up-clip", Source: "file://" + filepath.Join(root, "clip.mp4")}, ""); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 30*time.Second, "the job completed", func() bool {
		v, err := c.Get(t.Context(), "up-clip")
		return err == nil && v.State == job.StateCompleted
	})
}

// upBanner is what a running `vodpipe up` printed before its first command hint.
type upBanner struct{ text string }

// field is the first submatch of re in the banner.
func (b upBanner) field(t *testing.T, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(b.text)
	if m == nil {
		t.Fatalf("banner lacks %s:\n%s", re, b.text)
	}
	return m[1]
}

// startUp runs `vodpipe up` with args until the test ends and returns its banner.
func startUp(t *testing.T, args ...string) upBanner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr lockedBuffer
	code := make(chan int, 1)
	go func() {
		code <- runUp(ctx, append([]string{"--data", t.TempDir()}, args...), pw, &stderr)
		pw.Close()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		cancel()
		for range lines { // drain until up has stopped
		}
		if c := <-code; c != 0 {
			t.Errorf("vodpipe up exited %d:\n%s", c, stderr.String())
		}
	})
	var banner strings.Builder
	deadline := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("vodpipe up ended before its banner:\n%s\n%s", banner.String(), stderr.String())
			}
			banner.WriteString(l + "\n")
			if l == "try:" {
				return upBanner{banner.String()}
			}
		case <-deadline:
			t.Fatalf("no banner within a minute:\n%s", stderr.String())
		}
	}
}

// freeAddr is a loopback address with a free port.
func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := testharness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}

// TestUpWithNoWorkers: `vodpipe up --workers 0` runs no worker (it ran
// two, the stack's default): the banner says jobs wait queued, and the
// workers' health address serves no worker. A negative count is refused.
func TestUpWithNoWorkers(t *testing.T) {
	addr := freeAddr(t)
	b := startUp(t, "--ingest-addr", "127.0.0.1:0", "--notify-addr", "127.0.0.1:0", "--workers-addr", addr, "--vodsim-addr", "127.0.0.1:0",
		"--vodsim-tls-addr", "", "--workers", "0", "--source-root", t.TempDir())
	if !strings.Contains(b.text, "none run here (--workers 0): jobs wait queued") {
		t.Errorf("banner:\n%s", b.text)
	}
	resp, err := http.Get("http://" + addr + "/worker-1/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("worker-1's health: %s, want 404 (no worker)", resp.Status)
	}
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"up", "--workers", "-1"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--workers") {
		t.Errorf("--workers -1: exit %d: %s", code, errOut.String())
	}
}

// TestSubmitHalvesAndPacesBatches: an ingest that takes at most 100 jobs
// a batch (VODPIPE_BATCH_MAX) refuses submit's default batch of 1000
// whole; submit sends it again in halves, keeps the smaller size, and
// every source is queued once; every request, halves included, waits for
// submit's pace (--rate).
func TestSubmitHalvesAndPacesBatches(t *testing.T) {
	t.Setenv("VODPIPE_BATCH_MAX", "100")
	b := startUp(t, "--ingest-addr", "127.0.0.1:0", "--notify-addr", "127.0.0.1:0", "--workers-addr", "", "--vodsim-addr", "127.0.0.1:0",
		"--vodsim-tls-addr", "", "--workers", "0", "--source-root", t.TempDir())
	list := filepath.Join(t.TempDir(), "list.txt")
	var lines strings.Builder
	for i := range 250 {
		fmt.Fprintf(&lines, "https://media.example.com/halves/%03d.mp4\n", i)
	}
	if err := os.WriteFile(list, []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	proxy, requests := countingProxy(t, b.field(t, `ingest API +(\S+)`))
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"submit", "--api", proxy, "--api-key", b.field(t, `API keys +(vp_\S+)`), "--json", "--list", list},
		&out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut.String())
	}
	var rows []summary
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil || len(rows) != 250 {
		t.Fatalf("%d rows: %v", len(rows), err)
	}
	for _, r := range rows {
		if r.Outcome != "queued" {
			t.Fatalf("row %+v", r)
		}
	}
	// The walk's one batch of 250 refused whole, its halves of 125 refused
	// too, their halves (62, 63, 62, 63) taken: 7 requests.
	if n := requests.Load(); n != 7 {
		t.Errorf("%d requests for 250 sources under a limit of 100, want 7", n)
	}

	// Each of those requests waits for the pace (--rate), the halves sent
	// again too: the log of a paced walk alternates pace and request.
	var (
		mu  sync.Mutex
		log []string
	)
	note := func(s string) {
		mu.Lock()
		log = append(log, s)
		mu.Unlock()
	}
	logged := hookedProxy(t, b.field(t, `ingest API +(\S+)`), func(*http.Request) { note("request") })
	c := client.NewClient(logged, b.field(t, `API keys +(vp_\S+)`))
	bt := batching{size: 1000, pace: func(ctx context.Context) error { note("pace"); return nil }}
	newJob := func(it *item) *job.Job { return &job.Job{V: 1, ID: it.id + "-paced", Source: it.source} }
	n, err := submitWalk(t.Context(), c, nil, list, newJob, bt, batchHooks{answered: func([]*item, client.BatchResponse) {}})
	if err != nil || n != 250 {
		t.Fatalf("paced walk: %d sources, %v", n, err)
	}
	if want := strings.Repeat("pace request ", 7); strings.Join(log, " ")+" " != want {
		t.Errorf("paced walk: %v, want pace before each of 7 requests", log)
	}
	if pacer(0) != nil || pacer(defaultBatchRate) == nil {
		t.Error("pacer: want none for 0 and one for the default rate")
	}
	for _, bad := range []string{"-1", "NaN"} {
		errOut.Reset()
		if code := run(t.Context(), []string{"submit", "--api", logged, "--rate", bad, "x.mp4"}, io.Discard, &errOut); code != 2 ||
			!strings.Contains(errOut.String(), "--rate") {
			t.Errorf("--rate %s: exit %d (%s), want a usage error", bad, code, errOut.String())
		}
	}
}
