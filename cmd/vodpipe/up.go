package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/vodpipe/vodpipe/pkg/natsperm"
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
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	st, err := stack.Start(ctx, stack.Options{DataDir: *dataDir, SourceRoot: root, RedisURL: os.Getenv("VODPIPE_REDIS_URL"),
		APIKey:  os.Getenv("VODPIPE_API_KEY"),
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
	fmt.Fprintf(stdout, `vodpipe is up (Ctrl-C stops it)
  ingest API   %s   (API key: %s)
  vodsim       http://%s   (VOD endpoint; COS buckets dial here)
  NATS         %s   (guarded: one user per service; outside publishers: user publisher, password in %s)
  sources      file:// under %s
  resume state %s
try:
  VODPIPE_API_URL=%s VODPIPE_API_KEY=%s go run ./cmd/vodpipe submit --watch %s
`, st.IngestURL, st.APIKey, st.VodsimAddr, st.NATSURL, st.NATSConfig(natsperm.Publisher).PasswordFile, root, resume, st.IngestURL, st.APIKey, root)
	select {
	case <-ctx.Done():
	case err := <-st.Errors():
		fmt.Fprintln(stderr, "vodpipe up:", err)
		return 1
	}
	fmt.Fprintln(stdout, "vodpipe: stopping")
	return 0
}
