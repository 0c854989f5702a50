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
	_, here, _, _ := runtime.Caller(0)
	docs := filepath.Join(filepath.Dir(here), "..", "..", "docs")
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	ids := map[string]string{}
	for _, f := range []string{"job.schema.json", "events.schema.json"} {
		b, err := os.ReadFile(filepath.Join(docs, f))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		m, _ := doc.(map[string]any)
		id, _ := m["$id"].(string)
		if id == "" {
			t.Fatalf("%s has no $id", f)
		}
		if err := c.AddResource(id, doc); err != nil {
			t.Fatal(err)
		}
		ids[f] = id
	}
	var err error
	if jobSchema, err = c.Compile(ids["job.schema.json"]); err != nil {
		t.Fatal(err)
	}
	if eventSchema, err = c.Compile(ids["events.schema.json"]); err != nil {
		t.Fatal(err)
	}
	return jobSchema, eventSchema
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
