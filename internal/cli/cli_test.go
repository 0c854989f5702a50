package cli

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The command line follows the conventions of the tools its users know:
// --help on every command exits 0 and starts nothing (a service's role
// too), flags may come after the arguments, an unknown command or flag is
// a usage error (2), and shell completion is generated.
func TestCommandLineConventions(t *testing.T) {
	for _, cmd := range []string{"demo", "up", "submit", "status", "jobs", "pause", "resume", "cancel", "dead-letters",
		"dead-letter", "sign", "bench", "chaos", "version", "config", "nats-config", "ingest", "worker", "notify", "vodsim", "help",
		"subscriptions", "events"} {
		var out, errOut bytes.Buffer
		if code := run(t.Context(), []string{cmd, "--help"}, &out, &errOut); code != 0 || out.Len()+errOut.Len() == 0 {
			t.Errorf("vodpipe %s --help: exit %d, %d bytes of help", cmd, code, out.Len()+errOut.Len())
		}
		if strings.Contains(errOut.String(), "listening") || strings.Contains(errOut.String(), "started") {
			t.Errorf("vodpipe %s --help started something: %s", cmd, errOut.String())
		}
	}
	// A flag after the argument: the dead letter is asked of this server.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, `{"error":{"code":"unauthorized","message":"no key"}}`, http.StatusUnauthorized)
			return
		}
		http.Error(w, `{"error":{"code":"not_found","message":"no dead letter"}}`, http.StatusNotFound)
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"dead-letter", "7", "--api", srv.URL, "--api-key", "k"}, &out, &errOut); code != 3 {
		t.Errorf("dead-letter 7 --api ...: exit %d, want 3 (its server's 404): %s", code, errOut.String())
	}
	// The key from a file (a mounted secret), trimmed; a file that cannot
	// be read, or a key given both ways, is a usage error.
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := run(t.Context(), []string{"dead-letter", "7", "--api", srv.URL, "--api-key-file", keyFile}, &out, &errOut); code != 3 {
		t.Errorf("--api-key-file: exit %d, want 3 (the key sent): %s", code, errOut.String())
	}
	for _, args := range [][]string{{"--api-key-file", keyFile + ".missing"}, {"--api-key-file", keyFile, "--api-key", "k"}} {
		errOut.Reset()
		if code := run(t.Context(), append([]string{"dead-letter", "7", "--api", srv.URL}, args...), &out, &errOut); code != 2 {
			t.Errorf("dead-letter %v: exit %d, want 2: %s", args, code, errOut.String())
		}
	}
	for _, args := range [][]string{{"nosuch"}, {"version", "--nosuch"}, {}} {
		errOut.Reset()
		if code := run(t.Context(), args, &out, &errOut); code != 2 {
			t.Errorf("vodpipe %v: exit %d, want 2", args, code)
		}
	}
	out.Reset()
	if code := run(t.Context(), []string{"completion", "bash"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "vodpipe") {
		t.Errorf("completion bash: exit %d, %d bytes", code, out.Len())
	}
}
