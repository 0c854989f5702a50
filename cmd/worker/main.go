// Command worker runs a vodpipe upload worker, configured by the environment
// (prefix VODPIPE_). Scale it horizontally: workers share one JetStream consumer.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/vodpipe/vodpipe/pkg/config"
	"github.com/vodpipe/vodpipe/pkg/worker"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var cfg worker.Config
	if err := config.Load(&cfg); err != nil {
		log.Error("config", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w, err := worker.New(ctx, cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		os.Exit(1)
	}
	defer w.Close()
	if err := w.Serve(ctx); err != nil {
		log.Error("worker", "err", err)
		os.Exit(1)
	}
}
