// Package layering holds the test of vodpipe's import rules (README,
// "Layout"): which packages are public, what they may pull in, which
// packages may import which, and how thin the mains stay.
package layering

import (
	"go/build"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/vodpipe/vodpipe"

// public is the public surface, on purpose: a new package under pkg/ is a
// decision, made here.
var public = []string{"pkg/client", "pkg/job", "pkg/vod", "pkg/vodsim", "pkg/webhook"}

// light are the public packages a receiver or an API caller imports: they
// pull in nothing but the standard library and each other.
var light = []string{"pkg/client", "pkg/job", "pkg/vod", "pkg/webhook"}

// services are the packages of the running services and what only they use;
// public packages never reach them.
var services = []string{"internal/ingest", "internal/worker", "internal/notify", "internal/notify/intake",
	"internal/notify/fanout", "internal/queue",
	"internal/signer", "internal/resume", "internal/upload", "internal/stack", "internal/natsembed",
	"internal/natsperm", "internal/cli", "internal/chaos", "internal/bench", "internal/service"}

// apart are the services that never import one another; the packages
// under a service's directory are part of it.
var apart = []string{"internal/ingest", "internal/worker", "internal/notify"}

// parts are a service's packages that never import each other: notify's
// intake and fan-out meet only in the package that composes them.
var parts = [][]string{{"internal/notify/intake", "internal/notify/fanout"}}

// serviceOf is the service of apart that p is or is under, or "".
func serviceOf(p string) string {
	for _, s := range apart {
		if p == s || strings.HasPrefix(p, s+"/") {
			return s
		}
	}
	return ""
}

// composers put services together; no service imports them.
var composers = []string{"internal/stack", "internal/cli", "internal/chaos", "internal/bench", "internal/service"}

// maxMainLines is how long a cmd/*/main.go may be, comments and blank lines included.
const maxMainLines = 15

// graph is the module's non-test imports: package (relative to the module
// root) → the imports it names, module packages relative, others whole.
type graph map[string][]string

func load(t *testing.T) (graph, string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	g := graph{}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			return nil
		}
		p, err := build.ImportDir(path, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		var imports []string
		for _, imp := range p.Imports {
			if r, ok := strings.CutPrefix(imp, module+"/"); ok {
				imp = r
			}
			imports = append(imports, imp)
		}
		g[rel] = imports
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return g, root
}

// std reports whether an import path is the standard library's.
func std(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

// deps is every package pkg reaches, itself excluded: module packages
// relative, outside ones whole (not followed further).
func (g graph) deps(pkg string) map[string]bool {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(p string) {
		for _, imp := range g[p] {
			if std(imp) && !strings.HasPrefix(imp, "internal/") && !strings.HasPrefix(imp, "pkg/") && !strings.HasPrefix(imp, "cmd/") {
				continue
			}
			if seen[imp] {
				continue
			}
			seen[imp] = true
			if _, ok := g[imp]; ok {
				walk(imp)
			}
		}
	}
	walk(pkg)
	return seen
}

func TestPublicSurfaceIsOnPurpose(t *testing.T) {
	g, _ := load(t)
	var got []string
	for p := range g {
		if strings.HasPrefix(p, "pkg/") {
			got = append(got, p)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, public) {
		t.Fatalf("public packages = %v, want %v (a new public package is decided in this test)", got, public)
	}
}

func TestLightPackagesImportOnlyTheStandardLibrary(t *testing.T) {
	g, _ := load(t)
	for _, p := range light {
		for d := range g.deps(p) {
			if !slices.Contains(light, d) {
				t.Errorf("%s imports %s: it may use only the standard library and %v", p, d, light)
			}
		}
	}
}

func TestPublicPackagesReachNoService(t *testing.T) {
	g, _ := load(t)
	for _, p := range public {
		for d := range g.deps(p) {
			if slices.Contains(services, d) {
				t.Errorf("public %s reaches %s", p, d)
			}
		}
	}
}

func TestServicesStayApart(t *testing.T) {
	g, _ := load(t)
	for p := range g {
		s := serviceOf(p)
		if s == "" {
			continue
		}
		for d := range g.deps(p) {
			if o := serviceOf(d); o != "" && o != s {
				t.Errorf("service %s imports service %s (through %s)", s, d, p)
			}
			if slices.Contains(composers, d) {
				t.Errorf("service %s imports %s, which composes services", p, d)
			}
		}
	}
	for _, group := range parts {
		for _, p := range group {
			if _, ok := g[p]; !ok {
				t.Errorf("%s is gone: update parts", p)
			}
			for d := range g.deps(p) {
				if d != p && slices.Contains(group, d) {
					t.Errorf("%s imports %s: they meet only in the package that composes them", p, d)
				}
			}
		}
	}
	for _, s := range services {
		if slices.Contains(composers, s) {
			continue
		}
		for d := range g.deps(s) {
			if slices.Contains(composers, d) {
				t.Errorf("%s imports %s, which composes services", s, d)
			}
		}
	}
}

func TestMainsAreThin(t *testing.T) {
	g, root := load(t)
	n := 0
	for p, imports := range g {
		if !strings.HasPrefix(p, "cmd/") {
			continue
		}
		n++
		b, err := os.ReadFile(filepath.Join(root, p, "main.go"))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if lines := strings.Count(string(b), "\n"); lines > maxMainLines {
			t.Errorf("%s/main.go has %d lines, want at most %d: its code belongs under internal/", p, lines, maxMainLines)
		}
		files, _ := filepath.Glob(filepath.Join(root, p, "*.go"))
		if len(files) != 1 {
			t.Errorf("%s has %d Go files, want main.go alone", p, len(files))
		}
		for _, imp := range imports {
			if !std(imp) && !strings.HasPrefix(imp, "internal/") && !strings.HasPrefix(imp, "pkg/") {
				t.Errorf("%s imports %s directly", p, imp)
			}
		}
	}
	if n < 5 {
		t.Fatalf("found %d commands under cmd/, want ingest, worker, notify, vodsim and vodpipe", n)
	}
}

// The rules above would pass on an empty or misread graph: check it holds
// what is known to be there.
func TestGraphIsRead(t *testing.T) {
	g, _ := load(t)
	if !slices.Contains(g["internal/worker"], "internal/queue") || !slices.Contains(g["pkg/client"], "pkg/job") {
		t.Fatalf("import graph misread: worker → %v, client → %v", g["internal/worker"], g["pkg/client"])
	}
	if d := g.deps("pkg/vodsim"); !d["github.com/nats-io/nats.go"] && !d["github.com/prometheus/client_golang/prometheus"] {
		t.Fatalf("vodsim's outside imports not followed: %v", d)
	}
}

// The upload core talks to VOD, COS and a source; what signs for it, and
// NATS under that, come in through its Signer interface.
func TestUploadCoreNeedsNoNATS(t *testing.T) {
	g, _ := load(t)
	for d := range g.deps("internal/upload") {
		if strings.HasPrefix(d, "github.com/nats-io/") || slices.Contains(services, d) {
			t.Errorf("internal/upload reaches %s", d)
		}
	}
}

// docs/architecture.md names every package, and every package it names in
// backquotes exists.
func TestArchitectureDocNamesEveryPackage(t *testing.T) {
	g, root := load(t)
	b, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for p := range g {
		if (strings.HasPrefix(p, "internal/") || strings.HasPrefix(p, "pkg/")) && !strings.Contains(doc, "`"+p+"`") {
			t.Errorf("docs/architecture.md does not name %s", p)
		}
	}
	for _, m := range regexp.MustCompile("`((?:internal|pkg)/[a-z]+)`").FindAllStringSubmatch(doc, -1) {
		if _, ok := g[m[1]]; !ok && m[1] != "internal/layering" {
			t.Errorf("docs/architecture.md names %s, which is not a package", m[1])
		}
	}
}

// vodsim is an emulator others run in their own tests: it needs no NATS.
func TestVodsimNeedsNoNATS(t *testing.T) {
	g, _ := load(t)
	for d := range g.deps("pkg/vodsim") {
		if strings.HasPrefix(d, "github.com/nats-io/") {
			t.Errorf("pkg/vodsim reaches %s", d)
		}
	}
}
