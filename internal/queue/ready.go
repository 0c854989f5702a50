package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/retry"
)

// ReadyPolicy bounds how long a service waits for JetStream at start.
type ReadyPolicy struct {
	// Wait is the whole time allowed; 0 means one minute.
	Wait time.Duration
	// Backoff is the pause between tries (± half, retry.Jitter); 0 means one second.
	Backoff time.Duration
}

// WhenReady runs setup (opening or attaching to the layout) and runs it
// again while JetStream answers that it is not ready yet: a cluster that is
// still forming or electing leaders after a node restart times out, has no
// responders, or has too few peers for the replicas asked; and a layout that
// ingest has not created yet (ErrNotCreated) is waited for. Any other error,
// such as a stream that exists with a config that cannot be changed, ends it
// at once. setup must be idempotent (every Create here is CreateOrUpdate).
func WhenReady(ctx context.Context, p ReadyPolicy, log *slog.Logger, setup func(context.Context) error) error {
	if p.Wait <= 0 {
		p.Wait = time.Minute
	}
	if p.Backoff <= 0 {
		p.Backoff = time.Second
	}
	deadline := time.Now().Add(p.Wait)
	for attempt := 1; ; attempt++ {
		err := setup(ctx)
		if err == nil {
			return nil
		}
		if !NotReady(err) || ctx.Err() != nil {
			return err
		}
		if !time.Now().Add(p.Backoff).Before(deadline) {
			hint := ""
			switch {
			case errors.Is(err, nats.ErrNoResponders):
				hint = " (is JetStream enabled on the NATS server?)"
			case errors.Is(err, ErrNotCreated):
				hint = " (is ingest running? it creates the streams and buckets)"
			}
			return fmt.Errorf("JetStream not ready after %s (%d tries)%s: %w", p.Wait, attempt, hint, err)
		}
		if errors.Is(err, ErrNotCreated) {
			log.Info("waiting for ingest to create the JetStream layout", "attempt", attempt, "missing", err)
		} else {
			log.Warn("JetStream not ready, retrying", "attempt", attempt, "err", err)
		}
		// The pause ± half: replicas started together do not all ask again together.
		if !retry.Sleep(ctx, retry.Policy{Initial: p.Backoff, Max: p.Backoff}.Delay(1)) {
			return err
		}
	}
}

// Server error codes that mean "not yet" rather than "no".
const (
	codeNoSuitablePeers       jetstream.ErrorCode = 10005
	codeClusterNotAvailable   jetstream.ErrorCode = 10008
	codeInsufficientResources jetstream.ErrorCode = 10023
)

// NotReady reports whether err is JetStream, or the layout ingest creates,
// not being ready yet, worth trying again shortly.
func NotReady(err error) bool {
	if errors.Is(err, ErrNotCreated) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, ErrLayoutNotReady) {
		return true
	}
	// A server without JetStream answers 503 too, but waiting will not change it.
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return false
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode {
		case codeNoSuitablePeers, codeClusterNotAvailable, codeInsufficientResources:
			return true
		}
		return api.Code == 503
	}
	return false
}
