package main

import (
	"context"
	"io"

	"github.com/vodpipe/vodpipe/internal/service"
)

// runRole runs one service from the environment (VODPIPE_*), like its own
// command (cmd/worker, cmd/ingest, cmd/notify, cmd/vodsim): a single binary
// can then play every role (benchmarks and chaos runs start service
// processes this way).
func runRole(ctx context.Context, role string, stderr io.Writer) int {
	return service.RunRole(ctx, role, stderr)
}
