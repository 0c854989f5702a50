// Command notify runs vodpipe's event service, configured by the environment
// (prefix VODPIPE_): VOD event callbacks (or pull mode), webhook
// subscriptions and the server-sent event stream. Run several behind a load
// balancer: they share subscriptions and delivery work through JetStream.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/vodpipe/vodpipe/pkg/config"
	"github.com/vodpipe/vodpipe/pkg/notify"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var cfg notify.Config
	if err := config.Load(&cfg); err != nil {
		log.Error("config", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := notify.New(ctx, cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		os.Exit(1)
	}
	defer s.Close()
	if err := s.Serve(ctx); err != nil {
		log.Error("notify", "err", err)
		os.Exit(1)
	}
}
