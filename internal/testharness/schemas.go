package testharness

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Schemas compiles docs/job.schema.json and docs/events.schema.json (which
// refers to the first) with a JSON Schema 2020-12 validator, formats
// asserted.
func Schemas(t testing.TB) (jobSchema, eventSchema *jsonschema.Schema) {
	t.Helper()
	c, _ := docsCompiler(t)
	var err error
	if jobSchema, err = c.Compile(docsBase + "job.schema.json"); err != nil {
		t.Fatal(err)
	}
	if eventSchema, err = c.Compile(docsBase + "events.schema.json"); err != nil {
		t.Fatal(err)
	}
	return jobSchema, eventSchema
}

// docsBase is where the docs' JSON Schema documents say they are ($id).
const docsBase = "https://github.com/vodpipe/vodpipe/docs/"

// docsCompiler is a JSON Schema 2020-12 compiler (formats asserted) that
// holds docs/job.schema.json and docs/events.schema.json under their $id,
// and every other document named, under the same base; it returns the
// extra documents' bytes.
func docsCompiler(t testing.TB, extra ...string) (*jsonschema.Compiler, map[string][]byte) {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	docs := filepath.Join(filepath.Dir(here), "..", "..", "docs")
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	raw := map[string][]byte{}
	for _, f := range append([]string{"job.schema.json", "events.schema.json"}, extra...) {
		b, err := os.ReadFile(filepath.Join(docs, f))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if m, _ := doc.(map[string]any); m != nil && m["$id"] != nil && m["$id"] != docsBase+f {
			t.Fatalf("%s has $id %v, want %s", f, m["$id"], docsBase+f)
		}
		if err := c.AddResource(docsBase+f, doc); err != nil {
			t.Fatal(err)
		}
		raw[f] = b
	}
	return c, raw
}

// Valid validates a JSON document against s.
func Valid(t testing.TB, s *jsonschema.Schema, b []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	return s.Validate(v)
}
