package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/vodpipe/vodpipe/pkg/config"
	"github.com/vodpipe/vodpipe/pkg/worker"
)

// runWorker runs one worker from the environment (VODPIPE_*), like cmd/worker:
// a single binary can then play every role (benchmarks and chaos runs start
// worker processes this way).
func runWorker(ctx context.Context, stderr io.Writer) int {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	var cfg worker.Config
	if err := config.Load(&cfg); err != nil {
		fmt.Fprintln(stderr, "vodpipe worker:", err)
		return 2
	}
	w, err := worker.New(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe worker:", err)
		return 1
	}
	defer w.Close()
	if err := w.Serve(ctx); err != nil {
		fmt.Fprintln(stderr, "vodpipe worker:", err)
		return 1
	}
	return 0
}
