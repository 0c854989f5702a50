// Command vodsim runs the VOD + COS emulator standalone, configured by the
// environment (prefix VODPIPE_VODSIM_). Clients reach COS by dialing its
// address with production bucket URLs (see pkg/vod.DialOverride).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/kelseyhightower/envconfig"

	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("vodsim failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	var cfg vodsim.Config
	if err := envconfig.Process("VODPIPE_VODSIM", &cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	s, err := vodsim.New(cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.TLSAddr != "" {
		tl, err := net.Listen("tcp", cfg.TLSAddr)
		if err != nil {
			return err
		}
		go func() {
			if err := s.ServeTLS(ctx, tl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("vodsim TLS", "err", err)
			}
		}()
		log.Info("vodsim listening over TLS", "addr", tl.Addr().String())
	}
	log.Info("vodsim listening", "addr", l.Addr().String(), "vod_endpoint", "http://"+l.Addr().String(),
		"regions", s.Config().Regions, "procedures", s.Config().Procedures, "discard", cfg.Discard,
		"callback_url", cfg.CallbackURL)
	if err := s.Serve(ctx, l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("vodsim stopped")
	return nil
}
