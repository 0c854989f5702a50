package cli

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `make build` (CGO_ENABLED=0) gives static binaries for every command: what
// the Dockerfile's distroless image needs.
func TestStaticBinaries(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-o", out+string(filepath.Separator), "./cmd/...")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	for _, name := range []string{"ingest", "worker", "notify", "vodsim", "vodpipe"} {
		f, err := elf.Open(filepath.Join(out, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked", name)
			}
		}
		f.Close()
	}
}

// The README's main job: `go run ./cmd/vodpipe demo` on embedded defaults exits 0.
func TestDemoExitsZero(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"demo", "--dir", t.TempDir(), "--bandwidth", "0"}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "every job completed and every webhook arrived with a valid signature") {
		t.Fatalf("demo exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
}
