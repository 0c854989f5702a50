package service_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/service"
)

type testConfig struct {
	Wait time.Duration `envconfig:"SERVICE_TEST_WAIT" default:"1s"`
}

type fakeServer struct {
	serveErr error
	closed   bool
}

func (f *fakeServer) Serve(ctx context.Context) error {
	<-ctx.Done()
	return f.serveErr
}

func (f *fakeServer) Close() { f.closed = true }

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     string
		openErr error
		serve   error
		want    int
		log     string
	}{
		{"serves until the context ends", "", nil, http.ErrServerClosed, service.ExitOK, ""},
		{"bad configuration names the variable", "forever", nil, nil, service.ExitConfig, "SERVICE_TEST_WAIT"},
		{"cannot start", "", errors.New("no NATS"), nil, service.ExitFailed, "no NATS"},
		{"fails while serving", "", nil, errors.New("listener gone"), service.ExitFailed, "listener gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("VODPIPE_SERVICE_TEST_WAIT", tc.env)
			}
			srv := &fakeServer{serveErr: tc.serve}
			var gotCfg testConfig
			open := func(_ context.Context, cfg testConfig, _ *slog.Logger) (*fakeServer, error) {
				gotCfg = cfg
				if tc.openErr != nil {
					return nil, tc.openErr
				}
				return srv, nil
			}
			ctx, cancel := context.WithCancel(t.Context())
			cancel() // serve returns at once
			var stderr bytes.Buffer
			if got := service.Run(ctx, "test", &stderr, open); got != tc.want {
				t.Fatalf("exit code %d, want %d; log: %s", got, tc.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.log) {
				t.Fatalf("log %q does not name %q", stderr.String(), tc.log)
			}
			if tc.want == service.ExitOK && (gotCfg.Wait != time.Second || !srv.closed) {
				t.Fatalf("config %+v, closed %v: want the default loaded and the server closed", gotCfg, srv.closed)
			}
		})
	}
}

// Every role reads the environment like its own command: a bad value is a
// configuration error (exit 2) naming the variable, for vodsim too.
func TestRunRoleRefusesABadEnvironment(t *testing.T) {
	for role, env := range map[string]string{
		"worker": "VODPIPE_WORKER_JOBS", "ingest": "VODPIPE_BATCH_MAX", "notify": "VODPIPE_WEBHOOK_CONCURRENCY",
		"vodsim": "VODPIPE_VODSIM_CALLBACK_ATTEMPTS",
	} {
		t.Run(role, func(t *testing.T) {
			t.Setenv(env, "not-a-number")
			var stderr bytes.Buffer
			if code := service.RunRole(t.Context(), role, &stderr); code != service.ExitConfig {
				t.Fatalf("exit %d, want %d; log:\n%s", code, service.ExitConfig, stderr.String())
			}
			if !strings.Contains(stderr.String(), env[len("VODPIPE_"):]) {
				t.Errorf("log does not name %s:\n%s", env, stderr.String())
			}
		})
	}
	// A value vodsim reads but cannot run with is a configuration error too.
	t.Run("vodsim faults", func(t *testing.T) {
		t.Setenv("VODPIPE_VODSIM_FAULTS", `{"rules":[{"op":"GetObject","lostAnswerRate":1}]}`)
		var stderr bytes.Buffer
		if code := service.RunRole(t.Context(), "vodsim", &stderr); code != service.ExitConfig {
			t.Fatalf("exit %d, want %d; log:\n%s", code, service.ExitConfig, stderr.String())
		}
		if !strings.Contains(stderr.String(), "lostAnswerRate") {
			t.Errorf("log does not name the bad rule:\n%s", stderr.String())
		}
	})
	// A secret with a typo in it is named, never shown, by every role.
	const secret = "s3cret-Value-42"
	for role, env := range map[string]string{
		"ingest": "VODPIPE_API_KEYS", "notify": "VODPIPE_API_KEYS", "vodsim": "VODPIPE_VODSIM_APPS",
	} {
		t.Run(role+" secret", func(t *testing.T) {
			t.Setenv(env, "ops:"+secret+":read+admin")
			if role == "vodsim" {
				t.Setenv(env, "AKIDx="+secret)
			}
			var stderr bytes.Buffer
			if code := service.RunRole(t.Context(), role, &stderr); code != service.ExitConfig {
				t.Fatalf("exit %d, want %d; log:\n%s", code, service.ExitConfig, stderr.String())
			}
			if !strings.Contains(stderr.String(), env) || strings.Contains(stderr.String(), "s3cret") {
				t.Errorf("log does not name %s, or shows the secret:\n%s", env, stderr.String())
			}
		})
	}
	if !service.IsRole("vodsim") || service.IsRole("chaos") {
		t.Error("IsRole: vodsim is a role, chaos is not")
	}
}

// VODPIPE_LOG_LEVEL and VODPIPE_LOG_FORMAT set how a service logs: text
// lines at warn and above write no info line; a level or format it does not
// know is a configuration error naming the variable.
func TestRunLogsAsTheEnvironmentSays(t *testing.T) {
	open := func(_ context.Context, _ testConfig, log *slog.Logger) (*fakeServer, error) {
		log.Info("an info line")
		log.Warn("a warn line")
		return &fakeServer{}, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	t.Run("text at warn", func(t *testing.T) {
		t.Setenv("VODPIPE_LOG_LEVEL", "warn")
		t.Setenv("VODPIPE_LOG_FORMAT", "text")
		var stderr bytes.Buffer
		if got := service.Run(ctx, "test", &stderr, open); got != service.ExitOK {
			t.Fatalf("exit %d: %s", got, stderr.String())
		}
		if s := stderr.String(); strings.Contains(s, "an info line") || !strings.Contains(s, `level=WARN msg="a warn line" service=test`) {
			t.Fatalf("log = %q", s)
		}
	})
	t.Run("json by default", func(t *testing.T) {
		var stderr bytes.Buffer
		if got := service.Run(ctx, "test", &stderr, open); got != service.ExitOK {
			t.Fatalf("exit %d: %s", got, stderr.String())
		}
		if s := stderr.String(); !strings.Contains(s, `"msg":"an info line"`) || !strings.Contains(s, `"service":"test"`) {
			t.Fatalf("log = %q", s)
		}
	})
	for v, val := range map[string]string{"VODPIPE_LOG_LEVEL": "loud", "VODPIPE_LOG_FORMAT": "xml"} {
		t.Run("bad "+v, func(t *testing.T) {
			t.Setenv(v, val)
			var stderr bytes.Buffer
			if got := service.Run(ctx, "test", &stderr, open); got != service.ExitConfig || !strings.Contains(stderr.String(), v) {
				t.Fatalf("exit %d, log %q: want a configuration error naming %s", got, stderr.String(), v)
			}
		})
	}
}
