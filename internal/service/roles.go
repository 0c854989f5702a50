package service

import (
	"context"
	"io"
	"log/slog"

	"github.com/vodpipe/vodpipe/internal/ingest"
	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/worker"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// IsRole reports whether name is a service one vodpipe binary can play
// (`vodpipe worker`, `vodpipe ingest`, `vodpipe notify`, `vodpipe vodsim`).
func IsRole(name string) bool { return role(name) != nil }

// RunRole runs the service named role, configured by the environment like
// its own command (cmd/worker, cmd/ingest, cmd/notify, cmd/vodsim), until ctx
// ends, and returns the exit code. Benchmarks and chaos runs start service
// processes as their own binary re-executed with a role.
func RunRole(ctx context.Context, name string, stderr io.Writer) int {
	run := role(name)
	if run == nil {
		slog.New(slog.NewJSONHandler(stderr, nil)).Error("unknown role", "role", name)
		return ExitConfig
	}
	return run(ctx, stderr)
}

// role is the runner of the service named name, nil for none.
func role(name string) func(context.Context, io.Writer) int {
	switch name {
	case "worker":
		return func(ctx context.Context, stderr io.Writer) int { return Run(ctx, name, stderr, worker.New) }
	case "ingest":
		return func(ctx context.Context, stderr io.Writer) int { return Run(ctx, name, stderr, ingest.New) }
	case "notify":
		return func(ctx context.Context, stderr io.Writer) int { return Run(ctx, name, stderr, notify.New) }
	case "vodsim":
		return vodsim.RunEnv
	}
	return nil
}
