// Package stack runs the whole of vodpipe in one process: an embedded NATS
// server with JetStream, vodsim, ingest (with its signature service), a pool
// of workers and, when configured, notify. `vodpipe up`, `vodpipe demo` and
// end-to-end tests use it; production runs each service on its own.
package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"go.opentelemetry.io/otel/trace"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/httpserve"
	"github.com/vodpipe/vodpipe/internal/ingest"
	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/natsembed"
	"github.com/vodpipe/vodpipe/internal/natsperm"
	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/internal/worker"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// Options configure a stack. Zero values give a working local system.
type Options struct {
	// Configs are the services' whole configurations (`vodpipe up` loads
	// them from the environment with LoadConfigs); nil: a local system tuned
	// by the fields below. With Configs, only DataDir, Workers, the listen
	// addresses, Vodsim, NATS, APIKey (when Configs name no API keys) and Log
	// apply; the rest come from Configs.
	Configs *Configs
	// DataDir holds NATS's store and vodsim's objects; a temporary folder when empty.
	DataDir string
	// SourceRoot is the folder file:// sources may come from.
	SourceRoot string
	// RefusePrivateSources refuses http(s) sources on private and loopback
	// addresses (production behaviour); the demo allows them.
	RefusePrivateSources bool
	// RedisURL keeps resume state in Redis; empty uses a JetStream key-value bucket.
	RedisURL string
	// Workers is the number of worker instances (each runs JobsPerWorker
	// jobs); 0 means 2, unless NoWorkers.
	Workers int
	// NoWorkers starts no worker: jobs wait queued (`vodpipe up --workers 0`,
	// to fill the queue or to run workers elsewhere).
	NoWorkers     bool
	JobsPerWorker int
	// PartSize and Concurrency tune uploads.
	PartSize    int64
	Concurrency int
	// IngestAddr, VodsimAddr, NotifyAddr: listen addresses, overriding
	// Configs'; 127.0.0.1:0 when both are empty.
	IngestAddr string
	VodsimAddr string
	NotifyAddr string
	// Vodsim adjusts vodsim's config (faults, callback URL, discard mode, TLS address).
	Vodsim func(*vodsim.Config)
	// Queue adjusts the JetStream layout (ack wait, deliveries).
	Queue queue.Config
	// LeaseTTL of job leases.
	LeaseTTL time.Duration
	// APIKey is the key the stack's ingest accepts (every scope); random when empty.
	APIKey string
	// APIKeys, when set, are the stack's keys instead (VODPIPE_API_KEYS's
	// syntax: name:key[:scope+scope],...), for ingest and notify.
	APIKeys string
	// NATS adjusts the embedded NATS server (tests: a logger that sees
	// permission violations).
	NATS []natsembed.Option
	// SecretID and SecretKey of the app vodsim knows and ingest signs with; random when empty.
	SecretID, SecretKey string
	// Policy is the signing policy; nil allows any value ("*") of each list,
	// as a local system against vodsim may.
	Policy *signer.Policy
	Log    *slog.Logger
	// TracerProvider takes every service's spans (tests: an in-memory
	// exporter); nil: each service's from the OTEL_* environment.
	TracerProvider trace.TracerProvider
}

// Stack is a running system. Its NATS server is guarded as production's
// should be: each service connects as its natsperm role's user (see
// NATSConfig), and AdminNATS is for inspection only.
type Stack struct {
	NATS       *natsserver.Server
	NATSURL    string
	Vodsim     *vodsim.Server
	VodsimAddr string
	// VodsimTLSAddr is vodsim's TLS listener, empty unless its TLSAddr is set.
	VodsimTLSAddr string
	Ingest        *ingest.Service
	IngestURL     string
	Notify        *notify.Service
	NotifyURL     string
	// WorkersURL serves each worker's /healthz, /readyz and /metrics under
	// /<worker id>/; empty unless Configs.Worker.HTTPAddr is set.
	WorkersURL string
	// APIKey is the generated key with every scope; empty when the configs
	// name API keys.
	APIKey string
	// SecretID is the app's SecretId (its key stays inside the stack).
	SecretID string
	// UploadTokenKeysMade reports that upload tokens are signed with a key
	// made at start: they die with the process.
	UploadTokenKeysMade bool
	// EmbeddedVOD reports that the workers upload to the embedded vodsim.
	EmbeddedVOD bool

	opts    Options
	cfgs    Configs
	tmp     string
	users   string // folder of the NATS users' password files
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errs    chan error
	workers []*workerHandle
	wmu     sync.Mutex
	log     *slog.Logger
}

type workerHandle struct {
	id     string
	w      *worker.Worker
	cancel context.CancelFunc
	done   chan struct{}
}

// Start brings everything up; Close stops it.
func Start(ctx context.Context, o Options) (*Stack, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.NoWorkers {
		o.Workers = 0
	} else if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.JobsPerWorker <= 0 {
		o.JobsPerWorker = 2
	}
	c := localConfigs(o)
	if o.Configs != nil {
		c = *o.Configs
		c.Vodsim.Apps = maps.Clone(c.Vodsim.Apps)
	}
	for _, a := range []struct {
		dst *string
		set string
	}{
		{&c.Ingest.HTTPAddr, o.IngestAddr}, {&c.Notify.HTTPAddr, o.NotifyAddr}, {&c.Vodsim.Addr, o.VodsimAddr},
	} {
		if a.set != "" {
			*a.dst = a.set
		}
		if *a.dst == "" {
			*a.dst = "127.0.0.1:0"
		}
	}
	s := &Stack{opts: o, errs: make(chan error, 8), log: o.Log}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if o.DataDir == "" {
		d, err := os.MkdirTemp("", "vodpipe-")
		if err != nil {
			return nil, err
		}
		s.tmp, o.DataDir = d, d
		s.opts.DataDir = d
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel

	users := natsembed.NewUsers()
	if err := s.writeUsers(users); err != nil {
		return nil, err
	}
	ns, err := natsembed.Start(filepath.Join(o.DataDir, "nats"), "127.0.0.1", natsserver.RANDOM_PORT,
		append([]natsembed.Option{natsembed.WithUsers(users)}, o.NATS...)...)
	if err != nil {
		return nil, err
	}
	s.NATS, s.NATSURL = ns, ns.ClientURL()
	if err := s.fill(&c); err != nil {
		return nil, err
	}

	// notify's address first: vodsim sends VOD's NewFileUpload callbacks there.
	nl, err := net.Listen("tcp", c.Notify.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("stack: notify: %w", err)
	}
	s.NotifyURL = "http://" + dialable(nl.Addr().String())
	if c.Vodsim.CallbackURL == "" && c.Notify.PullAPIID == "" {
		c.Vodsim.CallbackURL = s.NotifyURL + "/v1/vod/callback?token=" + url.QueryEscape(c.Notify.CallbackToken)
	}
	if c.Vodsim.DataDir == "" {
		c.Vodsim.DataDir = filepath.Join(o.DataDir, "vodsim")
	}
	if o.Vodsim != nil {
		o.Vodsim(&c.Vodsim)
	}
	if s.Vodsim, err = vodsim.New(c.Vodsim, o.Log.With("service", "vodsim")); err != nil {
		return nil, err
	}
	vl, err := net.Listen("tcp", c.Vodsim.Addr)
	if err != nil {
		return nil, fmt.Errorf("stack: vodsim: %w", err)
	}
	s.VodsimAddr = dialable(vl.Addr().String())
	s.goServe("vodsim", func() error { return s.Vodsim.Serve(bg, vl) })
	if c.Vodsim.TLSAddr != "" {
		tl, err := net.Listen("tcp", c.Vodsim.TLSAddr)
		if err != nil {
			return nil, fmt.Errorf("stack: vodsim TLS: %w", err)
		}
		s.VodsimTLSAddr = dialable(tl.Addr().String())
		s.goServe("vodsim TLS", func() error { return s.Vodsim.ServeTLS(bg, tl) })
	}
	if s.EmbeddedVOD {
		c.Worker.VODEndpoint, c.Worker.COSDialAddr, c.Worker.COSScheme = "http://"+s.VodsimAddr, s.VodsimAddr, "http"
	}
	s.cfgs = c

	c.Ingest.NATS = s.NATSConfig(natsperm.Ingest)
	if c.Ingest.NotifyURL == "" {
		c.Ingest.NotifyURL = s.NotifyURL // the console's webhook pages
	}
	if s.Ingest, err = ingest.New(bg, c.Ingest, o.Log.With("service", "ingest")); err != nil {
		return nil, err
	}
	il, err := net.Listen("tcp", c.Ingest.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("stack: ingest: %w", err)
	}
	s.IngestURL = "http://" + dialable(il.Addr().String())
	s.goServe("ingest", func() error { return s.Ingest.ServeListener(bg, il) })

	c.Notify.NATS = s.NATSConfig(natsperm.Notify)
	if s.Notify, err = notify.New(bg, c.Notify, o.Log.With("service", "notify")); err != nil {
		return nil, err
	}
	s.goServe("notify", func() error { return s.Notify.ServeListener(bg, nl) })

	for i := range o.Workers {
		if err := s.AddWorker(fmt.Sprintf("worker-%d", i+1)); err != nil {
			return nil, err
		}
	}
	if c.Worker.HTTPAddr != "" {
		wl, err := net.Listen("tcp", c.Worker.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("stack: workers: %w", err)
		}
		s.WorkersURL = "http://" + dialable(wl.Addr().String())
		srv := httpserve.New(c.Worker.Config, s.workersHandler())
		s.goServe("workers", func() error { return httpserve.Serve(bg, srv, wl, 5*time.Second) })
	}
	ok = true
	return s, nil
}

// fill makes what the configs leave to the stack: the app's key pair, an
// API key, an upload-token key and a callback token, each only when unset.
func (s *Stack) fill(c *Configs) error {
	if tp := s.opts.TracerProvider; tp != nil {
		c.Ingest.TracerProvider, c.Notify.TracerProvider, c.Worker.TracerProvider = tp, tp, tp
	}
	if c.Ingest.SecretID == "" && c.Ingest.SecretKey == "" && c.Ingest.SecretKeyFile == "" {
		c.Ingest.Credentials = config.Credentials{SecretID: "AKIDvodpipe" + randomHex(12), SecretKey: randomHex(24)}
	}
	s.SecretID = c.Ingest.SecretID
	s.EmbeddedVOD = c.Worker.VODEndpoint == ""
	if s.EmbeddedVOD {
		// vodsim is VOD: it knows the key pair ingest signs with.
		key, err := c.Ingest.Credentials.Key()
		if err != nil {
			return err
		}
		if c.Vodsim.Apps == nil {
			c.Vodsim.Apps = vodsim.Apps{}
		}
		c.Vodsim.Apps[c.Ingest.SecretID] = key
	}
	if s.opts.APIKeys != "" && len(c.Ingest.APIKeys) == 0 {
		if err := c.Ingest.APIKeys.Decode(s.opts.APIKeys); err != nil {
			return fmt.Errorf("stack: API keys: %w", err)
		}
	}
	if len(c.Ingest.APIKeys) == 0 && len(c.Notify.APIKeys) == 0 {
		s.APIKey = s.opts.APIKey
		if s.APIKey == "" {
			s.APIKey = "vp_" + randomHex(20)
		}
		if err := c.Ingest.APIKeys.Decode("local:" + s.APIKey); err != nil {
			return fmt.Errorf("stack: API key: %w", err)
		}
	}
	if len(c.Notify.APIKeys) == 0 {
		c.Notify.APIKeys = c.Ingest.APIKeys // one key list serves both, as VODPIPE_API_KEYS does
	}
	if len(c.Ingest.UploadTokenKeys) == 0 && c.Ingest.UploadTokenKeysFile == "" {
		c.Ingest.UploadTokenKeys, s.UploadTokenKeysMade = []string{randomHex(32)}, true
	}
	if c.Notify.CallbackToken == "" {
		c.Notify.CallbackToken = randomHex(16)
	}
	if len(c.Notify.WebhookSecretKeys) == 0 && c.Notify.WebhookSecretKeysFile == "" {
		// Webhook secrets sealed with a key of this process (64 hex digits: 32 bytes).
		c.Notify.WebhookSecretKeys = []string{randomHex(32)}
	}
	return nil
}

// WorkerConfig is the config every worker of the stack gets.
func (s *Stack) WorkerConfig(id string) worker.Config {
	cfg := s.cfgs.Worker
	cfg.NATS = s.NATSConfig(natsperm.Worker)
	if cfg.ID != "" {
		id = cfg.ID + "-" + id
	}
	cfg.ID = id
	return cfg
}

// NATSConfig is how a client connects to the stack's NATS as role's user
// (natsperm's permissions; a Publisher may only publish jobs).
func (s *Stack) NATSConfig(role natsperm.Role) natsconf.NATS {
	return natsconf.NATS{URL: s.NATSURL, User: string(role), PasswordFile: filepath.Join(s.users, string(role)+".password"),
		InboxPrefix: role.Inbox()}
}

// AdminNATS is how tests and operators of a local stack connect to its NATS
// with every right, to inspect streams and buckets. No service uses it.
func (s *Stack) AdminNATS() natsconf.NATS {
	return natsconf.NATS{URL: s.NATSURL, User: natsembed.AdminUser, PasswordFile: filepath.Join(s.users, natsembed.AdminUser+".password")}
}

// writeUsers writes each NATS user's password to a file of its own, as a
// mounted secret would be, in a folder made fresh for this start (0700, a
// random name: a folder or file planted in the data folder beforehand is
// never used); Close removes it.
func (s *Stack) writeUsers(u natsembed.Users) error {
	if err := os.MkdirAll(s.opts.DataDir, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(s.opts.DataDir, "nats-users-")
	if err != nil {
		return err
	}
	s.users = dir
	files := map[string]string{natsembed.AdminUser: u.AdminPassword}
	for r, pw := range u.Passwords {
		files[string(r)] = pw
	}
	for name, pw := range files {
		f, err := os.OpenFile(filepath.Join(dir, name+".password"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, err = f.WriteString(pw)
			err = errors.Join(err, f.Close())
		}
		if err != nil {
			return fmt.Errorf("stack: NATS user %s: %w", name, err)
		}
	}
	return nil
}

// AddWorker starts one more worker.
func (s *Stack) AddWorker(id string) error {
	w, err := worker.New(context.Background(), s.WorkerConfig(id), s.log.With("service", "worker"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &workerHandle{id: id, w: w, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		if err := w.Run(ctx); err != nil {
			s.report(fmt.Errorf("worker %s: %w", id, err))
		}
		w.Close()
	}()
	s.wmu.Lock()
	s.workers = append(s.workers, h)
	s.wmu.Unlock()
	return nil
}

// WorkerHandler serves the i-th worker's /healthz, /readyz and /metrics.
func (s *Stack) WorkerHandler(i int) http.Handler {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.workers[i].w.Handler()
}

// workersHandler serves each worker's Handler under /<worker id>/.
func (s *Stack) workersHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		s.wmu.Lock()
		i := slices.IndexFunc(s.workers, func(h *workerHandle) bool { return h.id == id })
		var h http.Handler
		if i >= 0 {
			h = s.workers[i].w.Handler()
		}
		s.wmu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		http.StripPrefix("/"+id, h).ServeHTTP(w, r)
	})
}

// StopWorker stops the i-th worker gracefully (its jobs go back to the queue).
func (s *Stack) StopWorker(i int) {
	s.wmu.Lock()
	h := s.workers[i]
	s.wmu.Unlock()
	h.cancel()
	<-h.done
}

// CrashWorkerRunning crashes the worker that runs jobID (see worker.Crash)
// and reports whether one did.
func (s *Stack) CrashWorkerRunning(jobID string) bool {
	s.wmu.Lock()
	ws := append([]*workerHandle(nil), s.workers...)
	s.wmu.Unlock()
	for _, h := range ws {
		for _, id := range h.w.Running() {
			if id == jobID {
				h.w.Crash()
				<-h.done
				return true
			}
		}
	}
	return false
}

func (s *Stack) goServe(name string, f func() error) {
	s.wg.Go(func() {
		if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.report(fmt.Errorf("%s: %w", name, err))
		}
	})
}

func (s *Stack) report(err error) {
	s.log.Error("stack component failed", "err", err)
	select {
	case s.errs <- err:
	default:
	}
}

// Errors reports failures of components after start.
func (s *Stack) Errors() <-chan error { return s.errs }

// Close stops every component, workers first so their jobs are handed back.
func (s *Stack) Close() {
	s.wmu.Lock()
	ws := s.workers
	s.wmu.Unlock()
	for _, h := range ws {
		h.cancel()
	}
	for _, h := range ws {
		<-h.done
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.Ingest != nil {
		s.Ingest.Close()
	}
	if s.Notify != nil {
		s.Notify.Close()
	}
	if s.Vodsim != nil {
		_ = s.Vodsim.Close()
	}
	if s.NATS != nil {
		s.NATS.Shutdown()
		s.NATS.WaitForShutdown()
	}
	if s.users != "" {
		_ = os.RemoveAll(s.users)
	}
	if s.tmp != "" {
		_ = os.RemoveAll(s.tmp)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
