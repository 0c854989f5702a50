package signer_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/natsconf"
	"github.com/vodpipe/vodpipe/internal/natsembed"
	"github.com/vodpipe/vodpipe/internal/natsperm"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/signer"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// BenchmarkSignature times one signature request over NATS, the worker's
// way, for the price of the guards: with the job looked up in memory (no
// guard), with the job's status read from the status bucket (the service
// signs only for a running job, with that job's policy), and with that read
// from a worker in its own NATS account (the request and its answer
// crossing the accounts' import).
func BenchmarkSignature(b *testing.B) {
	j := &job.Job{ID: "bench-1", Procedure: "LongVideoPreset", StorageRegion: "ap-guangzhou"}
	sg, err := signer.New(testID, testKey, signer.Policy{Procedures: []string{"LongVideoPreset"}, StorageRegions: []string{"ap-guangzhou"},
		MaxValidity: time.Hour, ForceOneTime: true})
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, serving *nats.Conn, jobs signer.Jobs, requesting *nats.Conn) {
		svc, err := sg.Serve(serving, jobs, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = svc.Stop() })
		c := signer.NewClient(requesting, 5*time.Second)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := c.SignJob(b.Context(), j); err != nil {
				b.Fatal(err)
			}
		}
	}
	running := func(b *testing.B, js jetstream.JetStream) *queue.Statuses {
		q, err := queue.Open(b.Context(), js, queue.Config{})
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := q.Statuses.Create(b.Context(), j); err != nil {
			b.Fatal(err)
		}
		if _, err := q.Statuses.Transition(b.Context(), j.ID, job.StateRunning, nil); err != nil {
			b.Fatal(err)
		}
		return q.Statuses
	}

	b.Run("job_in_memory", func(b *testing.B) {
		n := testharness.StartNATS(b)
		run(b, n.Connect(b), jobs{j.ID: j}, n.Connect(b))
	})
	b.Run("status_read", func(b *testing.B) {
		n := testharness.StartNATS(b)
		run(b, n.Connect(b), running(b, n.JetStream(b)), n.Connect(b))
	})
	b.Run("status_read_worker_account", func(b *testing.B) {
		users := natsembed.NewUsers()
		ns, err := natsembed.Start(filepath.Join(b.TempDir(), "nats"), "127.0.0.1", natsserver.RANDOM_PORT, natsembed.WithUsers(users))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
		connect := func(role natsperm.Role) *nats.Conn {
			pw := filepath.Join(b.TempDir(), string(role))
			if err := os.WriteFile(pw, []byte(users.Passwords[role]), 0o600); err != nil {
				b.Fatal(err)
			}
			return testharness.ConnectWith(b, natsconf.NATS{URL: ns.ClientURL(), User: string(role), PasswordFile: pw}, nats.CustomInboxPrefix(role.Inbox()))
		}
		in := connect(natsperm.Ingest)
		js, err := jetstream.New(in)
		if err != nil {
			b.Fatal(err)
		}
		run(b, in, running(b, js), connect(natsperm.Worker))
	})
}
