package worker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/resume"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/internal/upload"
	"github.com/vodpipe/vodpipe/internal/worker"
	"github.com/vodpipe/vodpipe/pkg/job"
	"github.com/vodpipe/vodpipe/pkg/vod"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// env is a full pipeline minus ingest's HTTP API: NATS, Redis, vodsim, the
// signature service, and workers started on demand.
type env struct {
	t      testing.TB
	nats   *testharness.NATS
	redis  *testharness.Redis
	sim    *testharness.Vodsim
	q      *queue.Queue
	root   string
	cfg    worker.Config
	logBuf *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t testing.TB, useRedis bool, simMod ...func(*vodsim.Config)) *env {
	t.Helper()
	return newEnvPolicy(t, useRedis, signer.Policy{MaxValidity: time.Hour, Procedures: signer.Allow{signer.Any}, StorageRegions: signer.Allow{signer.Any}, ClassIDs: signer.Allow{signer.Any}}, simMod...)
}

// newEnvPolicy is newEnv with the signature service's policy given.
func newEnvPolicy(t testing.TB, useRedis bool, policy signer.Policy, simMod ...func(*vodsim.Config)) *env {
	t.Helper()
	return newEnvSigner(t, useRedis, policy, nil, simMod...)
}

// newEnvSigner is newEnvPolicy with options for the signature service.
func newEnvSigner(t testing.TB, useRedis bool, policy signer.Policy, opts []signer.Option, simMod ...func(*vodsim.Config)) *env {
	t.Helper()
	e := &env{t: t, nats: testharness.StartNATS(t), sim: testharness.StartVodsim(t, simMod...), root: t.TempDir(), logBuf: &syncBuffer{}}
	if useRedis {
		e.redis = testharness.StartRedis(t)
	}
	ctx := t.Context()
	s, err := signer.New(testharness.VodsimSecretID, testharness.VodsimSecretKey, policy, opts...)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = worker.Config{
		NATS:          natsconf.NATS{URL: e.nats.URL},
		QueueConfig:   queue.Config{AckWait: 3 * time.Second, MaxDeliver: 6},
		UploadConfig:  upload.Config{PartSize: 1 << 20, Concurrency: 4, COSScheme: "http"},
		SourcesConfig: upload.SourcesConfig{Root: e.root},
		VODEndpoint:   e.sim.URL, COSDialAddr: e.sim.Addr, HTTPAddr: "127.0.0.1:0",
		Jobs: 2, LeaseTTL: 3 * time.Second, ShutdownGrace: 5 * time.Second,
	}
	if useRedis {
		e.cfg.Redis = config.Redis{URL: "redis://" + e.redis.Addr}
	}
	if e.q, err = queue.Open(ctx, e.nats.JetStream(t), e.cfg.QueueConfig); err != nil {
		t.Fatal(err)
	}
	svc, err := s.Serve(e.nats.Connect(t), e.q.Statuses, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return e
}

// startWorker runs a worker until the test ends or the returned stop is called.
func (e *env) startWorker(id string) (stop func()) {
	e.t.Helper()
	_, stop = e.runWorker(id)
	return stop
}

// runWorker is startWorker that also returns the worker.
func (e *env) runWorker(id string) (*worker.Worker, func()) {
	e.t.Helper()
	cfg := e.cfg
	cfg.ID = id
	log := slog.New(slog.NewJSONHandler(e.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := worker.New(e.t.Context(), cfg, log)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); w.Close(); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return w, stop
}

// source writes a deterministic random file under the source root.
func (e *env) source(name string, size int) (string, []byte) {
	e.t.Helper()
	r := rand.New(rand.NewPCG(uint64(size), uint64(len(name))))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(e.root, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return "file://" + p, b
}

// submit does what ingest does: status first, then the message.
func (e *env) submit(j *job.Job) {
	e.t.Helper()
	j.V = 1
	j.Normalize()
	if _, _, err := e.q.Statuses.Create(e.t.Context(), j); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.q.Jobs.Publish(e.t.Context(), j); err != nil {
		e.t.Fatal(err)
	}
}

// waitState polls the job's status until it reaches want.
func (e *env) waitState(id string, want job.State, within time.Duration) *job.Status {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s, _, err := e.q.Statuses.Get(e.t.Context(), id)
		if err == nil && s.State == want {
			return s
		}
		if err == nil && s.State.Terminal() && s.State != want {
			e.t.Fatalf("job %s ended %s (%+v), want %s\nlogs:\n%s", id, s.State, s.Error, want, e.logBuf.String())
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %s not %s in %s: %+v\nlogs:\n%s", id, want, within, s, e.logBuf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) storedEquals(s *job.Status, want []byte) {
	e.t.Helper()
	file := e.file(s)
	e.objectEquals(file.Bucket, file.VideoKey, want)
}

// coverEquals checks the cover vodsim stored for the job's file.
func (e *env) coverEquals(s *job.Status, want []byte) {
	e.t.Helper()
	file := e.file(s)
	if file.CoverKey == "" {
		e.t.Fatalf("FileId %s has no cover", s.FileID)
	}
	e.objectEquals(file.Bucket, file.CoverKey, want)
}

func (e *env) file(s *job.Status) vodsim.File {
	e.t.Helper()
	for _, f := range e.sim.Files() {
		if f.FileID == s.FileID {
			return f
		}
	}
	e.t.Fatalf("FileId %s not issued by vodsim", s.FileID)
	return vodsim.File{}
}

func (e *env) objectEquals(bucket, key string, want []byte) {
	e.t.Helper()
	rc, err := e.sim.OpenObject(bucket, key)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rc.Close()
	got, _ := io.ReadAll(rc)
	if sha256.Sum256(got) != sha256.Sum256(want) {
		e.t.Fatalf("stored %d bytes of %s differ from the %d-byte source", len(got), key, len(want))
	}
}

func (e *env) events(typ, jobID string) []*job.Event {
	e.t.Helper()
	ctx := e.t.Context()
	js := e.q.JetStream()
	subj := queue.EventSubject(&job.Event{Type: typ, JobID: jobID})
	c, err := js.OrderedConsumer(ctx, queue.EventsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*job.Event
	for range info.NumPending {
		m, err := c.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			e.t.Fatal(err)
		}
		ev, err := job.DecodeEvent(m.Data())
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// waitEvents waits until at least n events of typ for the job are in the
// stream and returns them: a job's status turns terminal just before its
// worker publishes the event.
func (e *env) waitEvents(typ, jobID string, n int) []*job.Event {
	e.t.Helper()
	var ev []*job.Event
	testharness.WaitFor(e.t, 10*time.Second, typ+" of "+jobID, func() bool {
		ev = e.events(typ, jobID)
		return len(ev) >= n
	})
	return ev
}

func TestSmallAndMultipartJobsComplete(t *testing.T) {
	for _, store := range []struct {
		name  string
		redis bool
	}{{"redis", true}, {"jetstream-kv", false}} {
		t.Run(store.name, func(t *testing.T) {
			e := newEnv(t, store.redis)
			e.startWorker("w1")
			smallURL, small := e.source("small.mp4", 300_000)
			bigURL, big := e.source("big clip.mp4", 9<<20+12345)
			coverURL, _ := e.source("cover.jpg", 5000)
			e.submit(&job.Job{ID: "small-1", Source: smallURL, SourceContext: "ctx-small", Metadata: []byte(`{"k":"v"}`)})
			e.submit(&job.Job{ID: "big-1", Source: bigURL, Cover: coverURL, Procedure: "LongVideoPreset"})
			s1 := e.waitState("small-1", job.StateCompleted, 30*time.Second)
			s2 := e.waitState("big-1", job.StateCompleted, 60*time.Second)
			e.storedEquals(s1, small)
			e.storedEquals(s2, big)
			if s2.CoverURL == "" || s2.BytesDone != int64(len(big)) || s2.BytesTotal != int64(len(big)) {
				t.Fatalf("status = %+v", s2)
			}
			ev := e.waitEvents(job.EventCompleted, "small-1", 1)
			if len(ev) != 1 {
				t.Fatalf("completed events = %d", len(ev))
			}
			if jid, err := e.q.Files.JobFor(t.Context(), s2.FileID); err != nil || jid != "big-1" {
				t.Fatalf("file → job = %q, %v", jid, err)
			}
			if len(e.sim.Uploads()) != 0 {
				t.Fatal("multipart upload left open")
			}
			// Neither job is one-time: each run's ApplyUploadUGC and
			// CommitUploadUGC share one signature (valid until it expires).
			uses := e.sim.SignatureUses()
			if len(uses) != 2 {
				t.Fatalf("signatures used = %d, want one per job: %+v", len(uses), uses)
			}
			for _, u := range uses {
				if !slices.Contains(u.Actions, vod.ActionApply) || !slices.Contains(u.Actions, vod.ActionCommit) {
					t.Fatalf("signature use = %+v, want apply and commit with one signature", u)
				}
			}
			// One PutObject: the completion carries the bytes, no job.progress is written.
			if n := len(e.events(job.EventProgress, "small-1")); n != 0 {
				t.Fatalf("progress events of a one-part job = %d", n)
			}
			// A completed job's lease is free: in Redis it goes with the
			// commit record (SaveCommitRelease), which the worker then does
			// not release again.
			if store.redis {
				leaser := resume.NewRedis(e.redis.Client(t))
				for _, id := range []string{"small-1", "big-1"} {
					if _, err := leaser.Acquire(t.Context(), id, "probe", time.Minute); err != nil {
						t.Fatalf("lease of completed job %s: %v, want it free", id, err)
					}
				}
			}
		})
	}
}

// A job whose commit is in Redis but whose status never said so (its
// worker died after the commit, or gave the lease up with the commit record
// and a copy of the job took it): the next worker completes it from the
// record, with the bytes the commit covered, and runs nothing: no
// ApplyUploadUGC, no commit, no running status, no job.started.
func TestCommitRecordedInRedisCompletesWithoutRunning(t *testing.T) {
	e := newEnv(t, true)
	src, data := e.source("recorded.mp4", 300_000)
	j := &job.Job{ID: "recorded-1", Source: src}
	store := resume.NewRedis(e.redis.Client(t))
	l, err := store.Acquire(t.Context(), j.ID, "w-before", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SaveSession(t.Context(), l, upload.Session{VodSessionKey: "s-1", Bucket: "b", Region: "ap-guangzhou",
		VideoKey: "/v/recorded.mp4", Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	if err := store.SaveCommitRelease(t.Context(), l, "5285890799999", "https://vod/recorded.mp4", ""); err != nil {
		t.Fatal(err)
	}
	e.submit(j)
	e.startWorker("w1")
	s := e.waitState(j.ID, job.StateCompleted, 30*time.Second)
	if s.FileID != "5285890799999" || s.MediaURL != "https://vod/recorded.mp4" || s.BytesTotal != int64(len(data)) {
		t.Fatalf("status = %+v, want the recorded commit and %d bytes", s, len(data))
	}
	ev := e.waitEvents(job.EventCompleted, j.ID, 1)
	if len(ev) != 1 {
		t.Fatalf("job.completed events = %d, want 1", len(ev))
	}
	var done job.CompletedData
	if err := json.Unmarshal(ev[0].Data, &done); err != nil || done.Bytes != int64(len(data)) || done.FileID != s.FileID {
		t.Fatalf("job.completed = %s (%v), want FileId %s and %d bytes", ev[0].Data, err, s.FileID, len(data))
	}
	if n := len(e.events(job.EventStarted, j.ID)); n != 0 {
		t.Fatalf("job.started events = %d for a job that had nothing left to run", n)
	}
	if n := len(e.sim.Sessions()); n != 0 {
		t.Fatalf("vodsim sessions = %d, want no ApplyUploadUGC", n)
	}
	if jid, err := e.q.Files.JobFor(t.Context(), s.FileID); err != nil || jid != j.ID {
		t.Fatalf("file → job = %q, %v", jid, err)
	}
}

func TestPublishedTwiceAndRedeliveredAfterCommitMakeOneFile(t *testing.T) {
	e := newEnv(t, true)
	e.startWorker("w1")
	src, _ := e.source("twice.mp4", 2<<20+7)
	j := &job.Job{ID: "twice-1", Source: src}
	e.submit(j)
	if r, err := e.q.Jobs.Publish(t.Context(), j); err != nil || !r.Duplicate {
		t.Fatalf("second publish: %+v %v", r, err)
	}
	s := e.waitState(j.ID, job.StateCompleted, 30*time.Second)
	// Redis loses everything, then the job is delivered again (new message id, as after a crash before the ack).
	if err := e.redis.Client(t).FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.JetStream().Publish(t.Context(), queue.JobsSubject, must(j.Encode())); err != nil {
		t.Fatal(err)
	}
	// The redelivery is handled (acked) without an upload; its job.completed
	// carries the same event id, so JetStream keeps one and subscribers see one.
	cons, err := e.q.Jobs.Consumer(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 20*time.Second, "the redelivered job acked", func() bool {
		ci, err := cons.Info(t.Context())
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 && ci.Delivered.Consumer >= 2
	})
	if ev := e.events(job.EventCompleted, j.ID); len(ev) != 1 {
		t.Fatalf("job.completed events = %d, want 1 (same id, deduplicated)", len(ev))
	}
	files := e.sim.Files()
	if len(files) != 1 || files[0].FileID != s.FileID || files[0].Commits != 1 {
		t.Fatalf("vodsim files = %+v", files)
	}
	applies := 0
	for _, sess := range e.sim.Sessions() {
		applies += sess.Applies
	}
	if applies != 1 {
		t.Fatalf("applies = %d, want 1 (one upload)", applies)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestPermanentFailuresAreDeadLettered(t *testing.T) {
	e := newEnv(t, true)
	e.startWorker("w1")
	ctx := t.Context()
	e.submit(&job.Job{ID: "missing-1", Source: "file://" + filepath.Join(e.root, "nope.mp4")})
	e.submit(&job.Job{ID: "outside-1", Source: "file:///etc/hostname.mp4"})
	e.submit(&job.Job{ID: "noflow-1", Source: must2(e.source("flow.mp4", 10)), Procedure: "NoSuchFlow"})
	// Straight onto NATS, not a valid job.
	if _, err := e.q.JetStream().Publish(ctx, queue.JobsSubject, []byte(`{"v":1,"id":"bad-1","source":"ftp://x"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.JetStream().Publish(ctx, queue.JobsSubject, []byte("not json at all")); err != nil {
		t.Fatal(err)
	}
	// A good job on a mistyped subject: the stream stores it, so it must not
	// sit there unseen.
	typo := must(json.Marshal(&job.Job{V: 1, ID: "typo-1", Source: must2(e.source("typo.mp4", 10))}))
	if _, err := e.q.JetStream().Publish(ctx, "vodpipe.jobs.sumbit", typo); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"missing-1": "source_not_found", "outside-1": "source_forbidden",
		"noflow-1": "vod_procedure_not_found", "bad-1": "invalid_message", "typo-1": "invalid_message"}
	for id, code := range want {
		if id != "bad-1" && id != "typo-1" {
			s := e.waitState(id, job.StateFailed, 20*time.Second)
			if s.Error == nil || s.Error.Code != code {
				t.Errorf("%s error = %+v, want %s", id, s.Error, code)
			}
		}
	}
	var dl []job.DeadLetter
	testharness.WaitFor(t, 20*time.Second, "6 dead letters", func() bool {
		var err error
		dl, err = e.q.DeadLetters.All(ctx)
		return err == nil && len(dl) == 6
	})
	got := map[string]string{}
	for _, d := range dl {
		if d.Reason == "" {
			t.Errorf("dead letter without reason: %+v", d)
		}
		if d.JobID == "typo-1" && !strings.Contains(d.Reason, "vodpipe.jobs.sumbit") {
			t.Errorf("typo-1 dead letter reason %q does not name the subject", d.Reason)
		}
		got[d.JobID] = d.Code
	}
	for id, code := range want {
		if got[id] != code {
			t.Errorf("dead letter %s = %q, want %s", id, got[id], code)
		}
	}
	if got[""] != "invalid_message" {
		t.Errorf("non-JSON message not dead-lettered: %+v", got)
	}
	if ev := e.waitEvents(job.EventFailed, "missing-1", 1); len(ev) != 1 {
		t.Errorf("job.failed events = %d", len(ev))
	}
}

// TestStrayCopyOnAWrongSubjectLeavesItsJobAlone: a copy of a job that
// ran, published again on a mistyped subject, is dead-lettered with advice
// on republishing, and no job.failed is sent for a job that did not fail;
// nor for an invalid message that reuses the job's id on the right subject.
func TestStrayCopyOnAWrongSubjectLeavesItsJobAlone(t *testing.T) {
	e := newEnv(t, true)
	e.startWorker("w1")
	ctx := t.Context()
	j := &job.Job{V: 1, ID: "ran-1", Source: must2(e.source("ran.mp4", 10))}
	e.submit(j)
	e.waitState(j.ID, job.StateCompleted, 20*time.Second)
	if _, err := e.q.JetStream().Publish(ctx, "vodpipe.jobs.sumbit", must(json.Marshal(j))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.JetStream().Publish(ctx, queue.JobsSubject, []byte(`{"v":1,"id":"ran-1","source":"ftp://x"}`)); err != nil {
		t.Fatal(err)
	}
	// Both copies are gone from the queue once the worker has handled them
	// (dead letter, then the event it would send, then the removal).
	c := must(e.q.Jobs.Consumer(ctx))
	testharness.WaitFor(t, 20*time.Second, "the copies handled", func() bool {
		ci, err := c.Info(ctx)
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 && ci.Delivered.Stream >= 3
	})
	dl, err := e.q.DeadLetters.All(ctx)
	if err != nil || len(dl) != 2 {
		t.Fatalf("dead letters = %+v, %v", dl, err)
	}
	var stray job.DeadLetter
	for _, d := range dl {
		if d.JobID != j.ID || d.Code != "invalid_message" {
			t.Fatalf("dead letter %+v, want %s invalid_message", d, j.ID)
		}
		if strings.Contains(d.Reason, "vodpipe.jobs.sumbit") {
			stray = d
		}
	}
	if !strings.Contains(stray.Reason, "new Nats-Msg-Id") {
		t.Fatalf("stray copy's dead letter = %+v, want the subject and the advice on republishing", stray)
	}
	if ev := e.events(job.EventFailed, j.ID); len(ev) != 0 {
		t.Fatalf("job.failed sent for a job that completed: %+v", ev)
	}
	if s := e.waitState(j.ID, job.StateCompleted, time.Second); s.FileID == "" {
		t.Fatalf("status = %+v", s)
	}
}

func must2(s string, _ []byte) string { return s }

// TestSignatureServiceForcingOneTime: when the service makes every signature
// one-time (VODPIPE_SIGN_FORCE_ONE_TIME), a job that did not ask for one
// still gets a fresh signature for each VOD call: none is refused as used.
func TestSignatureServiceForcingOneTime(t *testing.T) {
	e := newEnvPolicy(t, true, signer.Policy{MaxValidity: time.Hour, ForceOneTime: true})
	e.startWorker("w1")
	src, b := e.source("forced.mp4", 300_000)
	e.submit(&job.Job{ID: "forced-1", Source: src})
	e.storedEquals(e.waitState("forced-1", job.StateCompleted, 30*time.Second), b)
	uses := e.sim.SignatureUses()
	if len(uses) != 2 {
		t.Fatalf("signatures = %+v, want two (apply, commit)", uses)
	}
	for _, u := range uses {
		if !u.OneTime || u.Uses != 1 || u.Refused != 0 {
			t.Fatalf("signature use = %+v; want one-time, used once, never refused", u)
		}
	}
}

func TestOneTimeSignaturesShortCredentialsAndFaults(t *testing.T) {
	e := newEnv(t, true, func(c *vodsim.Config) {
		c.Faults = vodsim.FaultConfig{CredentialLifetime: vodsim.Duration(2 * time.Second), Bandwidth: 12 << 20,
			Rules: []vodsim.FaultRule{
				{Op: vodsim.OpUploadPart, ErrorRate: 0.05, ResetRate: 0.05},
				{Op: vodsim.OpPutObject, ErrorRate: 0.05, ResetRate: 0.05},
				{Op: vodsim.OpInitiateMultipart, ErrorRate: 0.05},
				{Op: vodsim.OpCompleteMultipart, ErrorRate: 0.05},
				{Op: vodsim.OpApply, ErrorRate: 0.05},
				{Op: vodsim.OpCommit, ErrorRate: 0.05},
			}}
	})
	e.startWorker("w1")
	e.startWorker("w2")
	var want [][]byte
	for i := range 4 {
		src, b := e.source("faulty-"+string(rune('a'+i))+".mp4", 6<<20+i*1000)
		want = append(want, b)
		e.submit(&job.Job{ID: "faulty-" + string(rune('a'+i)), Source: src, OneTimeSignature: true})
	}
	for i := range 4 {
		s := e.waitState("faulty-"+string(rune('a'+i)), job.StateCompleted, 90*time.Second)
		e.storedEquals(s, want[i])
	}
	for _, u := range e.sim.SignatureUses() {
		if !u.OneTime || u.Uses != 1 {
			t.Fatalf("signature use = %+v; every signature must be one-time and used once", u)
		}
	}
	if len(e.sim.Files()) != 4 {
		t.Fatalf("files = %d", len(e.sim.Files()))
	}
}

func TestCancelInTheMiddleAbortsTheMultipartUpload(t *testing.T) {
	e := newEnv(t, true, func(c *vodsim.Config) { c.Faults = vodsim.FaultConfig{Bandwidth: 4 << 20} })
	e.startWorker("w1")
	src, _ := e.source("cancel.mp4", 16<<20)
	e.submit(&job.Job{ID: "cancel-1", Source: src})
	testharness.WaitFor(t, 20*time.Second, "a part in vodsim", func() bool {
		u := e.sim.Uploads()
		return len(u) == 1 && len(u[0].Parts) >= 2
	})
	if _, err := e.q.Control.Cancel(t.Context(), "cancel-1"); err != nil {
		t.Fatal(err)
	}
	e.waitState("cancel-1", job.StateCanceled, 20*time.Second)
	if n := len(e.sim.Uploads()); n != 0 {
		t.Fatalf("%d multipart uploads left open", n)
	}
	if len(e.sim.Files()) != 0 {
		t.Fatal("a canceled job was committed")
	}
	keys, _ := e.redis.Client(t).Keys(t.Context(), "*cancel-1*state*").Result()
	if len(keys) != 0 {
		t.Fatalf("resume state left: %v", keys)
	}
}

// A worker whose view of the control bucket still holds a pause that a
// resume has since withdrawn (its watch lags) does not pause the job: it
// reads the key before pausing, and the job runs to completion.
func TestWithdrawnPauseIsNotCarriedOut(t *testing.T) {
	e := newEnv(t, false)
	w, _ := e.runWorker("w1")
	src, data := e.source("withdrawn.mp4", 3<<20+17)
	w.SetControlView("withdrawn-1", job.ControlPause)
	e.submit(&job.Job{ID: "withdrawn-1", Source: src})
	s := e.waitState("withdrawn-1", job.StateCompleted, 30*time.Second)
	e.storedEquals(s, data)
	if n := len(e.events(job.EventPaused, "withdrawn-1")); n != 0 {
		t.Fatalf("job.paused events = %d for a pause the bucket no longer held", n)
	}
	if !strings.Contains(e.logBuf.String(), "pause withdrawn") {
		t.Fatalf("the run did not stop for the stale pause, so the test proves nothing; logs:\n%s", e.logBuf.String())
	}
}

// A worker whose view of the control bucket still holds a cancel the
// bucket no longer has (an earlier job's of the same id, forgotten as this
// one was created, its deletion not yet followed) does not cancel the job:
// it reads the key before it takes a cancel, and the job completes.
func TestACancelNoLongerInTheBucketIsNotCarriedOut(t *testing.T) {
	e := newEnv(t, false)
	w, _ := e.runWorker("w1")
	src, data := e.source("stale-cancel.mp4", 3<<20+29)
	w.SetControlView("stale-cancel-1", job.ControlCancel)
	e.submit(&job.Job{ID: "stale-cancel-1", Source: src})
	s := e.waitState("stale-cancel-1", job.StateCompleted, 30*time.Second)
	e.storedEquals(s, data)
	if n := len(e.events(job.EventCanceled, "stale-cancel-1")); n != 0 {
		t.Fatalf("job.canceled events = %d for a cancel the bucket no longer held", n)
	}
}

func TestPauseThenResumeContinuesFromOffset(t *testing.T) {
	e := newEnv(t, true, func(c *vodsim.Config) { c.Faults = vodsim.FaultConfig{Bandwidth: 4 << 20} })
	e.startWorker("w1")
	const size = 16 << 20
	src, data := e.source("pause.mp4", size)
	e.submit(&job.Job{ID: "pause-1", Source: src, Metadata: json.RawMessage(`{"file":"pause.mp4"}`)})
	testharness.WaitFor(t, 20*time.Second, "parts in vodsim", func() bool {
		u := e.sim.Uploads()
		return len(u) == 1 && len(u[0].Parts) >= 3
	})
	if _, err := e.q.Control.Pause(t.Context(), "pause-1"); err != nil {
		t.Fatal(err)
	}
	e.waitState("pause-1", job.StatePaused, 20*time.Second)
	// The pause has taken effect once job.paused is out: the worker looks at
	// the control once more after its paused status, and a resume landing in
	// between is carried out as a pause withdrawn (no job.paused), which is
	// not what this test is about.
	testharness.WaitFor(t, 10*time.Second, "job.paused", func() bool { return len(e.events(job.EventPaused, "pause-1")) == 1 })
	u := e.sim.Uploads()
	if len(u) != 1 {
		t.Fatalf("paused job's multipart upload: %+v", u)
	}
	partsAtPause := len(u[0].Parts)
	received := e.sim.BytesReceived()
	if _, err := e.q.Control.Resume(t.Context(), "pause-1"); err != nil {
		t.Fatal(err)
	}
	s := e.waitState("pause-1", job.StateCompleted, 60*time.Second)
	e.storedEquals(s, data)
	// After the resume only the missing parts were sent (plus parts cut by the pause, at most the concurrency).
	resent := e.sim.BytesReceived() - received
	missing := int64(size) - int64(partsAtPause)<<20
	if resent > missing+4<<20 {
		t.Fatalf("sent %d bytes after resume, %d were missing", resent, missing)
	}
	if ev := e.events(job.EventPaused, "pause-1"); len(ev) != 1 {
		t.Fatalf("paused events = %d", len(ev))
	}
	// The run after the resume says where it starts from, and every
	// job.started and job.paused carries the job's metadata.
	started := e.events(job.EventStarted, "pause-1")
	if len(started) != 2 {
		t.Fatalf("started events = %d, want 2", len(started))
	}
	var first, second job.StartedData
	if json.Unmarshal(started[0].Data, &first) != nil || json.Unmarshal(started[1].Data, &second) != nil ||
		first.BytesResumed != 0 || second.BytesResumed <= 0 || second.BytesResumed > int64(partsAtPause)<<20 {
		t.Fatalf("bytesResumed %d then %d, want 0 then the parts recorded of the %d at the pause", first.BytesResumed, second.BytesResumed, partsAtPause)
	}
	for _, ev := range append(started, e.events(job.EventPaused, "pause-1")...) {
		if !strings.Contains(string(ev.Data), `"metadata":{"file":"pause.mp4"}`) {
			t.Errorf("%s without the job's metadata: %s", ev.Type, ev.Data)
		}
	}
	// A 4-second upload reports progress, throttled: more than none, far fewer than its 16 parts' writes.
	if n := len(e.events(job.EventProgress, "pause-1")); n == 0 || n > 40 {
		t.Fatalf("progress events = %d", n)
	}
}

var _ = errors.Is

// TestUploadIsRecordedBeforeItsCommit: the media file's storage path is mapped
// to the job before CommitUploadUGC is sent (vodsim holds the commit 3 s), so
// notify can name the job in VOD's event even if the worker dies before it
// records the FileId.
func TestUploadIsRecordedBeforeItsCommit(t *testing.T) {
	e := newEnv(t, true, func(c *vodsim.Config) {
		c.Faults = vodsim.FaultConfig{Rules: []vodsim.FaultRule{{Op: vodsim.OpCommit, Latency: vodsim.Duration(3 * time.Second)}}}
	})
	e.startWorker("w1")
	src, _ := e.source("recorded.mp4", 3<<20+5)
	j := &job.Job{ID: "recorded-1", Source: src}
	e.submit(j)
	// Before the commit there is no media URL yet, only the session's
	// storage path; the lookup goes by the path whatever the host.
	var key string
	testharness.WaitFor(t, 20*time.Second, "the upload recorded", func() bool {
		ss := e.sim.Sessions()
		if len(ss) != 1 || ss[0].VideoKey == "" {
			return false
		}
		key = ss[0].VideoKey
		id, err := e.q.Files.JobForMediaURL(t.Context(), "http://any.host/"+key)
		return err == nil && id == j.ID
	})
	if n := len(e.sim.Files()); n != 0 {
		t.Fatalf("vodsim has %d files when the record appeared: it was written after the commit", n)
	}
	s := e.waitState(j.ID, job.StateCompleted, 30*time.Second)
	f := e.sim.Files()
	if len(f) != 1 || f[0].FileID != s.FileID || f[0].VideoKey != key {
		t.Fatalf("vodsim files %+v, job %+v, recorded key %s", f, s, key)
	}
	// The URL VOD's event carries finds the job.
	if id, err := e.q.Files.JobForMediaURL(t.Context(), f[0].MediaURL); err != nil || id != j.ID {
		t.Fatalf("job for the file's MediaUrl %s: %q, %v", f[0].MediaURL, id, err)
	}
	if _, err := e.q.Files.JobForMediaURL(t.Context(), "http://media.example/other/key.mp4"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("another path: %v, want ErrNotFound", err)
	}
}

// A signature the policy refuses fails the job at once, for good, with the
// refusal's code: no retry changes the policy.
func TestSignatureRefusalFailsTheJob(t *testing.T) {
	e := newEnvPolicy(t, false, signer.Policy{MaxValidity: time.Hour})
	e.startWorker("w1")
	src, _ := e.source("refused.mp4", 1000)
	e.submit(&job.Job{ID: "refused-1", Source: src, Procedure: "NotAllowed"})
	s := e.waitState("refused-1", job.StateFailed, 30*time.Second)
	if s.Error == nil || s.Error.Code != "policy_refused" || !s.Error.Permanent || s.Runs != 1 {
		t.Fatalf("status = %+v (error %+v), want failed once with policy_refused", s, s.Error)
	}
}

// A worker composed of given parts (the queue, an in-memory resume store,
// the signature service's client, a VOD client, the sources) runs a job
// like one New builds from the environment.
func TestComposedWorkerWithMemoryStore(t *testing.T) {
	e := newEnv(t, false)
	src, data := e.source("composed.mp4", 2<<20+5)
	sources, err := upload.NewSources(e.cfg.SourcesConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sources.Close() })
	cfg := e.cfg
	cfg.ID = "composed"
	store := resume.NewMemory()
	w := worker.Compose(cfg, slog.New(slog.NewJSONHandler(e.logBuf, nil)), worker.Deps{
		Queue: e.q, Store: store, Signer: signer.NewClient(e.nats.Connect(t), 5*time.Second),
		VOD:          e.sim.VODClient(),
		Sources:      sources,
		COSTransport: vod.DialOverride(e.sim.Addr, 8),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	e.submit(&job.Job{ID: "composed-1", Source: src})
	s := e.waitState("composed-1", job.StateCompleted, 30*time.Second)
	e.storedEquals(s, data)
	// The lease went back to the store it came from.
	if _, err := store.Acquire(t.Context(), "composed-1", "probe", time.Minute); err != nil {
		t.Fatalf("lease of the completed job in the memory store: %v, want it free", err)
	}
}

// TestStatusRetentionShorterThanADayIsRefused: a worker writes finished
// statuses with its configuration's retention as their TTL, so it refuses
// one shorter than the windows that read them (ingest's Idempotency-Key,
// 24 h), as ingest does, naming the variable.
func TestStatusRetentionShorterThanADayIsRefused(t *testing.T) {
	w, err := worker.New(t.Context(), worker.Config{QueueConfig: worker.QueueConfig{StatusRetention: time.Hour}}, nil)
	if err == nil {
		w.Close()
		t.Fatal("a worker took a status retention of 1h")
	}
	if !strings.Contains(err.Error(), "VODPIPE_STATUS_RETENTION") {
		t.Fatalf("refusal %q does not name VODPIPE_STATUS_RETENTION", err)
	}
}
