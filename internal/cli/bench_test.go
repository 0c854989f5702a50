package cli

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vodpipe/vodpipe/internal/service"
)

// TestMain lets this test binary play `vodpipe worker` (and the other
// services): the bench and the chaos run start service processes as
// `<own executable> worker`, which in a test is this binary re-executed.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && service.IsRole(os.Args[1]) {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func TestBenchQuickRunsEveryMeasurement(t *testing.T) {
	out := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"bench", "--quick", "--write", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("bench --quick exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	doc, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"P1", "P2", "P3", "P4", "P5", "P6 ×1", "P6 ×2", "P6 ×4"} {
		if !strings.Contains(stdout.String(), "\n"+id+" ") {
			t.Errorf("table has no row %s:\n%s", id, stdout.String())
		}
		if !strings.Contains(string(doc), "| "+id+" |") {
			t.Errorf("BENCHMARKS.md has no row %s", id)
		}
	}
	for _, want := range []string{"- Date: ", "- Machine: ", "CPUs", "go1.", "bench --quick --write", "| id | what | measured | baseline | ratio | target | ok? |", "**P6**"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("BENCHMARKS.md lacks %q:\n%s", want, doc)
		}
	}
	if strings.Contains(stdout.String(), "ERROR") {
		t.Errorf("a measurement failed:\n%s\n%s", stdout.String(), stderr.String())
	}
	t.Logf("\n%s", stdout.String())
}

func TestBenchRefusesUnknownMeasurements(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"bench", "--only", "P1,P9"}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), `"P9"`) {
		t.Errorf("stderr does not name P9: %s", stderr.String())
	}
}
