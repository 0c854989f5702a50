package natsperm_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/natsembed"
	"github.com/vodpipe/vodpipe/internal/natsperm"
	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// A guarded server refuses what each role may not do, as a permissions
// violation reported by the server; what the role may do (the controls)
// works on the same connection.
func TestRefusals(t *testing.T) {
	g := startGuarded(t)
	status := "$KV." + queue.StatusBucket
	subs := "$KV." + fanout.SubscriptionsBucket
	for _, tc := range []struct {
		role natsperm.Role
		// requests are subjects the role may not publish (or request) on.
		requests []string
		// subscriptions are subjects the role may not subscribe to.
		subscriptions []string
	}{
		{natsperm.Publisher, []string{
			signer.Subject,
			"$JS.API.DIRECT.GET.KV_" + queue.StatusBucket + "." + status + ".job-1",
			"$JS.API.STREAM.INFO.KV_" + queue.StatusBucket,
			"$JS.API.CONSUMER.CREATE.KV_" + queue.StatusBucket,
			"$JS.API.DIRECT.GET.KV_" + fanout.SubscriptionsBucket + "." + subs + ".sub-1",
			"$JS.API.CONSUMER.CREATE.KV_" + fanout.SubscriptionsBucket,
			"$JS.API.STREAM.UPDATE." + queue.JobsStream,
			"vodpipe.jobs.other",
			queue.FilesChanges + ".5285890781234", // a forged FileId → job record for notify's watch
			queue.ControlChanges + ".job-1",       // a forged stored cancel for the workers' views
			queue.SubscriptionChanges + ".sub-1",  // a forged webhook subscription for notify's dispatchers
			queue.IndexPrefix + ".state.completed",
			"$JS.API.DIRECT.GET." + queue.IndexStream,
			queue.LayoutSubject,
			"$JS.API.STREAM.PURGE.KV_" + queue.ControlBucket,
			"$JS.API.STREAM.MSG.GET.KV_" + queue.ControlBucket,
		}, []string{signer.Subject, status + ".>", subs + ".>", queue.SubscriptionChanges + ".>", queue.JobsSubject, natsperm.Worker.Inbox() + ".>",
			"_INBOX.>"}}, // other clients' replies on the default inbox (an operator's admin reads)
		{natsperm.Worker, []string{
			queue.JobsSubject,
			queue.FilesChanges + ".5285890781234", // a forged FileId → job record for notify's watch
			queue.ControlChanges + ".job-1",       // a forged stored cancel for the other workers' views
			queue.SubscriptionChanges + ".sub-1",  // a forged webhook subscription for notify's dispatchers
			// No consumer of its own (a push consumer delivers wherever it is
			// told), and no stream to create or reshape.
			"$JS.API.CONSUMER.CREATE.KV_" + queue.ControlBucket,
			"$JS.API.CONSUMER.CREATE.KV_" + queue.ControlBucket + ".c1.>",
			"$JS.API.CONSUMER.CREATE." + queue.JobsStream + ".c1.>",
			"$JS.API.STREAM.CREATE.KV_" + queue.ResumeBucket,
			"$JS.API.STREAM.UPDATE.KV_" + queue.ResumeBucket,
			// Purging would erase pending cancels without a trace for followers.
			"$JS.API.STREAM.PURGE.KV_" + queue.ControlBucket,
			"$JS.API.STREAM.PURGE.KV_" + fanout.SubscriptionsBucket,
			queue.LayoutSubject,
			"$JS.API.DIRECT.GET.KV_" + fanout.SubscriptionsBucket + "." + subs + ".sub-1",
			"$JS.API.STREAM.UPDATE.KV_" + fanout.SubscriptionsBucket,
		}, []string{signer.Subject, subs + ".>", queue.SubscriptionChanges + ".>", natsperm.Ingest.Inbox() + ".>"}},
		{natsperm.Notify, []string{signer.Subject, queue.JobsSubject, "$JS.API.DIRECT.GET.KV_" + queue.StatusBucket + "." + status + ".job-1",
			queue.FilesChanges + ".5285890781234", // a forged FileId → job record for notify's watch
			queue.ControlChanges + ".job-1",       // a forged stored cancel for the workers' views
			queue.SubscriptionChanges + ".sub-1",  // a forged record for the other replicas' dispatchers
			// Its consumers and streams come from ingest's layout broker.
			"$JS.API.CONSUMER.CREATE." + queue.EventsStream, "$JS.API.CONSUMER.CREATE." + queue.EventsStream + ".c1.>",
			"$JS.API.CONSUMER.DURABLE.CREATE." + queue.EventsStream + ".c1", "$JS.API.CONSUMER.CREATE.KV_" + queue.FilesBucket,
			"$JS.API.STREAM.CREATE." + fanout.AttemptsStream, "$JS.API.STREAM.UPDATE." + fanout.AttemptsStream,
			"$JS.API.STREAM.UPDATE.KV_" + fanout.SubscriptionsBucket,
			queue.IndexPrefix + ".state.completed", "$JS.API.STREAM.MSG.DELETE." + queue.IndexStream,
			// Its sweep purges its own bucket, never the workers' controls.
			"$JS.API.STREAM.PURGE.KV_" + queue.ControlBucket},
			[]string{signer.Subject, natsperm.Worker.Inbox() + ".>"}},
		{natsperm.Ingest, []string{"$JS.API.DIRECT.GET.KV_" + fanout.SubscriptionsBucket + "." + subs + ".sub-1",
			queue.FilesChanges + ".5285890781234", // a forged FileId → job record for notify's watch
			queue.ControlChanges + ".job-1",       // a forged stored cancel for the workers' views
			queue.SubscriptionChanges + ".sub-1",  // a forged webhook subscription for notify's dispatchers
			subs + ".sub-1"},                      // no answering wherever a requester points (allow_responses)
			[]string{subs + ".>"}},
	} {
		t.Run(string(tc.role), func(t *testing.T) {
			nc, violations := g.connect(t, tc.role)
			for _, subj := range tc.requests {
				if err := nc.PublishRequest(subj, nc.NewRespInbox(), []byte("{}")); err != nil {
					t.Fatal(err)
				}
				wantViolation(t, nc, violations, "Publish to \""+subj+"\"")
			}
			for _, subj := range tc.subscriptions {
				sub, err := nc.SubscribeSync(subj)
				if err != nil {
					t.Fatal(err)
				}
				wantViolation(t, nc, violations, "Subscription to \""+subj+"\"")
				_ = sub.Unsubscribe()
			}
		})
	}
}

// JetStream answers a request on the reply subject its sender named, and
// the server checks that subject against nobody's rights: in one shared
// account a publisher could name a status key and have JetStream's publish
// acknowledgement overwrite that job's status, and a worker could have a
// value it stored re-published as a job. With each role in its own
// account the server maps every reply back into the sender's account, so
// none of these lands: the status key stays absent, and the jobs stream
// holds only the job published after them (whose acknowledgement also
// tells that the ones before it were processed).
func TestRepliesStayInTheirAccount(t *testing.T) {
	g := startGuarded(t)
	ctx := t.Context()
	const victim = "victim-1"
	jobMsg, _ := (&job.Job{V: 1, ID: "injected", Source: "file:///x.mp4"}).Encode()

	// The publisher's job, its acknowledgement pointed at a status key.
	pub, _ := g.connect(t, natsperm.Publisher)
	if err := pub.PublishRequest(queue.JobsSubject, "$KV."+queue.StatusBucket+"."+victim, jobMsg); err != nil {
		t.Fatal(err)
	}
	// A worker stores a job as a status value (it may write statuses),
	// then reads it back with its answer pointed at the jobs subject.
	wk, _ := g.connect(t, natsperm.Worker)
	if _, err := wk.Request("$KV."+queue.StatusBucket+".stored", jobMsg, 5*time.Second); err != nil {
		t.Fatalf("the worker's status write: %v", err)
	}
	get := "$JS.API.DIRECT.GET.KV_" + queue.StatusBucket + ".$KV." + queue.StatusBucket + ".stored"
	if err := wk.PublishRequest(get, queue.JobsSubject, nil); err != nil {
		t.Fatal(err)
	}
	// notify stores a FileId record and reads it back the same way.
	nf, _ := g.connect(t, natsperm.Notify)
	if _, err := nf.Request("$KV."+queue.FilesBucket+".f1", jobMsg, 5*time.Second); err != nil {
		t.Fatalf("notify's files write: %v", err)
	}
	getFile := "$JS.API.DIRECT.GET.KV_" + queue.FilesBucket + ".$KV." + queue.FilesBucket + ".f1"
	if err := nf.PublishRequest(getFile, queue.JobsSubject, nil); err != nil {
		t.Fatal(err)
	}
	// Each connection's requests are handled in order: an answered
	// request after the forged ones means those were handled too.
	for nc, subj := range map[*nats.Conn]string{wk: get, nf: getFile} {
		if _, err := nc.Request(subj, nil, 5*time.Second); err != nil {
			t.Fatalf("a direct get after the forged one: %v", err)
		}
	}
	pjs, err := jetstream.New(pub)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := pjs.Publish(ctx, queue.JobsSubject, jobMsg)
	if err != nil {
		t.Fatalf("the publisher's own job: %v", err)
	}

	kv, err := g.admin.KeyValue(ctx, queue.StatusBucket)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, victim); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("status %s after the forged reply: %v, %v; want none", victim, e, err)
	}
	st, err := g.admin.Stream(ctx, queue.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 2 || ack.Sequence != 2 {
		t.Errorf("the jobs stream holds %d messages (the last at %d), want 2: the publisher's two jobs, nothing re-published", n, ack.Sequence)
	}
}

// notify's consumers and streams are made by ingest's layout broker, which
// refuses what could deliver or capture outside them: a push consumer (its
// deliver subject is not checked by the server), a consumer of other
// subjects than events, notify's attempt log with another subject or with
// sources, and a bucket that is not notify's. What it allows works.
func TestLayoutBrokerRefusesWhatReachesOutside(t *testing.T) {
	g := startGuarded(t)
	ctx := t.Context()
	in, _ := g.connect(t, natsperm.Ingest)
	ijs, err := jetstream.New(in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := queue.ServeLayout(in, ijs, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	nf, _ := g.connect(t, natsperm.Notify)
	njs, err := jetstream.New(nf)
	if err != nil {
		t.Fatal(err)
	}
	layout := queue.NewLayout(njs)
	events := queue.EventsPrefix + ".>"
	attempts := jetstream.StreamConfig{Name: fanout.AttemptsStream, Subjects: []string{queue.AttemptsPrefix + ".>"}}
	for name, ask := range map[string]func() error{
		"push consumer": func() error {
			_, err := layout.Consumer(ctx, jetstream.ConsumerConfig{Durable: "push", FilterSubject: events, DeliverSubject: queue.JobsSubject})
			return err
		},
		"consumer whose filter is past the server's control line": func() error {
			// Created on a subject holding the filter, it would have the
			// server close the broker's own connection.
			_, err := layout.Consumer(ctx, jetstream.ConsumerConfig{Name: "long", FilterSubject: queue.EventsPrefix + ".job.queued." + strings.Repeat("j", 5000)})
			return err
		},
		"consumer of jobs": func() error {
			_, err := layout.Consumer(ctx, jetstream.ConsumerConfig{Durable: "jobs", FilterSubject: queue.JobsSubject})
			return err
		},
		"attempt log capturing replies": func() error {
			c := attempts
			c.Subjects = append(c.Subjects, "_R_.>")
			_, err := layout.Stream(ctx, c)
			return err
		},
		"attempt log sourcing statuses": func() error {
			c := attempts
			c.Sources = []*jetstream.StreamSource{{Name: "KV_" + queue.StatusBucket}}
			_, err := layout.Stream(ctx, c)
			return err
		},
		"the status bucket": func() error {
			_, err := layout.Bucket(ctx, jetstream.KeyValueConfig{Bucket: queue.StatusBucket})
			return err
		},
		"subscriptions republished as jobs": func() error {
			_, err := layout.Bucket(ctx, jetstream.KeyValueConfig{Bucket: fanout.SubscriptionsBucket,
				RePublish: &jetstream.RePublish{Source: "$KV." + fanout.SubscriptionsBucket + ".>", Destination: "vodpipe.jobs.>"}})
			return err
		},
		"VOD events republished as subscriptions": func() error {
			_, err := layout.Bucket(ctx, jetstream.KeyValueConfig{Bucket: queue.VODEventsBucket,
				RePublish: &jetstream.RePublish{Source: "$KV." + queue.VODEventsBucket + ".>", Destination: queue.SubscriptionChanges + ".>"}})
			return err
		},
	} {
		if err := ask(); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s: %v, want a refusal", name, err)
		}
	}
	if r := in.Stats().Reconnects; r != 0 || !in.IsConnected() {
		t.Errorf("the broker's connection: %d reconnects, connected %v; a request must not cost it", r, in.IsConnected())
	}
	for _, name := range []string{"push", "jobs"} {
		if _, err := g.admin.Consumer(ctx, queue.EventsStream, name); !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Errorf("consumer %s exists after its refusal: %v", name, err)
		}
	}
	if _, err := g.admin.Stream(ctx, fanout.AttemptsStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("the attempt log exists after its refusals: %v", err)
	}
	// The controls: what notify needs.
	c, err := layout.Consumer(ctx, jetstream.ConsumerConfig{Durable: "pull", FilterSubject: events, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil || c.CachedInfo().Config.DeliverSubject != "" {
		t.Fatalf("a pull consumer of events: %v", err)
	}
	if _, err := layout.Stream(ctx, attempts); err != nil {
		t.Fatalf("the attempt log: %v", err)
	}
	if _, err := layout.Bucket(ctx, jetstream.KeyValueConfig{Bucket: fanout.SubscriptionsBucket, RePublish: queue.SubscriptionsRePublish()}); err != nil {
		t.Fatalf("the subscriptions bucket: %v", err)
	}
	// Its RePublish reaches notify's account: the dispatchers follow it.
	seen := make(chan *nats.Msg, 1)
	sub, err := nf.Subscribe(queue.SubscriptionChanges+".>", func(m *nats.Msg) { seen <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nf.Flush(); err != nil {
		t.Fatal(err)
	}
	kv, err := njs.KeyValue(ctx, fanout.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "sub-1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-seen:
		if m.Subject != queue.SubscriptionChanges+".sub-1" || m.Header.Get(jetstream.SequenceHeader) == "" {
			t.Fatalf("notify got %s %v, want the stored record with its sequence", m.Subject, m.Header)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stored subscription record never reached notify's account")
	}
}

// Worker and notify attach to the layout ingest owns, and may not reshape
// it: an update of the JOBS or EVENTS stream that would make it capture
// ingest's replies is refused by the server as a permissions violation, and
// the stream keeps its subjects.
func TestAttachedServicesCannotReshapeTheLayout(t *testing.T) {
	g := startGuarded(t)
	for _, role := range []natsperm.Role{natsperm.Worker, natsperm.Notify} {
		for _, stream := range []string{queue.JobsStream, queue.EventsStream, "KV_" + queue.StatusBucket} {
			t.Run(string(role)+"/"+stream, func(t *testing.T) {
				nc, violations := g.connect(t, role)
				js, err := jetstream.New(nc)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := queue.Attach(t.Context(), js, queue.Config{}); err != nil {
					t.Fatalf("%s cannot attach: %v", role, err)
				}
				st, err := js.Stream(t.Context(), stream)
				if err != nil {
					t.Fatal(err)
				}
				cfg := st.CachedInfo().Config
				want := slices.Clone(cfg.Subjects)
				cfg.Subjects = append(cfg.Subjects, natsperm.Ingest.Inbox()+".>")
				done := make(chan error, 1)
				go func() {
					// The refused request gets no answer: it ends at its deadline.
					ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
					defer cancel()
					_, err := js.UpdateStream(ctx, cfg)
					done <- err
				}()
				wantViolation(t, nc, violations, "Publish to \"$JS.API.STREAM.UPDATE."+stream+"\"")
				if err := <-done; err == nil {
					t.Fatal("the update succeeded")
				}
				info, err := g.admin.Stream(t.Context(), stream)
				if err != nil {
					t.Fatal(err)
				}
				if got := info.CachedInfo().Config.Subjects; !slices.Equal(got, want) {
					t.Fatalf("%s holds %v after the refused update, want %v", stream, got, want)
				}
			})
		}
	}
}

// Before ingest has created the layout, a worker's attach finds it missing
// and reports it as not ready (WhenReady waits), instead of creating it.
func TestAttachBeforeTheLayoutIsNotReady(t *testing.T) {
	users := natsembed.NewUsers()
	ns, err := natsembed.Start(filepath.Join(t.TempDir(), "nats"), "127.0.0.1", natsserver.RANDOM_PORT, natsembed.WithUsers(users))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	g := &guarded{ns: ns, users: users, dir: t.TempDir()}
	nc, violations := g.connect(t, natsperm.Worker)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = queue.Attach(t.Context(), js, queue.Config{})
	if !errors.Is(err, queue.ErrNotCreated) || !queue.NotReady(err) {
		t.Fatalf("attach before ingest: %v, want ErrNotCreated, not ready", err)
	}
	// Violations come in order: the first must be this sentinel's, not one
	// of attach's.
	if err := nc.Publish(queue.JobsSubject, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	wantViolation(t, nc, violations, "Publish to \""+queue.JobsSubject+"\"")
}

// The publisher publishes a job and gets JetStream's ack; a worker's
// signature service cannot serve: its subscription is refused, and a
// request from a worker finds no responder.
func TestPublisherPublishesAndWorkerCannotServeSignatures(t *testing.T) {
	g := startGuarded(t)
	pub, _ := g.connect(t, natsperm.Publisher)
	js, err := jetstream.New(pub)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := (&job.Job{V: 1, ID: "p-1", Source: "file:///x.mp4"}).Encode()
	if _, err := js.PublishMsg(t.Context(), &nats.Msg{Subject: queue.JobsSubject, Data: b,
		Header: nats.Header{jetstream.MsgIDHeader: []string{"p-1"}}}); err != nil {
		t.Fatalf("the publisher's job: %v", err)
	}

	wk, violations := g.connect(t, natsperm.Worker)
	sg, err := signer.New("AKIDtest", "key", signer.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := sg.Serve(wk, noJobs{}, nil)
	if err == nil {
		t.Cleanup(func() { _ = svc.Stop() })
	}
	wantViolation(t, wk, violations, "Subscription to \""+signer.Subject+"\"")
	if _, err := signer.NewClient(wk, time.Second).Sign(t.Context(), signer.Request{}); !errors.Is(err, signer.ErrUnavailable) {
		t.Fatalf("a worker's signature request answered by a worker's service: %v", err)
	}
}

// noJobs is a signature service's view of jobs when none is running.
type noJobs struct{}

func (noJobs) SigningJob(context.Context, string) (*job.Job, error) { return nil, job.ErrNotActive }

type guarded struct {
	ns    *natsserver.Server
	users natsembed.Users
	dir   string
	admin jetstream.JetStream
}

// startGuarded starts a server with natsperm's users and the job layout
// opened by the admin user.
func startGuarded(t testing.TB) *guarded {
	t.Helper()
	users := natsembed.NewUsers()
	ns, err := natsembed.Start(filepath.Join(t.TempDir(), "nats"), "127.0.0.1", natsserver.RANDOM_PORT, natsembed.WithUsers(users))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	g := &guarded{ns: ns, users: users, dir: t.TempDir()}
	admin, err := nats.Connect(ns.ClientURL(), nats.UserInfo(natsembed.AdminUser, users.AdminPassword))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := queue.Open(t.Context(), js, queue.Config{}); err != nil {
		t.Fatal(err)
	}
	g.admin = js
	return g
}

// connect connects as role's user, with the role's inbox prefix as its
// service would; violations receives the server's permission errors.
func (g *guarded) connect(t testing.TB, role natsperm.Role) (*nats.Conn, <-chan error) {
	t.Helper()
	pw := filepath.Join(g.dir, string(role))
	if err := os.WriteFile(pw, []byte(g.users.Passwords[role]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := natsconf.NATS{URL: g.ns.ClientURL(), User: string(role), PasswordFile: pw}
	errs := make(chan error, 64)
	nc := testharness.ConnectWith(t, cfg, nats.CustomInboxPrefix(role.Inbox()),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	return nc, errs
}

// wantViolation waits for the server's permissions violation naming what.
// The server sends it before the answer to the flush, so it is on its way
// when Flush returns.
func wantViolation(t *testing.T, nc *nats.Conn, errs <-chan error, what string) {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), what) {
			t.Fatalf("got %v, want a permissions violation for %s", err, what)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no permissions violation for %s", what)
	}
}

// A FileId a worker records reaches notify's watch (queue.FileWatch): the
// worker's write itself does not cross into notify's account (nats-server
// passes no message that came through a service import on to a stream
// export), so the files bucket publishes each write again
// (queue.FilesChanges), and notify follows that.
func TestWorkersFileRecordReachesNotify(t *testing.T) {
	g := startGuarded(t)
	ctx := t.Context()
	nf, nq := g.attach(t, natsperm.Notify)
	watch := nq.Files.Watch(ctx, nil)
	testharness.WaitFor(t, 5*time.Second, "notify's files watch to go live", watch.Live)
	seen := make(chan string, 1)
	sub, err := nf.Subscribe(queue.FilesChanges+".>", func(m *nats.Msg) { seen <- m.Subject + "=" + string(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nf.Flush(); err != nil {
		t.Fatal(err)
	}

	_, wq := g.attach(t, natsperm.Worker)
	if err := wq.Files.Record(ctx, "5285890781234", "job-7"); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-seen:
		if want := queue.FilesChanges + ".5285890781234=job-7"; got != want {
			t.Fatalf("notify saw %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the worker's FileId record never reached notify's account")
	}
	// The watch has it too: with the record gone from the bucket, a wait
	// for it can only answer from what the watch saw.
	files, err := g.admin.KeyValue(ctx, queue.FilesBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := files.Purge(ctx, "5285890781234"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if id, err := watch.Wait(wctx, "5285890781234"); err != nil || id != "job-7" {
		t.Fatalf("notify's files watch: %q, %v; want job-7 from the worker's record", id, err)
	}
}

// TestIngestSweepsTheControlBucket: ingest's user may purge old deletion
// markers of the control bucket (queue.Control.Sweep), which a worker's may
// not (TestRefusals).
func TestIngestSweepsTheControlBucket(t *testing.T) {
	g := startGuarded(t)
	ctx := t.Context()
	_, q := g.attach(t, natsperm.Ingest)
	if err := q.Control.Set(ctx, "job-9", job.ControlCancel); err != nil {
		t.Fatal(err)
	}
	if err := q.Control.Set(ctx, "job-9", job.ControlNone); err != nil { // a marker
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if n, err := q.Control.Sweep(sctx, 0, 100); err != nil || n != 1 {
		t.Fatalf("ingest's sweep removed %d (%v), want the marker", n, err)
	}
}

// TestWorkerReadsAControlFromTheLeader: a worker's follow of the control
// bucket asks the stream's leader about a key gone from its read after a
// reconnect (queue.Follow); its user may make that read.
func TestWorkerReadsAControlFromTheLeader(t *testing.T) {
	g := startGuarded(t)
	ctx := t.Context()
	_, iq := g.attach(t, natsperm.Ingest)
	if err := iq.Control.Set(ctx, "job-3", job.ControlPause); err != nil {
		t.Fatal(err)
	}
	nc, violations := g.connect(t, natsperm.Worker)
	m, err := nc.Request("$JS.API.STREAM.MSG.GET.KV_"+queue.ControlBucket, []byte(`{"last_by_subj":"$KV.`+queue.ControlBucket+`.job-3"}`), 5*time.Second)
	if err != nil {
		t.Fatalf("the leader read: %v", err)
	}
	if !strings.Contains(string(m.Data), `"message"`) {
		t.Fatalf("the leader read answered %s", m.Data)
	}
	select {
	case err := <-violations:
		t.Fatalf("violation: %v", err)
	default:
	}
}

// TestWorkerFollowsTheStoredControls: a worker follows the controls as
// the control bucket's RePublish publishes them again once stored
// (queue.ControlChanges, from the shared account into the worker's); its
// user may subscribe there, and its watch sees ingest's pause.
func TestWorkerFollowsTheStoredControls(t *testing.T) {
	g := startGuarded(t)
	ctx := t.Context()
	nc, wq := g.attach(t, natsperm.Worker)
	seen := make(chan *nats.Msg, 1)
	sub, err := nc.Subscribe(queue.ControlChanges+".>", func(m *nats.Msg) { seen <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	views := make(chan job.Control, 4)
	loaded := make(chan struct{})
	go func() {
		_ = wq.Control.Watch(ctx, func(id string, c job.Control) {
			if id == "job-4" {
				views <- c
			}
		}, func() { close(loaded) })
	}()
	<-loaded
	_, iq := g.attach(t, natsperm.Ingest)
	if err := iq.Control.Set(ctx, "job-4", job.ControlPause); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-seen:
		if m.Subject != queue.ControlChanges+".job-4" || string(m.Data) != string(job.ControlPause) || m.Header.Get(jetstream.SequenceHeader) == "" {
			t.Fatalf("the worker got %s %q %v, want the stored pause with its sequence", m.Subject, m.Data, m.Header)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stored pause never reached the worker's account")
	}
	select {
	case c := <-views:
		if c != job.ControlPause {
			t.Fatalf("the worker's view: %q, want the pause", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the pause never reached the worker's view")
	}
}

// TestForgedServerHeadersChangeNothing: a worker may write the control
// bucket, and may set headers on its write that the server sets on what it
// republishes and answers direct gets with (Nats-Sequence, Nats-Subject).
// The server appends its own after them; read first, the forged ones
// would have another worker hold the write at the highest sequence (every
// later control of the job ignored as older) or as another job's, and a
// Status header would end a batched read at it. Neither
// a follower that saw the write nor one that reads it later is fooled.
func TestForgedServerHeadersChangeNothing(t *testing.T) {
	g := startGuarded(t)
	ctx := t.Context()
	watch := func(wq *queue.Queue) func(id string) (job.Control, bool) {
		var mu sync.Mutex
		view := map[string]job.Control{}
		loaded := make(chan struct{})
		go func() {
			_ = wq.Control.Watch(ctx, func(id string, c job.Control) {
				mu.Lock()
				defer mu.Unlock()
				view[id] = c
			}, func() { close(loaded) })
		}()
		<-loaded
		return func(id string) (job.Control, bool) {
			mu.Lock()
			defer mu.Unlock()
			c, ok := view[id]
			return c, ok
		}
	}
	_, wq := g.attach(t, natsperm.Worker)
	seen := watch(wq)
	forger, _ := g.attach(t, natsperm.Worker)
	fjs, err := jetstream.New(forger)
	if err != nil {
		t.Fatal(err)
	}
	forged := &nats.Msg{Subject: "$KV." + queue.ControlBucket + ".job-9", Data: []byte(job.ControlPause), Header: nats.Header{
		jetstream.SequenceHeader: []string{"18446744073709551615"},
		jetstream.SubjectHeader:  []string{"$KV." + queue.ControlBucket + ".victim"},
		"Status":                 []string{"204"}, // a direct get's end of batch
	}}
	if _, err := fjs.PublishMsg(ctx, forged); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 5*time.Second, "the forged write in the view", func() bool {
		c, _ := seen("job-9")
		return c == job.ControlPause
	})
	// A follower that starts now reads the forged write with a direct get.
	_, lq := g.attach(t, natsperm.Worker)
	later := watch(lq)
	if c, _ := later("job-9"); c != job.ControlPause {
		t.Fatalf("a later follower reads job-9 as %q, want the forged write's pause", c)
	}
	_, iq := g.attach(t, natsperm.Ingest)
	if err := iq.Control.Set(ctx, "job-9", job.ControlCancel); err != nil {
		t.Fatal(err)
	}
	for name, view := range map[string]func(string) (job.Control, bool){"the follower": seen, "the later follower": later} {
		testharness.WaitFor(t, 5*time.Second, name+" to take ingest's cancel after the forged write", func() bool {
			c, _ := view("job-9")
			return c == job.ControlCancel
		})
	}
	for name, view := range map[string]func(string) (job.Control, bool){"the follower": seen, "the later follower": later} {
		if c, ok := view("victim"); ok {
			t.Fatalf("%s holds %q for a job nobody wrote", name, c)
		}
	}
}

// TestNotifySweepsTheSubscriptionsBucket: notify's user may purge old
// deletion markers of its subscriptions bucket (queue.SweepBucket); a
// worker's may purge neither it nor the control bucket (TestRefusals).
func TestNotifySweepsTheSubscriptionsBucket(t *testing.T) {
	g := startGuarded(t)
	ctx := t.Context()
	// Made by ingest's layout broker when notify starts.
	if _, err := g.admin.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: fanout.SubscriptionsBucket, History: 1}); err != nil {
		t.Fatal(err)
	}
	nc, _ := g.connect(t, natsperm.Notify)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, fanout.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "sub_a", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "sub_a"); err != nil { // a marker
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if n, err := queue.SweepBucket(sctx, nc, fanout.SubscriptionsBucket, 0, 100); err != nil || n != 1 {
		t.Fatalf("notify's sweep removed %d (%v), want the marker", n, err)
	}
}

// attach connects as role's user and attaches to the job layout as the
// role's service does.
func (g *guarded) attach(t *testing.T, role natsperm.Role) (*nats.Conn, *queue.Queue) {
	t.Helper()
	nc, _ := g.connect(t, role)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Attach(t.Context(), js, queue.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return nc, q
}
