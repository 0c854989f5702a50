package defaults_test

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/vodpipe/vodpipe/internal/defaults"
	"github.com/vodpipe/vodpipe/internal/httpserve"
	"github.com/vodpipe/vodpipe/internal/ingest"
	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/internal/upload"
	"github.com/vodpipe/vodpipe/internal/worker"
)

// cleanEnv leaves the test with no environment, so envconfig reads only
// the tags' defaults (it also reads unprefixed names).
func cleanEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		t.Setenv(k, "")
		_ = os.Unsetenv(k)
	}
}

// sameAsEnvconfig checks that Fill on a zero T gives what envconfig reads
// from an empty environment: the tags are the one source of defaults.
func sameAsEnvconfig[T any](t *testing.T) {
	t.Helper()
	var fromEnv, filled T
	if err := envconfig.Process("VODPIPE", &fromEnv); err != nil {
		t.Fatalf("%T: %v", fromEnv, err)
	}
	defaults.Fill(&filled)
	if !reflect.DeepEqual(fromEnv, filled) {
		t.Errorf("%T:\nenvconfig %+v\nFill      %+v", filled, fromEnv, filled)
	}
}

func TestEveryConfigHasOneSourceOfDefaults(t *testing.T) {
	cleanEnv(t)
	sameAsEnvconfig[ingest.Config](t)
	sameAsEnvconfig[worker.Config](t)
	sameAsEnvconfig[notify.Config](t)
	sameAsEnvconfig[queue.Config](t)
	sameAsEnvconfig[upload.Config](t)
	sameAsEnvconfig[httpserve.Config](t)
	sameAsEnvconfig[httpserve.StreamConfig](t)
}

type sample struct {
	Name  string        `default:"x"`
	N     int           `default:"7"`
	Limit int64         `default:"100"`
	Rate  float64       `default:"0.5"`
	On    bool          `default:"true"`
	Wait  time.Duration `default:"3s"`
	List  []string      `default:"a,b"`
	Inner struct {
		M uint `default:"0x10"`
	}
	NoTag   int
	Ignored int `default:"9" ignored:"true"`
}

func TestFillSetsOnlyUnsetFields(t *testing.T) {
	var s sample
	s.Name, s.Limit = "kept", -1
	defaults.Fill(&s)
	want := sample{Name: "kept", N: 7, Limit: -1, Rate: 0.5, On: true, Wait: 3 * time.Second, List: []string{"a", "b"}}
	want.Inner.M = 16
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("Fill = %+v\nwant %+v", s, want)
	}
	s.Limit, s.Wait = -1, -time.Second
	defaults.Fill(&s, defaults.NegativeUnset)
	if s.Limit != 100 || s.Wait != 3*time.Second {
		t.Fatalf("with NegativeUnset: limit %d, wait %s; want the defaults", s.Limit, s.Wait)
	}
}

func TestFillRefusesBadTags(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a default that does not parse did not panic")
		}
	}()
	var bad struct {
		N int `default:"seven"`
	}
	defaults.Fill(&bad)
}
