package chaos

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vodpipe/vodpipe/internal/testharness"
)

// TestStartServicesFailsCleanly returns the reason when a service cannot
// start, here because another stream already holds the jobs subjects, and
// closes what it had opened instead of panicking on the way out.
func TestStartServicesFailsCleanly(t *testing.T) {
	n := testharness.StartNATS(t)
	if _, err := n.JetStream(t).CreateStream(t.Context(), jetstream.StreamConfig{Name: "SQUATTER", Subjects: []string{"vodpipe.jobs.>"}}); err != nil {
		t.Fatal(err)
	}
	o := Options{Seed: 1}
	o.defaults()
	s, err := startServices(t.Context(), t.TempDir(), n.URL, o)
	if err == nil {
		s.close()
		t.Fatal("services started although another stream holds vodpipe.jobs.>")
	}
	if s != nil {
		t.Errorf("startServices returned services with its error %v", err)
	}
	if !strings.Contains(err.Error(), "VODPIPE_JOBS") {
		t.Errorf("err = %v, want it to name the stream it could not create", err)
	}
}
