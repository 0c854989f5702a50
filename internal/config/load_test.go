package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/apikey"
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

func TestKeyList(t *testing.T) {
	dir := t.TempDir()
	file := func(content string) string {
		p := filepath.Join(dir, fmt.Sprint(len(content)))
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keys, from, err := KeyList("K", []string{" a ", "", "b"}, "")
	if err != nil || !slices.Equal(keys, []string{"a", "b"}) || from != "VODPIPE_K" {
		t.Errorf("list: %v from %s, %v", keys, from, err)
	}
	keys, from, err = KeyList("K", nil, file("c\n\nd,e\r\n"))
	if err != nil || !slices.Equal(keys, []string{"c", "d", "e"}) || from != "VODPIPE_K_FILE" {
		t.Errorf("file: %v from %s, %v", keys, from, err)
	}
	if keys, _, err := KeyList("K", nil, ""); err != nil || len(keys) != 0 {
		t.Errorf("none: %v, %v", keys, err)
	}
	for name, call := range map[string]func() error{
		"both":       func() error { _, _, err := KeyList("K", []string{"secret-a"}, file("secret-b")); return err },
		"empty file": func() error { _, _, err := KeyList("K", nil, file("\n,\n")); return err },
	} {
		if err := call(); err == nil || strings.Contains(err.Error(), "secret-") || !strings.Contains(err.Error(), "VODPIPE_K") {
			t.Errorf("%s: %v, want an error naming the variable, not the key", name, err)
		}
	}
}
