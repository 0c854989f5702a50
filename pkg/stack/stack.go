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
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/vodpipe/vodpipe/pkg/config"
	"github.com/vodpipe/vodpipe/pkg/ingest"
	"github.com/vodpipe/vodpipe/pkg/natsembed"
	"github.com/vodpipe/vodpipe/pkg/natsperm"
	"github.com/vodpipe/vodpipe/pkg/notify"
	"github.com/vodpipe/vodpipe/pkg/queue"
	"github.com/vodpipe/vodpipe/pkg/signer"
	"github.com/vodpipe/vodpipe/pkg/upload"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
	"github.com/vodpipe/vodpipe/pkg/worker"
)

// Options configure a stack. Zero values give a working local system.
type Options struct {
	// DataDir holds NATS's store and vodsim's objects; a temporary folder when empty.
	DataDir string
	// SourceRoot is the folder file:// sources may come from.
	SourceRoot string
	// RefusePrivateSources refuses http(s) sources on private and loopback
	// addresses (production behaviour); the demo allows them.
	RefusePrivateSources bool
	// RedisURL keeps resume state in Redis; empty uses a JetStream key-value bucket.
	RedisURL string
	// Workers is the number of worker instances (each runs JobsPerWorker jobs).
	Workers       int
	JobsPerWorker int
	// PartSize and Concurrency tune uploads.
	PartSize    int64
	Concurrency int
	// IngestAddr, VodsimAddr, NotifyAddr: listen addresses; 127.0.0.1:0 when empty.
	IngestAddr string
	VodsimAddr string
	NotifyAddr string
	// Vodsim adjusts vodsim's config (faults, callback URL, discard mode).
	Vodsim func(*vodsim.Config)
	// Queue adjusts the JetStream layout (ack wait, deliveries).
	Queue queue.Config
	// LeaseTTL of job leases.
	LeaseTTL time.Duration
	// APIKey is the key the stack's ingest accepts (every scope); random when empty.
	APIKey string
	// NATS adjusts the embedded NATS server (tests: a logger that sees
	// permission violations).
	NATS []natsembed.Option
	// SecretID and SecretKey of the app vodsim knows and ingest signs with; random when empty.
	SecretID, SecretKey string
	// Policy is the signing policy; nil allows any value ("*") of each list,
	// as a local system against vodsim may.
	Policy *signer.Policy
	Log    *slog.Logger
}

// Stack is a running system. Its NATS server is guarded as production's
// should be: each service connects as its natsperm role's user (see
// NATSConfig), and AdminNATS is for inspection only.
type Stack struct {
	NATS       *natsserver.Server
	NATSURL    string
	Vodsim     *vodsim.Server
	VodsimAddr string
	Ingest     *ingest.Service
	IngestURL  string
	Notify     *notify.Service
	NotifyURL  string
	// APIKey is the generated key with every scope.
	APIKey string
	// SecretID is the demo app's SecretId (its key stays inside the stack).
	SecretID string

	opts    Options
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
	w      *worker.Worker
	cancel context.CancelFunc
	done   chan struct{}
}

// Start brings everything up; Close stops it.
func Start(ctx context.Context, o Options) (*Stack, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.JobsPerWorker <= 0 {
		o.JobsPerWorker = 2
	}
	if o.IngestAddr == "" {
		o.IngestAddr = "127.0.0.1:0"
	}
	if o.VodsimAddr == "" {
		o.VodsimAddr = "127.0.0.1:0"
	}
	if o.NotifyAddr == "" {
		o.NotifyAddr = "127.0.0.1:0"
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

	// The demo app's keys: vodsim knows them, ingest signs with them, nobody else sees them.
	secretKey := o.SecretKey
	s.SecretID = o.SecretID
	if s.SecretID == "" || secretKey == "" {
		s.SecretID, secretKey = "AKIDvodpipe"+randomHex(12), randomHex(24)
	}
	s.APIKey = o.APIKey
	if s.APIKey == "" {
		s.APIKey = "vp_" + randomHex(20)
	}

	// notify's address first: vodsim sends VOD's NewFileUpload callbacks there.
	nl, err := net.Listen("tcp", o.NotifyAddr)
	if err != nil {
		return nil, err
	}
	s.NotifyURL = "http://" + nl.Addr().String()
	callbackToken := randomHex(16)
	vcfg := vodsim.Config{Apps: vodsim.Apps{s.SecretID: secretKey}, DataDir: filepath.Join(o.DataDir, "vodsim"),
		CallbackURL: s.NotifyURL + "/v1/vod/callback?token=" + callbackToken}
	if o.Vodsim != nil {
		o.Vodsim(&vcfg)
	}
	if s.Vodsim, err = vodsim.New(vcfg, o.Log.With("service", "vodsim")); err != nil {
		return nil, err
	}
	vl, err := net.Listen("tcp", o.VodsimAddr)
	if err != nil {
		return nil, err
	}
	s.VodsimAddr = vl.Addr().String()
	s.goServe("vodsim", func() error { return s.Vodsim.Serve(bg, vl) })

	policy := signer.Policy{MaxValidity: 2 * time.Hour, Procedures: signer.Allow{signer.Any},
		StorageRegions: signer.Allow{signer.Any}, ClassIDs: signer.Allow{signer.Any}, SubAppIDs: signer.Allow{signer.Any}}
	if o.Policy != nil {
		policy = *o.Policy
	}
	var keys ingest.APIKeys
	if err := keys.Decode("local:" + s.APIKey); err != nil {
		return nil, err
	}
	icfg := ingest.Config{
		NATS: s.NATSConfig(natsperm.Ingest), QueueConfig: o.Queue,
		Credentials: config.Credentials{SecretID: s.SecretID, SecretKey: secretKey},
		Policy:      policy,
		APIKeys:     keys, BatchMax: 1000, MaxBody: 64 << 20, SignRate: 50, SignBurst: 100,
		// The upload page is on, its tokens signed with a key of this process.
		UploadTokenConfig: ingest.UploadTokenConfig{UploadTokenKeys: []string{randomHex(32)}, UploadTokenMaxTTL: 12 * time.Hour},
		PageConfig:        ingest.PageConfig{UploadPage: true, WebDir: "web"},
	}
	if s.Ingest, err = ingest.New(bg, icfg, o.Log.With("service", "ingest")); err != nil {
		return nil, err
	}
	il, err := net.Listen("tcp", o.IngestAddr)
	if err != nil {
		return nil, err
	}
	s.IngestURL = "http://" + il.Addr().String()
	s.goServe("ingest", func() error { return s.Ingest.ServeListener(bg, il) })

	ncfg := notify.Config{NATS: s.NATSConfig(natsperm.Notify), QueueConfig: o.Queue, CallbackToken: callbackToken,
		APIKeys: keys, // ingest's: both read the one key, never change it
		WebhookConfig: notify.WebhookConfig{WebhookAllowPrivate: true, WebhookTimeout: 5 * time.Second, WebhookSchedule: notify.Schedule{500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second, 15 * time.Second},
			// Webhook secrets sealed with a key of this process, like the bucket they live in.
			WebhookSecretKeys: []string{randomHex(32)}},
	}
	if s.Notify, err = notify.New(bg, ncfg, o.Log.With("service", "notify")); err != nil {
		return nil, err
	}
	s.goServe("notify", func() error { return s.Notify.ServeListener(bg, nl) })

	for i := range o.Workers {
		if err := s.AddWorker(fmt.Sprintf("worker-%d", i+1)); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// WorkerConfig is the config every worker of the stack gets.
func (s *Stack) WorkerConfig(id string) worker.Config {
	o := s.opts
	cfg := worker.Config{
		NATS: s.NATSConfig(natsperm.Worker), QueueConfig: o.Queue,
		UploadConfig:  upload.Config{PartSize: o.PartSize, Concurrency: o.Concurrency, COSScheme: "http"},
		SourcesConfig: upload.SourcesConfig{Root: o.SourceRoot, AllowPrivate: !o.RefusePrivateSources},
		VODEndpoint:   "http://" + s.VodsimAddr, COSDialAddr: s.VodsimAddr,
		Jobs: o.JobsPerWorker, LeaseTTL: o.LeaseTTL, ShutdownGrace: 10 * time.Second, ID: id,
	}
	if o.RedisURL != "" {
		cfg.Redis = config.Redis{URL: o.RedisURL}
	}
	return cfg
}

// NATSConfig is how a client connects to the stack's NATS as role's user
// (natsperm's permissions; a Publisher may only publish jobs).
func (s *Stack) NATSConfig(role natsperm.Role) config.NATS {
	return config.NATS{URL: s.NATSURL, User: string(role), PasswordFile: filepath.Join(s.users, string(role)+".password")}
}

// AdminNATS is how tests and operators of a local stack connect to its NATS
// with every right, to inspect streams and buckets. No service uses it.
func (s *Stack) AdminNATS() config.NATS {
	return config.NATS{URL: s.NATSURL, User: natsembed.AdminUser, PasswordFile: filepath.Join(s.users, natsembed.AdminUser+".password")}
}

// writeUsers writes each NATS user's password to a file of its own, readable
// by this user only, as a mounted secret would be; Close removes them.
func (s *Stack) writeUsers(u natsembed.Users) error {
	s.users = filepath.Join(s.opts.DataDir, "nats-users")
	if err := os.MkdirAll(s.users, 0o700); err != nil {
		return err
	}
	files := map[string]string{natsembed.AdminUser: u.AdminPassword}
	for r, pw := range u.Passwords {
		files[string(r)] = pw
	}
	for name, pw := range files {
		if err := os.WriteFile(filepath.Join(s.users, name+".password"), []byte(pw), 0o600); err != nil {
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
	h := &workerHandle{w: w, cancel: cancel, done: make(chan struct{})}
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
