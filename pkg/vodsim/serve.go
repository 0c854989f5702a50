package vodsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/redact"
)

// EnvPrefix starts every variable of vodsim's Config.
const EnvPrefix = "VODPIPE_VODSIM"

// ServeEnv runs vodsim configured by the environment (prefix
// VODPIPE_VODSIM_) until ctx ends: what cmd/vodsim and `vodpipe vodsim` run.
// An environment it cannot read or run with is ErrBadConfig.
func ServeEnv(ctx context.Context, log *slog.Logger) error {
	var cfg Config
	if err := config.LoadPrefix(EnvPrefix, &cfg); err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	s, err := New(cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	if cfg.TLSAddr != "" {
		tl, err := net.Listen("tcp", cfg.TLSAddr)
		if err != nil {
			l.Close()
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
		"callback_url", redact.URL(cfg.CallbackURL))
	if err := s.Serve(ctx, l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("vodsim stopped")
	return nil
}

// RunEnv is ServeEnv for a process: JSON logs to stderr, and the exit code
// the services use (0 stopped, 1 failed, 2 invalid configuration).
func RunEnv(ctx context.Context, stderr io.Writer) int {
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With("service", "vodsim")
	err := ServeEnv(ctx, log)
	switch {
	case errors.Is(err, ErrBadConfig):
		log.Error("invalid configuration", "err", err)
		return 2
	case err != nil:
		log.Error("failed", "err", err)
		return 1
	}
	return 0
}

// Main runs vodsim standalone until SIGTERM or Ctrl-C and exits with
// RunEnv's code: cmd/vodsim's main.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := RunEnv(ctx, os.Stderr)
	stop()
	os.Exit(code)
}
