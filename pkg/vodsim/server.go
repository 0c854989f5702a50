// Package vodsim is a strict local emulator of Tencent Cloud VOD's client-upload
// API (ApplyUploadUGC, CommitUploadUGC, events) and COS's XML object and
// multipart API. One handler serves both, routed by Host as the real services
// are: `<bucket>-<appid>.cos.<region>.myqcloud.com` is COS, anything else VOD.
// It verifies upload signatures, one-time use, temporary credentials and COS
// request signatures the way the real services do, and injects faults on demand.
package vodsim

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vodpipe/vodpipe/internal/httpserve"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// cosHost matches a COS virtual-host-style bucket host.
var cosHost = regexp.MustCompile(`^([a-z0-9-]+-[0-9]+)\.cos\.([a-z0-9-]+)\.myqcloud\.com$`)

// Server is the emulator. Create it with New, serve Handler, stop with Close.
type Server struct {
	cfg      Config
	log      *slog.Logger
	verifier vod.Verifier
	blobs    *blobStore
	faults   *faults
	metrics  *metrics
	tmpDir   string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	client *http.Client

	received atomic.Int64 // object body bytes read, including bodies cut short

	mu       sync.Mutex
	sessions map[string]*session
	// sessionOrder lists session keys oldest first from sessionHead on:
	// a session is forgotten once older than SessionLifetime (sweepSessionsLocked).
	sessionOrder []string
	sessionHead  int
	creds        map[string]*credential
	// trafficBy is per object (bucket/key) what was read and what faults were injected.
	trafficBy map[string]*ObjectTraffic
	// credsSwept is when expired credentials were last forgotten.
	credsSwept time.Time
	buckets    map[string]string // full bucket name → region
	objects    map[string]*Object
	uploads    map[string]*Upload
	files      map[string]*File
	sigUses    map[string]*SignatureUse
	// sigUsesKept is how many signatures the last scan for expired ones kept.
	sigUsesKept int
	// events is the NewFileUpload log, oldest first from eventsHead on,
	// at most maxEvents unless the oldest are not finished (see trimEventsLocked);
	// eventsByHandle finds one by its handle.
	events         []*EventRecord
	eventsHead     int
	eventsByHandle map[string]*EventRecord
}

// ErrBadConfig is returned for a configuration vodsim cannot run with.
var ErrBadConfig = errors.New("vodsim: invalid configuration")

// check refuses a configuration vodsim cannot run with; it reads the
// faults from FaultsJSON when set.
func (cfg *Config) check() error {
	if len(cfg.Apps) == 0 {
		return errors.New("no apps configured")
	}
	if cfg.FaultsJSON != "" {
		if err := json.Unmarshal([]byte(cfg.FaultsJSON), &cfg.Faults); err != nil {
			return fmt.Errorf("FAULTS: %w", err)
		}
	}
	if err := cfg.Faults.Validate(); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	return nil
}

// New builds an emulator from cfg. The caller must Close it.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	s := &Server{
		cfg: cfg, log: log, faults: newFaults(cfg.Faults), metrics: newMetrics(),
		client:   &http.Client{Timeout: 10 * time.Second, Transport: vod.NewTransport(64)},
		sessions: map[string]*session{}, creds: map[string]*credential{}, buckets: map[string]string{},
		objects: map[string]*Object{}, uploads: map[string]*Upload{}, files: map[string]*File{},
		sigUses: map[string]*SignatureUse{}, trafficBy: map[string]*ObjectTraffic{},
		eventsByHandle: map[string]*EventRecord{},
	}
	s.metrics.registerRead(s.BytesReceived)
	s.verifier = vod.Verifier{Keys: cfg.Apps, Now: s.now}
	dir := cfg.DataDir
	if dir == "" && !cfg.Discard {
		d, err := os.MkdirTemp("", "vodsim-")
		if err != nil {
			return nil, err
		}
		dir, s.tmpDir = d, d
	}
	blobs, err := newBlobStore(dir, cfg.Discard)
	if err != nil {
		return nil, err
	}
	s.blobs = blobs
	for _, r := range cfg.Regions {
		s.buckets[s.bucketFor(r)] = r
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close stops callback deliveries and removes a temporary data dir.
func (s *Server) Close() error {
	s.cancel()
	s.wg.Wait()
	if s.tmpDir != "" {
		return os.RemoveAll(s.tmpDir)
	}
	return nil
}

// BytesReceived counts object body bytes read so far, bodies cut short included.
func (s *Server) BytesReceived() int64 { return s.received.Load() }

// Config returns the effective configuration.
func (s *Server) Config() Config { return s.cfg }

func (s *Server) now() time.Time {
	if s.cfg.Clock != nil {
		return s.cfg.Clock().Add(s.cfg.ClockOffset)
	}
	return time.Now().Add(s.cfg.ClockOffset)
}

// storageBucket is the bucket name without the app id, as ApplyUploadUGC answers it.
func (s *Server) storageBucket(region string) string { return "vodsim" + regionShort(region) }

func (s *Server) bucketFor(region string) string {
	return fmt.Sprintf("%s-%d", s.storageBucket(region), s.cfg.AppID)
}

// BucketHost is the COS host of the bucket for region, as clients address it.
func (s *Server) BucketHost(region string) string {
	return fmt.Sprintf("%s.cos.%s.myqcloud.com", s.bucketFor(region), region)
}

// Handler serves VOD, COS, the admin API, /healthz and /metrics on one listener.
func (s *Server) Handler() http.Handler {
	vodMux := http.NewServeMux()
	vodMux.HandleFunc("POST /v3/index.php", s.serveVOD)
	httpserve.Probes(vodMux, s.log, nil, s.metrics.reg)
	s.adminRoutes(vodMux)
	return withCORS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The Date of every answer is vodsim's own clock (ClockOffset
		// included), as a server's Date is its own: clients learn the
		// server's time from it.
		w.Header().Set("Date", s.now().UTC().Format(http.TimeFormat))
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		// Cloud API 3.0 host (reliable-callback PullEvents/ConfirmEvents): cloudapi.go.
		if cloudAPIHost.MatchString(strings.ToLower(host)) {
			s.serveCloudAPI(w, r)
			return
		}
		if m := cosHost.FindStringSubmatch(strings.ToLower(host)); m != nil {
			s.serveCOS(w, r, m[1], m[2])
			return
		}
		vodMux.ServeHTTP(w, r)
	}))
}

// Serve accepts connections on l until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	// A part upload gets ten minutes, for throttled bandwidth (FaultConfig.Bandwidth).
	limits := httpserve.Config{ReadTimeout: 10 * time.Minute, WriteTimeout: 10 * time.Minute}
	return httpserve.Serve(ctx, httpserve.New(limits, s.Handler()), l, 10*time.Second)
}

// randomToken returns n random bytes, URL-safe base64.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomAlnum(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func (s *Server) knownRegion(r string) bool    { return slices.Contains(s.cfg.Regions, r) }
func (s *Server) knownProcedure(p string) bool { return slices.Contains(s.cfg.Procedures, p) }

// metrics are vodsim's Prometheus metrics.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	bytesIn  prometheus.Counter
	faults   *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vodsim_requests_total", Help: "Requests by operation and outcome code.",
		}, []string{"op", "code"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vodsim_body_bytes_total", Help: "Object bytes received.",
		}),
		faults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vodsim_injected_faults_total", Help: "Injected faults by operation and kind.",
		}, []string{"op", "kind"}),
	}
	m.reg.MustRegister(m.requests, m.bytesIn, m.faults)
	return m
}

// registerRead exports the object body bytes read, bodies cut short
// included (BytesReceived), for clients of a vodsim in another process.
func (m *metrics) registerRead(read func() int64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vodsim_body_bytes_read_total", Help: "Object body bytes read, bodies cut short included.",
	}, func() float64 { return float64(read()) }))
}
