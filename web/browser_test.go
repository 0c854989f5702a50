// Package web holds the upload page's npm package (Tencent's web upload SDK
// and playwright-core) and the end-to-end test that drives the page in
// headless Chromium against vodsim.
package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/ingest"
	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/internal/notify/intake"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

const notifyKey = "notify-read-key-0123456789"

// browserResult is what e2e/upload.mjs prints.
type browserResult struct {
	OK       bool    `json:"ok"`
	Error    string  `json:"error"`
	Status   string  `json:"status"`
	PausedAt float64 `json:"pausedAt"` // the page's bar when paused
	// AtPause is what vodsim held once the pause had taken effect.
	AtPause struct {
		Bytes   int64 `json:"bytes"` // in the open multipart upload's parts
		Parts   []int `json:"parts"` // their numbers
		Uploads int   `json:"uploads"`
		Files   int   `json:"files"` // committed
	} `json:"atPause"`
	FileID     string `json:"fileId"`
	MediaURL   string `json:"mediaUrl"`
	CoverURL   string `json:"coverUrl"`
	Signatures int    `json:"signatures"`
	Event      *struct {
		FileID          string `json:"fileId"`
		SourceContext   string `json:"sourceContext"`
		ProcedureTaskID string `json:"procedureTaskId"`
	} `json:"event"`
	Logs []string `json:"logs"`
}

// requireBrowser fails (never skips) with the command that installs what is missing.
func requireBrowser(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: apt-get install -y nodejs npm (.ci/run does this)")
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("chromium is not installed: apt-get install -y chromium (.ci/run does this)")
	}
	for _, p := range []string{"node_modules/vod-js-sdk-v6/package.json", "node_modules/playwright-core/package.json"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing: run npm ci --prefix web (.ci/run does this)", p)
		}
	}
}

func writeRandom(t *testing.T, path string, size int, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

type pageEnv struct {
	sim     *testharness.Vodsim
	tlsAddr string
	pageURL string
}

// pageTokenKey signs the upload tokens of the test's ingest replicas.
const pageTokenKey = "page-token-key-0123456789abcdef-0123"

// backendKey is the application backend's API key: it mints upload tokens.
const backendKey = "backend-sign-key-0123456789"

func startPage(t *testing.T, policy signer.Policy) *pageEnv {
	t.Helper()
	n := testharness.StartNATS(t)
	// The layout is ingest's to create; notify, started first here, attaches to it.
	js := n.JetStream(t)
	if _, err := queue.Open(t.Context(), js, queue.Config{}); err != nil {
		t.Fatal(err)
	}
	// ingest's layout broker, which makes notify's consumers and streams.
	if _, err := queue.ServeLayout(js.Conn(), js, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	// notify receives vodsim's NewFileUpload callbacks and publishes them;
	// ingest passes the page's own on to it.
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	notifyURL := "http://" + nl.Addr().String()
	sim := testharness.StartVodsim(t, func(c *vodsim.Config) {
		c.Faults.Bandwidth = 2 << 20
		c.CallbackURL = notifyURL + "/v1/vod/callback?token=browser-callback-token"
	})
	tlsAddr := sim.StartTLS(t)
	ncfg := notify.Config{NATS: natsconf.NATS{URL: n.URL},
		IntakeConfig: intake.Config{CorrelationWait: -1, CallbackToken: "browser-callback-token"},
		FanoutConfig: fanout.Config{WebhookConfig: fanout.WebhookConfig{WebhookSecretKeys: []string{strings.Repeat("ab", 32)}}}}
	if err := ncfg.APIKeys.Decode("page:" + notifyKey + ":read"); err != nil {
		t.Fatal(err)
	}
	nsvc, err := notify.New(t.Context(), ncfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	nctx, ncancel := context.WithCancel(context.Background())
	ndone := make(chan struct{})
	go func() { _ = nsvc.ServeListener(nctx, nl); close(ndone) }()
	t.Cleanup(func() { ncancel(); <-ndone; nsvc.Close() })
	// The application's backend mints the token at one ingest replica (its
	// policy allows the task flow); the page is served by another, with the
	// policy given, that verifies it with the same key.
	open := signer.Allow{signer.Any}
	minter := startIngest(t, n, signer.Policy{MaxValidity: time.Hour, Procedures: open, StorageRegions: open})
	page := startIngest(t, n, policy)
	c := client.NewClient(minter, backendKey)
	tok, err := c.UploadToken(t.Context(), client.UploadTokenRequest{User: "alice", Procedure: "LongVideoPreset", TTLSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	return &pageEnv{sim: sim, tlsAddr: tlsAddr, pageURL: page + "/upload#token=" + tok.Token}
}

// startIngest runs an ingest replica with the upload page on and returns its URL.
func startIngest(t *testing.T, n *testharness.NATS, policy signer.Policy) string {
	t.Helper()
	cfg := ingest.Config{
		NATS:        natsconf.NATS{URL: n.URL},
		Credentials: config.Credentials{SecretID: testharness.VodsimSecretID, SecretKey: testharness.VodsimSecretKey},
		Policy:      policy, SignRate: 100, SignBurst: 100, BatchMax: 10, MaxBody: 1 << 20,
		UploadTokenConfig: ingest.UploadTokenConfig{UploadTokenKeys: []string{pageTokenKey}, UploadTokenSignRate: 100, UploadTokenSignBurst: 100},
		PageConfig:        ingest.PageConfig{UploadPage: true, WebDir: "."},
	}
	if err := cfg.APIKeys.Decode("backend:" + backendKey + ":sign"); err != nil {
		t.Fatal(err)
	}
	svc, err := ingest.New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = svc.ServeListener(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done; svc.Close() })
	return "http://" + l.Addr().String()
}

func (e *pageEnv) drive(t *testing.T, mode, video, cover string) browserResult {
	t.Helper()
	out := filepath.Join("testdata", "output")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(out)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "e2e/upload.mjs")
	cmd.Env = append(os.Environ(), "PAGE_URL="+e.pageURL, "VOD_TLS_ADDR="+e.tlsAddr, "COS_ADDR="+e.sim.Addr,
		"VIDEO="+video, "COVER="+cover, "OUT="+abs, "MODE="+mode, "EXPECT_EVENT=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("browser script: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	var r browserResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("browser output: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if !r.OK {
		t.Fatalf("in the page: %s (status %q)\nconsole:\n%s", r.Error, r.Status, strings.Join(r.Logs, "\n"))
	}
	return r
}

func TestBrowserUploadWithPauseAndResume(t *testing.T) {
	requireBrowser(t)
	open := signer.Allow{signer.Any}
	e := startPage(t, signer.Policy{MaxValidity: time.Hour, Procedures: open, StorageRegions: open})
	dir := t.TempDir()
	// 18 MiB is three parts for the SDK (8, 8 and 2 MiB), sent side by side.
	// Through vodsim's 2 MiB/s the 2 MiB part is stored at about 3 s; the
	// script then pauses, with vodsim slowed to a trickle until the pause
	// has landed.
	video := writeRandom(t, filepath.Join(dir, "clip.mp4"), 18<<20, 1)
	writeRandom(t, filepath.Join(dir, "cover.jpg"), 30<<10, 2)
	r := e.drive(t, "upload", filepath.Join(dir, "clip.mp4"), filepath.Join(dir, "cover.jpg"))
	// The pause came mid-upload: a part stored, nothing committed.
	if p := r.AtPause; p.Files != 0 || p.Uploads != 1 || p.Bytes == 0 || p.Bytes >= int64(len(video)) {
		t.Fatalf("at the pause vodsim held %+v of a %d-byte video", p, len(video))
	}
	t.Logf("paused with %d of %d bytes stored (the page's bar read %v %%)", r.AtPause.Bytes, len(video), r.PausedAt)
	files := e.sim.Files()
	if len(files) != 1 || files[0].FileID != r.FileID || files[0].MediaURL != r.MediaURL || r.CoverURL == "" {
		t.Fatalf("page shows %+v, vodsim committed %+v", r, files)
	}
	if files[0].SourceContext != "user=alice" || files[0].ProcedureTaskID == "" {
		t.Fatalf("file = %+v", files[0])
	}
	// VOD's event reached the page through notify's stream.
	if r.Event == nil || r.Event.FileID != r.FileID || r.Event.SourceContext != "user=alice" ||
		r.Event.ProcedureTaskID != files[0].ProcedureTaskID {
		t.Fatalf("event on the page = %+v, want FileId %s and task %s", r.Event, r.FileID, files[0].ProcedureTaskID)
	}
	rc, err := e.sim.OpenObject(files[0].Bucket, files[0].VideoKey)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if sha256.Sum256(got) != sha256.Sum256(video) {
		t.Fatalf("vodsim stored %d bytes that differ from the %d-byte file", len(got), len(video))
	}
	// Every signature was one-time and used exactly once (apply, resume apply, refreshes, commit).
	uses := e.sim.SignatureUses()
	if len(uses) != r.Signatures || len(uses) < 3 {
		t.Fatalf("page fetched %d signatures, vodsim saw %d", r.Signatures, len(uses))
	}
	for _, u := range uses {
		if !u.OneTime || u.Uses != 1 {
			t.Fatalf("signature use %+v", u)
		}
	}
	// The resume continued the same VOD session instead of starting over.
	if s := e.sim.Sessions(); len(s) != 1 || s[0].Applies < 2 {
		t.Fatalf("sessions = %+v", s)
	}
	// ... and the same multipart upload: the parts stored before the pause
	// were stored once, so the resume did not send them again. (A part in
	// flight at the pause may be stored twice: the browser still hands vodsim
	// what its sockets held when the page cancelled, while the resume, not
	// finding that part yet, sends it again.)
	var stores map[int]int
	for _, tr := range e.sim.Traffic() {
		if tr.Key == files[0].VideoKey {
			stores = tr.PartStores
		}
	}
	for _, n := range r.AtPause.Parts {
		if stores[n] != 1 {
			t.Fatalf("part %d, stored before the pause, was stored %d times (all parts: %v): the resume sent it again",
				n, stores[n], stores)
		}
	}
}

func TestBrowserShowsRefusedSignature(t *testing.T) {
	requireBrowser(t)
	// The token names a task flow that the serving replica's signing policy
	// does not allow (tightened since the token was minted): every use of a
	// token is checked against the policy in force.
	e := startPage(t, signer.Policy{Procedures: []string{"OnlyThisOne"}, MaxValidity: time.Hour})
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "clip.mp4"), 1<<20, 3)
	r := e.drive(t, "refused", filepath.Join(dir, "clip.mp4"), "")
	if !strings.Contains(r.Status, "procedure") || !strings.Contains(r.Status, "not allowed") {
		t.Fatalf("page status = %q", r.Status)
	}
	if len(e.sim.Sessions()) != 0 {
		t.Fatal("an upload started without a signature")
	}
}
