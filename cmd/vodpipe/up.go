package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/vodpipe/vodpipe/pkg/config"
	"github.com/vodpipe/vodpipe/pkg/ingest"
	"github.com/vodpipe/vodpipe/pkg/natsperm"
	"github.com/vodpipe/vodpipe/pkg/signer"
	"github.com/vodpipe/vodpipe/pkg/stack"
)

// runUp runs the whole system in this process until interrupted.
func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", "vodpipe-data", "folder for NATS's store and vodsim's objects")
	sourceRoot := fs.String("source-root", ".", "folder file:// sources may come from")
	ingestAddr := fs.String("ingest-addr", "127.0.0.1:8080", "ingest API listen address")
	vodsimAddr := fs.String("vodsim-addr", "127.0.0.1:8190", "vodsim listen address")
	workers := fs.Int("workers", 2, "worker instances")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	root, err := filepath.Abs(*sourceRoot)
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe up:", err)
		return 2
	}
	// The signing policy is ingest's (VODPIPE_SIGN_*): closed unless set.
	var signing struct{ signer.Policy }
	if err := config.Load(&signing); err != nil {
		fmt.Fprintln(stderr, "vodpipe up:", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	st, err := stack.Start(ctx, stack.Options{DataDir: *dataDir, SourceRoot: root, RedisURL: os.Getenv("VODPIPE_REDIS_URL"),
		APIKey: os.Getenv("VODPIPE_API_KEY"), Policy: &signing.Policy,
		Workers: *workers, IngestAddr: *ingestAddr, VodsimAddr: *vodsimAddr, Log: log})
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe up:", err)
		return 1
	}
	defer st.Close()
	resume := "JetStream key-value bucket"
	if os.Getenv("VODPIPE_REDIS_URL") != "" {
		resume = "Redis"
	}
	// The upload page's link carries a token minted as an application's backend would.
	var page string
	tok, err := ingest.NewClient(st.IngestURL, st.APIKey).UploadToken(ctx, ingest.UploadTokenRequest{User: "demo", TTLSeconds: 12 * 3600})
	if err != nil {
		page = fmt.Sprintf("(no upload token: %v)", err)
	} else {
		page = st.IngestURL + "/upload#token=" + tok.Token + "   (user demo, until " + tok.ExpiresAt.Format(time.RFC3339) + ")"
	}
	fmt.Fprintf(stdout, `vodpipe is up (Ctrl-C stops it)
  upload page  %s
  signing      procedures %s, storage regions %s, class ids %s, sub-app ids %s (VODPIPE_SIGN_*)
  ingest API   %s   (API key: %s)
  vodsim       http://%s   (VOD endpoint; COS buckets dial here)
  NATS         %s   (guarded: one user per service; outside publishers: user publisher, password in %s)
  sources      file:// under %s
  resume state %s
try:
  VODPIPE_API_URL=%s VODPIPE_API_KEY=%s go run ./cmd/vodpipe submit --watch %s
`, page, signing.Procedures, signing.StorageRegions, signing.ClassIDs, signing.SubAppIDs, st.IngestURL, st.APIKey, st.VodsimAddr, st.NATSURL, st.NATSConfig(natsperm.Publisher).PasswordFile, root, resume, st.IngestURL, st.APIKey, root)
	select {
	case <-ctx.Done():
	case err := <-st.Errors():
		fmt.Fprintln(stderr, "vodpipe up:", err)
		return 1
	}
	fmt.Fprintln(stdout, "vodpipe: stopping")
	return 0
}
