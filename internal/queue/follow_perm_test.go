package queue

import (
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/natsembed"
	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// TestWatchWithTheOldRightsAppliesControlsAsPublished: a worker of 0.10
// on a NATS server still configured as for 0.9 (the upgrade's new rights
// not loaded yet) may neither subscribe to the control bucket's
// republishes nor read its stream's leader, while an ingest of 0.10 has
// set the bucket up with its RePublish. The server refuses the
// subscription; the worker must then apply the bucket's writes as
// published, as 0.9 did, not wait for republishes that never come.
func TestWatchWithTheOldRightsAppliesControlsAsPublished(t *testing.T) {
	t.Parallel()
	s, err := natsembed.Start(t.TempDir(), "127.0.0.1", natsserver.RANDOM_PORT, natsembed.WithOptions(func(o *natsserver.Options) {
		o.Users = []*natsserver.User{
			{Username: "admin", Password: "admin"},
			{Username: "worker", Password: "worker", Permissions: &natsserver.Permissions{
				Publish:   &natsserver.SubjectPermission{Deny: []string{"$JS.API.STREAM.MSG.GET.>"}},
				Subscribe: &natsserver.SubjectPermission{Deny: []string{ControlChanges + ".>"}},
			}},
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	connect := func(user string) *nats.Conn {
		nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, user), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	js, err := jetstream.New(connect("admin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), js, Config{}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), ControlBucket)
	if err != nil {
		t.Fatal(err)
	}
	ctl := &Control{nc: connect("worker")}
	var mu sync.Mutex
	view := map[string]job.Control{}
	loaded := make(chan struct{})
	go func() {
		_ = ctl.Watch(t.Context(), func(id string, c job.Control) {
			mu.Lock()
			defer mu.Unlock()
			view[id] = c
		}, func() { close(loaded) })
	}()
	select {
	case <-loaded:
	case <-time.After(20 * time.Second):
		t.Fatal("the first read never ended")
	}
	if _, err := kv.Put(t.Context(), "j1", []byte(job.ControlCancel)); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 5*time.Second, "the cancel in the worker's view", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return view["j1"] == job.ControlCancel
	})
}
