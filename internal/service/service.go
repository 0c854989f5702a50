// Package service is what vodpipe's service binaries share: configuration
// from the environment (prefix VODPIPE_), JSON logs, serving until SIGTERM
// or Ctrl-C (each service then shuts down gracefully), and exit codes.
package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/gctune"
)

// Server is an opened service.
type Server interface {
	// Serve runs the service until ctx ends, then shuts it down gracefully.
	Serve(ctx context.Context) error
	Close()
}

// Opener opens a service from its configuration (worker.New, ingest.New, notify.New).
type Opener[C any, S Server] func(ctx context.Context, cfg C, log *slog.Logger) (S, error)

// Exit codes of Run.
const (
	ExitOK     = 0
	ExitFailed = 1 // the service could not start or failed while serving
	ExitConfig = 2 // the environment's configuration is invalid
)

// Run loads the configuration, opens the service and serves it until ctx
// ends, logging to stderr as LogConfig says (JSON lines by default); it
// returns the process's exit code.
func Run[C any, S Server](ctx context.Context, name string, stderr io.Writer, open Opener[C, S]) int {
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With("service", name)
	var lc LogConfig
	err := config.Load(&lc)
	if err == nil {
		var l *slog.Logger
		if l, err = lc.Logger(stderr); err == nil {
			log = l.With("service", name)
		}
	}
	if err != nil {
		log.Error("invalid configuration", "err", err)
		return ExitConfig
	}
	var cfg C
	if err := config.Load(&cfg); err != nil {
		log.Error("invalid configuration", "err", err)
		return ExitConfig
	}
	s, err := open(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return ExitFailed
	}
	defer s.Close()
	if err := s.Serve(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("failed", "err", err)
		return ExitFailed
	}
	return ExitOK
}

// Main is Run for a command's main function: it serves until SIGTERM or
// Ctrl-C and exits the process with Run's code.
func Main[C any, S Server](name string, open Opener[C, S]) {
	_ = gctune.Tune(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, name, os.Stderr, open)
	stop()
	os.Exit(code)
}
