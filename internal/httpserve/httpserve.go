// Package httpserve builds vodpipe's HTTP servers with the same limits: a
// time to read each request's headers and body, a time to write each
// response, an idle timeout and a header size limit; and caps concurrent
// event streams (Streams), which alone are exempt from the deadlines.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vodpipe/vodpipe/internal/defaults"
	"github.com/vodpipe/vodpipe/internal/httpapi"
)

// readHeaderTimeout bounds the time to read a request's headers.
const readHeaderTimeout = 10 * time.Second

// Config are a server's limits; a zero field takes its default.
type Config struct {
	ReadTimeout    time.Duration `envconfig:"HTTP_READ_TIMEOUT" default:"1m" desc:"time to read one request, headers and body (event streams excepted)"`
	WriteTimeout   time.Duration `envconfig:"HTTP_WRITE_TIMEOUT" default:"1m" desc:"time to write one response (event streams excepted)"`
	IdleTimeout    time.Duration `envconfig:"HTTP_IDLE_TIMEOUT" default:"2m" desc:"how long an idle keep-alive connection is kept"`
	MaxHeaderBytes int           `envconfig:"HTTP_MAX_HEADER_BYTES" default:"65536" desc:"largest request header accepted, in bytes"`
	// DrainDelay: see Drain.
	DrainDelay time.Duration `envconfig:"HTTP_DRAIN_DELAY" default:"0s" desc:"ingest: on SIGTERM, how long its API goes on serving, /readyz answering 503, before it stops taking connections: the time a load balancer or Kubernetes takes to stop sending new ones (the Helm chart sets 5s; notify serves until its deliveries have drained anyway)"`
}

// StreamConfig caps a server's event streams; zero takes the default.
type StreamConfig struct {
	MaxStreams int `envconfig:"SSE_MAX_STREAMS" default:"256" desc:"concurrent server-sent event streams per process; more are answered 503"`
}

func (c Config) withDefaults() Config {
	// A negative limit takes the default too.
	c.ReadTimeout, c.WriteTimeout, c.IdleTimeout = max(c.ReadTimeout, 0), max(c.WriteTimeout, 0), max(c.IdleTimeout, 0)
	c.MaxHeaderBytes = max(c.MaxHeaderBytes, 0)
	defaults.Fill(&c)
	return c
}

// New returns a server for h with cfg's limits: each request gets
// cfg.ReadTimeout to be read and cfg.WriteTimeout to be answered, from when
// its handler starts.
func New(cfg Config, h http.Handler) *http.Server {
	cfg = cfg.withDefaults()
	l := &limits{cfg: cfg, next: h}
	return &http.Server{
		Handler:           l,
		ReadHeaderTimeout: min(readHeaderTimeout, cfg.ReadTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
	}
}

// Serve serves srv on l until ctx ends, then shuts it down, giving requests
// in flight up to grace to finish.
func Serve(ctx context.Context, srv *http.Server, l net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Drain returns a context that ends delay after ctx does, for the API's
// server: once ctx ends, draining is set (the service's readiness fails,
// so load balancers stop sending it new connections) and the server goes
// on serving for delay before it shuts down; without it, it would refuse
// the connections still routed to it while the endpoint's removal
// spreads. stop releases the context (call it when done).
func Drain(ctx context.Context, delay time.Duration, draining *atomic.Bool) (sctx context.Context, stop func()) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
		case <-sctx.Done():
			return
		}
		draining.Store(true)
		if delay > 0 {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-sctx.Done():
			}
		}
		cancel()
	}()
	return sctx, func() { cancel(); <-done }
}

// limits sets each request's deadlines.
type limits struct {
	cfg  Config
	next http.Handler
}

func (l *limits) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The body's deadline runs from here: the server's ReadTimeout also
	// counted the time the headers took.
	rc, now := http.NewResponseController(w), time.Now()
	_ = rc.SetReadDeadline(now.Add(l.cfg.ReadTimeout))
	_ = rc.SetWriteDeadline(now.Add(l.cfg.WriteTimeout))
	l.next.ServeHTTP(w, r)
}

// Streams caps the requests to paths, long-lived event streams, at
// cfg.MaxStreams at once: more are answered 503 too_many_streams. Other
// requests go to h unchanged. The deadlines stay until the stream's handler
// has authorised its caller and calls StartStream, so a refused or
// unauthenticated request is timed like any other.
func Streams(cfg StreamConfig, h http.Handler, paths ...string) http.Handler {
	cfg.MaxStreams = max(cfg.MaxStreams, 0) // negative: the default
	defaults.Fill(&cfg)
	slots := make(chan struct{}, cfg.MaxStreams)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(paths, r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		default:
			w.Header().Set("Retry-After", "5")
			httpapi.Refuse(w, http.StatusServiceUnavailable, httpapi.CodeTooManyStreams,
				"this server has as many event streams open as it allows; retry later", nil)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// StartStream lifts a request's read and write deadlines for a long-lived
// event stream: its handler calls it once the caller is authorised, before
// the stream's first byte (the stream then bounds each write itself). A
// read deadline passing would cancel the request's context, ending the stream.
func StartStream(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
}

// Ready answers /readyz from check: 200 ok, or 503 "not ready" with no
// detail (it may hold NATS's error text). The reason is logged when the
// service turns not ready, not at every probe, and recovery once.
func Ready(log *slog.Logger, check func(context.Context) error) http.Handler {
	var down atomic.Bool
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := check(r.Context()); err != nil {
			if !down.Swap(true) {
				log.Warn("not ready", "err", err)
			}
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		if down.Swap(false) {
			log.Info("ready again")
		}
		_, _ = w.Write([]byte("ok\n"))
	})
}

// Probes registers what every service serves beside its API: GET /healthz
// (the process answers), GET /readyz (Ready with check; nil is always
// ready) and GET /metrics (metrics in the Prometheus text format).
func Probes(mux *http.ServeMux, log *slog.Logger, check func(context.Context) error, metrics prometheus.Gatherer) {
	Health(mux, log, check)
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
}

// Health registers GET /healthz and GET /readyz (Ready with check; nil is
// always ready).
func Health(mux *http.ServeMux, log *slog.Logger, check func(context.Context) error) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	if check == nil {
		check = func(context.Context) error { return nil }
	}
	mux.Handle("GET /readyz", Ready(log, check))
}

// APIProbes registers a service's probes on its API mux: every one, or,
// when the service has an admin listener (admin true), the health probes
// alone, /metrics being the admin listener's (AdminHandler).
func APIProbes(mux *http.ServeMux, log *slog.Logger, check func(context.Context) error, metrics prometheus.Gatherer, admin bool) {
	if admin {
		Health(mux, log, check)
		return
	}
	Probes(mux, log, check, metrics)
}

// AdminHandler is what an admin listener serves: the probes and /metrics,
// nothing of the API.
func AdminHandler(log *slog.Logger, check func(context.Context) error, metrics prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	Probes(mux, log, check, metrics)
	return mux
}

// ServeAdmin serves h on addr until ctx ends, as Serve does; with addr
// empty it does nothing and returns nil when ctx ends.
func ServeAdmin(ctx context.Context, cfg Config, addr string, h http.Handler, log *slog.Logger) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	log.Info("admin listener (metrics, probes)", "addr", l.Addr().String())
	return Serve(ctx, New(cfg, h), l, 5*time.Second)
}
