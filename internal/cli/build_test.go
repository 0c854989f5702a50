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

// The image carries the upload page's web SDK: the build context keeps
// web/package.json and its lock file (and leaves node_modules out), a stage
// installs the production dependencies from them, and the final image has
// them where VODPIPE_WEB_DIR points. Without it /upload answers
// sdk_not_installed in every container.
func TestImageCarriesTheWebSDK(t *testing.T) {
	ignore, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ignore), "\n") {
		switch strings.TrimSpace(line) {
		case "web", "web/", "web/*", "web/package.json", "web/package-lock.json", "*.json":
			t.Errorf(".dockerignore leaves the web SDK's package files out: %q", line)
		}
	}
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	d := string(df)
	for _, want := range []string{"COPY web/package.json web/package-lock.json", "npm ci --omit=dev",
		"COPY --from=web /web/ /usr/local/share/vodpipe/web/", "ENV VODPIPE_WEB_DIR=/usr/local/share/vodpipe/web"} {
		if !strings.Contains(d, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	lock, err := os.ReadFile("../../web/package-lock.json")
	if err != nil || !bytes.Contains(lock, []byte(`"node_modules/vod-js-sdk-v6"`)) {
		t.Errorf("web/package-lock.json does not pin vod-js-sdk-v6: %v", err)
	}
}
