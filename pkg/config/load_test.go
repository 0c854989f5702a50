package config

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/pkg/apikey"
)

// A value that cannot be read may be a secret with a typo in it: the error,
// and the log line that reports it, name the variable and what is wrong and
// never quote the value, whatever failed to parse it.
func TestLoadNeverShowsTheValue(t *testing.T) {
	type spec struct {
		Keys    apikey.Keys   `envconfig:"LOAD_TEST_KEYS"`
		Wait    time.Duration `envconfig:"LOAD_TEST_WAIT"`
		Workers int           `envconfig:"LOAD_TEST_WORKERS"`
	}
	const secret = "s3cret-Value-42"
	for _, tc := range []struct {
		name, env, value, want string
	}{
		{"unknown scope", "VODPIPE_LOAD_TEST_KEYS", "ops:" + secret + ":read+admin", "VODPIPE_LOAD_TEST_KEYS: API key entry 1: unknown scope"},
		{"key taken for a name", "VODPIPE_LOAD_TEST_KEYS", "good:0123456789ab," + secret + ":read", "VODPIPE_LOAD_TEST_KEYS: API key entry 2: want key"},
		{"key split at a colon", "VODPIPE_LOAD_TEST_KEYS", "ops:s3cret:" + secret, "VODPIPE_LOAD_TEST_KEYS: API key entry 1: unknown scope"},
		{"duration", "VODPIPE_LOAD_TEST_WAIT", secret, "VODPIPE_LOAD_TEST_WAIT: is not a valid time.Duration"},
		{"number", "VODPIPE_LOAD_TEST_WORKERS", secret, "VODPIPE_LOAD_TEST_WORKERS: is not a valid int"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tc.env, tc.value)
			var s spec
			err := Load(&s)
			var ve *VarError
			if !errors.As(err, &ve) || ve.Var != tc.env {
				t.Fatalf("err = %v, want a VarError for %s", err, tc.env)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to say %q", err, tc.want)
			}
			var log bytes.Buffer
			slog.New(slog.NewJSONHandler(&log, nil)).Error("invalid configuration", "err", err)
			for _, part := range []string{secret, "s3cret", "Value-42"} {
				if strings.Contains(err.Error(), part) || strings.Contains(log.String(), part) {
					t.Fatalf("the secret shows: err %q, log %s", err, log.String())
				}
			}
		})
	}
}
