package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/natsperm"
	"github.com/vodpipe/vodpipe/internal/service"
	"github.com/vodpipe/vodpipe/internal/stack"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// runUp runs the whole system in this process until interrupted. It is
// configured like the services it runs: each reads its own variables
// (stack.LoadConfigs), and up's flags override where they listen.
func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", "vodpipe-data", "folder for NATS's store and vodsim's objects")
	workers := fs.Int("workers", 2, "worker instances (each runs VODPIPE_WORKER_JOBS jobs); 0 runs none: jobs wait queued")
	// Each setting is its flag when given, else its variable when set, else
	// the flag's default: loopback, where a service's default is every interface.
	settings := []struct {
		flag, env, def, usage string
		dst                   func(*stack.Configs) *string
		val                   *string
	}{
		{"ingest-addr", "VODPIPE_INGEST_HTTP_ADDR", "127.0.0.1:8080", "ingest API listen address",
			func(c *stack.Configs) *string { return &c.Ingest.HTTPAddr }, nil},
		{"notify-addr", "VODPIPE_NOTIFY_HTTP_ADDR", "127.0.0.1:8081", "notify API listen address",
			func(c *stack.Configs) *string { return &c.Notify.HTTPAddr }, nil},
		{"workers-addr", "VODPIPE_WORKER_HTTP_ADDR", "127.0.0.1:8082", "listen address of the workers' health and metrics (empty: none)",
			func(c *stack.Configs) *string { return &c.Worker.HTTPAddr }, nil},
		{"vodsim-addr", "VODPIPE_VODSIM_ADDR", "127.0.0.1:8190", "vodsim listen address",
			func(c *stack.Configs) *string { return &c.Vodsim.Addr }, nil},
		{"vodsim-tls-addr", "VODPIPE_VODSIM_TLS_ADDR", "127.0.0.1:8443", "vodsim listen address over TLS, for browsers (empty: none)",
			func(c *stack.Configs) *string { return &c.Vodsim.TLSAddr }, nil},
		{"source-root", "VODPIPE_SOURCE_ROOT", ".", "folder file:// sources may come from",
			func(c *stack.Configs) *string { return &c.Worker.Root }, nil},
	}
	for i, s := range settings {
		settings[i].val = fs.String(s.flag, s.def, s.usage+" (else $"+s.env+")")
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *workers < 0 {
		fmt.Fprintln(stderr, "vodpipe up: --workers: a number of workers, 0 or more (0: none, jobs wait queued)")
		return 2
	}
	cfgs, err := stack.LoadConfigs()
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe up:", err)
		return 2
	}
	given := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { given[f.Name] = true })
	for _, s := range settings {
		if _, set := os.LookupEnv(s.env); given[s.flag] || !set {
			*s.dst(cfgs) = *s.val
		}
	}
	if cfgs.Worker.Root, err = filepath.Abs(cfgs.Worker.Root); err != nil {
		fmt.Fprintln(stderr, "vodpipe up:", err)
		return 2
	}
	applyUpDefaults(cfgs, stderr)

	// Logged as the services log: VODPIPE_LOG_LEVEL and VODPIPE_LOG_FORMAT.
	var lc service.LogConfig
	err = config.Load(&lc)
	var log *slog.Logger
	if err == nil {
		log, err = lc.Logger(stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe up:", err)
		return 2
	}
	st, err := stack.Start(ctx, stack.Options{Configs: cfgs, DataDir: *dataDir, Workers: *workers, NoWorkers: *workers == 0, Log: log})
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe up:", err)
		return 1
	}
	defer st.Close()
	printBanner(ctx, stdout, st, cfgs, *workers)
	select {
	case <-ctx.Done():
	case err := <-st.Errors():
		fmt.Fprintln(stderr, "vodpipe up:", err)
		return 1
	}
	fmt.Fprintln(stdout, "vodpipe: stopping")
	return 0
}

// applyUpDefaults sets what up decides unless its variable is set: the
// upload page on, and the embedded vodsim as VOD unless VODPIPE_VOD_ENDPOINT
// or VODPIPE_COS_DIAL_ADDR names another. NATS variables do not apply: up
// runs its own NATS.
func applyUpDefaults(c *stack.Configs, stderr io.Writer) {
	if _, set := os.LookupEnv("VODPIPE_UPLOAD_PAGE"); !set {
		c.Ingest.UploadPage = true
	}
	_, endpoint := os.LookupEnv("VODPIPE_VOD_ENDPOINT")
	_, dial := os.LookupEnv("VODPIPE_COS_DIAL_ADDR")
	if !endpoint && !dial {
		c.Worker.VODEndpoint = ""
	}
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "VODPIPE_NATS_") {
			fmt.Fprintf(stderr, "vodpipe up: %s is not used: up runs its own NATS server\n", name)
		}
	}
}

// printBanner says every address up serves, with the keys it made and how
// to open the upload page in a browser.
func printBanner(ctx context.Context, w io.Writer, st *stack.Stack, c *stack.Configs, workers int) {
	apiKey, keys := "$VODPIPE_API_KEY", fmt.Sprintf("from VODPIPE_API_KEYS (%d; none made)", len(c.Ingest.APIKeys))
	if st.APIKey != "" {
		apiKey, keys = st.APIKey, st.APIKey+"   (made at start, every scope: VODPIPE_API_KEYS is not set)"
	}
	tokens := "signed with VODPIPE_UPLOAD_TOKEN_KEYS"
	if st.UploadTokenKeysMade {
		tokens = "signed with a key made at start: tokens die with this process (set VODPIPE_UPLOAD_TOKEN_KEYS to keep them)"
	}
	pageURL, page := uploadPage(ctx, st, c)
	wk := "(VODPIPE_WORKER_HTTP_ADDR empty: not served)"
	if workers == 0 {
		wk = "none run here (--workers 0): jobs wait queued for workers started elsewhere"
	} else if st.WorkersURL != "" {
		wk = st.WorkersURL + "/worker-1/healthz ... /worker-N/ (healthz, readyz, metrics)"
	}
	vod := "http://" + st.VodsimAddr + "   (VOD endpoint; COS buckets dial here)"
	if !st.EmbeddedVOD {
		vod = "http://" + st.VodsimAddr + "   (workers use VODPIPE_VOD_ENDPOINT " + c.Worker.VODEndpoint + ", not vodsim)"
	}
	tls := "(none: VODPIPE_VODSIM_TLS_ADDR or -vodsim-tls-addr is empty)"
	if st.VodsimTLSAddr != "" {
		tls = "https://" + st.VodsimTLSAddr + "   (vod2.qcloud.com and the COS bucket hosts for browsers; certificate: " + certOrigin(c) + ")"
	}
	resume := "JetStream key-value bucket"
	if c.Worker.Redis.URL != "" || len(c.Worker.Redis.Addrs) > 0 {
		resume = "Redis"
	}
	p := c.Ingest.Policy
	fmt.Fprintf(w, `vodpipe is up (Ctrl-C stops it); every service reads its VODPIPE_* variables, as on its own
  ingest API    %s   (/v1/..., /healthz, /readyz, /metrics)
  API keys      %s
  upload page   %s
  upload tokens %s
  signing       procedures %s, storage regions %s, class ids %s, sub-app ids %s (VODPIPE_SIGN_*)
  notify API    %s   (/v1/subscriptions, /v1/events, VOD's callback, /healthz, /readyz, /metrics)
  workers       %d × %d jobs; %s
  vodsim        %s
  vodsim TLS    %s
  NATS          %s   (embedded and guarded: one user per service; outside publishers: user publisher, inbox prefix _INBOX_publisher, password in %s)
  sources       file:// under %s
  resume state  %s
`, st.IngestURL, keys, page, tokens, p.Procedures, p.StorageRegions, p.ClassIDs, p.SubAppIDs,
		st.NotifyURL, workers, max(c.Worker.Jobs, 1), wk, vod, tls,
		st.NATSURL, st.NATSConfig(natsperm.Publisher).PasswordFile, c.Worker.Root, resume)
	if c.Ingest.UploadPage && st.VodsimTLSAddr != "" && st.EmbeddedVOD {
		fmt.Fprintf(w, `open the upload page in a browser: its web SDK calls VOD at https://vod2.qcloud.com, here vodsim
over TLS, and the COS buckets over http as the page is; a throwaway profile keeps these flags from your own
(the page needs the SDK: npm ci --prefix %s):
  chromium --user-data-dir="$(mktemp -d)" --ignore-certificate-errors \
    --host-resolver-rules="MAP vod2.qcloud.com %[2]s,MAP vod2.dnsv1.com %[2]s,MAP *.myqcloud.com %[3]s,EXCLUDE 127.0.0.1" \
    '%[4]s'
`, c.Ingest.WebDir, st.VodsimTLSAddr, st.VodsimAddr, pageURL)
	}
	fmt.Fprintf(w, "try:\n  VODPIPE_API_URL=%s VODPIPE_API_KEY=%s VODPIPE_NOTIFY_URL=%s go run ./cmd/vodpipe submit --watch %s\n",
		st.IngestURL, apiKey, st.NotifyURL, c.Worker.Root)
}

// uploadPage is the page's link and its banner line. The link carries a
// token minted as an application's backend would: through the API with the
// key made at start, or in process when the operator's own keys are set
// (up holds none of them).
func uploadPage(ctx context.Context, st *stack.Stack, c *stack.Configs) (link, line string) {
	link = st.IngestURL + "/upload#token=<token>"
	if !c.Ingest.UploadPage {
		return link, "off (VODPIPE_UPLOAD_PAGE=false)"
	}
	ttl := c.Ingest.UploadTokenMaxTTL
	if ttl <= 0 {
		ttl = time.Hour
	}
	req := client.UploadTokenRequest{User: "demo", TTLSeconds: int64(ttl / time.Second)}
	var (
		tok client.UploadTokenResponse
		err error
	)
	if st.APIKey != "" {
		tok, err = client.NewClient(st.IngestURL, st.APIKey).UploadToken(ctx, req)
	} else {
		var bad []job.FieldError
		if tok, bad, err = st.Ingest.MintUploadToken("vodpipe-up", req); err == nil && len(bad) > 0 {
			err = fmt.Errorf("%s: %s", bad[0].Field, bad[0].Reason)
		}
	}
	if err != nil {
		return link, fmt.Sprintf("%s   (no upload token: %v)", link, err)
	}
	link = st.IngestURL + "/upload#token=" + tok.Token
	return link, link + "   (user demo, until " + tok.ExpiresAt.Format(time.RFC3339) + ")"
}

// certOrigin says where vodsim's TLS certificate comes from.
func certOrigin(c *stack.Configs) string {
	if c.Vodsim.TLSCert != "" {
		return "VODPIPE_VODSIM_TLS_CERT"
	}
	return "self-signed at start"
}
