package service

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/vodpipe/vodpipe/pkg/ingest"
	"github.com/vodpipe/vodpipe/pkg/notify"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
	"github.com/vodpipe/vodpipe/pkg/worker"
)

// IsRole reports whether name is a service one vodpipe binary can play
// (`vodpipe worker`, `vodpipe ingest`, `vodpipe notify`, `vodpipe vodsim`).
func IsRole(name string) bool {
	switch name {
	case "worker", "ingest", "notify", "vodsim":
		return true
	}
	return false
}

// RunRole runs the service named role, configured by the environment like
// its own command (cmd/worker, cmd/ingest, cmd/notify, cmd/vodsim), until ctx
// ends, and returns the exit code. Benchmarks and chaos runs start service
// processes as their own binary re-executed with a role.
func RunRole(ctx context.Context, role string, stderr io.Writer) int {
	switch role {
	case "worker":
		return Run(ctx, role, stderr, worker.New)
	case "ingest":
		return Run(ctx, role, stderr, ingest.New)
	case "notify":
		return Run(ctx, role, stderr, notify.New)
	case "vodsim":
		log := slog.New(slog.NewJSONHandler(stderr, nil)).With("service", role)
		if err := vodsim.ServeEnv(ctx, log); errors.Is(err, vodsim.ErrBadConfig) {
			log.Error("invalid configuration", "err", err)
			return ExitConfig
		} else if err != nil {
			log.Error("failed", "err", err)
			return ExitFailed
		}
		return ExitOK
	}
	slog.New(slog.NewJSONHandler(stderr, nil)).Error("unknown role", "role", role)
	return ExitConfig
}
