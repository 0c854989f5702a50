package main

import (
	"context"
	"io"

	"github.com/vodpipe/vodpipe/internal/service"
	"github.com/vodpipe/vodpipe/pkg/worker"
)

// runWorker runs one worker from the environment (VODPIPE_*), like cmd/worker:
// a single binary can then play every role (benchmarks and chaos runs start
// worker processes this way).
func runWorker(ctx context.Context, stderr io.Writer) int {
	return service.Run(ctx, "worker", stderr, worker.New)
}
