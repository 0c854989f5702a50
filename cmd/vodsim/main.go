// Command vodsim runs the VOD + COS emulator standalone, configured by the
// environment (prefix VODPIPE_VODSIM_). Clients reach COS by dialing its
// address with production bucket URLs (see pkg/vod.DialOverride).
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := vodsim.ServeEnv(ctx, log)
	stop()
	if err != nil {
		log.Error("vodsim failed", "err", err)
		os.Exit(1)
	}
}
