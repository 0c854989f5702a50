// Command ingest runs vodpipe's job API and signature service, configured by
// the environment (prefix VODPIPE_). It is the only service given the Tencent SecretKey.
package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/vodpipe/vodpipe/pkg/config"
	"github.com/vodpipe/vodpipe/pkg/ingest"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var cfg ingest.Config
	if err := config.Load(&cfg); err != nil {
		log.Error("config", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := ingest.New(ctx, cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		os.Exit(1)
	}
	defer s.Close()
	if err := s.Serve(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("ingest", "err", err)
		os.Exit(1)
	}
}
