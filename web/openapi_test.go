package web

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// checkOpenAPI runs the independent validator (openapi-check.mjs, on
// @seriousme/openapi-schema-validator) on an OpenAPI document.
func checkOpenAPI(t *testing.T, doc string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: apt-get install -y nodejs npm (.ci/run does this)")
	}
	if _, err := os.Stat("node_modules/@seriousme/openapi-schema-validator/package.json"); err != nil {
		t.Fatal("the OpenAPI validator is missing: run npm ci --prefix web (.ci/run does this)")
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(t.Context(), "node", "openapi-check.mjs", doc)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// docs/openapi.json (ingest) and docs/notify-openapi.json are valid OpenAPI
// 3.1 documents for a validator that is not vodpipe's, with the JSON Schema
// 2020-12 documents they refer to bundled in; the same document declared as OpenAPI 3.0.3 (what it said before:
// 3.0's schema objects know no $schema) is refused, so the check can fail.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	for _, doc := range []string{"../docs/openapi.json", "../docs/notify-openapi.json"} {
		if out, err := checkOpenAPI(t, doc); err != nil || !strings.Contains(out, "valid OpenAPI 3.1") {
			t.Fatalf("%s refused: %v\n%s", doc, err, out)
		}
	}
	b, err := os.ReadFile("../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	old := bytes.Replace(b, []byte(`"openapi": "3.1.0"`), []byte(`"openapi": "3.0.3"`), 1)
	if err := os.WriteFile(filepath.Join(dir, "openapi.json"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"job.schema.json", "events.schema.json"} { // the documents it refers to
		schema, err := os.ReadFile("../docs/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), schema, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := checkOpenAPI(t, filepath.Join(dir, "openapi.json")); err == nil || !strings.Contains(out, "$schema") {
		t.Fatalf("the document as OpenAPI 3.0.3 was not refused for its $schema: %v\n%s", err, out)
	}
}
