package cli

import (
	"bytes"

	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// schemaCannotSay are the corpus's refusals docs/job.schema.json cannot
// express (it describes shapes, not file systems or encodings), with why.
var schemaCannotSay = map[string]string{
	"traversal.json": "a file:// path that climbs out with ..: the decoder's check of the path, not a pattern",
	"not-utf8.json":  "bytes that are not UTF-8: a JSON Schema validator sees decoded strings",
}

// Every message of the bad-input corpus is judged alike by the job
// decoder (job.Decode, what ingest and the workers run) and by a JSON
// Schema validator of docs/job.schema.json: the ones the decoder refuses
// are refused by the schema too, but for what the schema cannot express
// (listed, with the reason); the ones that fail only later, at a worker
// (a missing source, a region VOD refuses), are valid to both; and so are
// the corpus's good jobs.
func TestBadInputCorpusAgainstTheSchema(t *testing.T) {
	schema, _ := testharness.Schemas(t)
	for name, bc := range badCases {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("../../testdata/bad-jobs", name))
			if err != nil {
				t.Fatal(err)
			}
			b = []byte(strings.ReplaceAll(string(b), "ROOT", "/media"))
			_, derr := job.Decode(b)
			if bc.code == "" && derr == nil {
				t.Fatalf("the decoder accepts a message the corpus says ingest refuses")
			}
			if bc.code != "" && derr != nil {
				t.Fatalf("the decoder refuses a message that should reach a worker: %v", derr)
			}
			serr := validJSON(t, schema, b)
			if why, cannot := schemaCannotSay[name]; cannot {
				if serr != nil {
					t.Errorf("listed as beyond the schema (%s), but the schema refuses it: %v", why, serr)
				}
				return
			}
			if (serr == nil) != (derr == nil) {
				t.Fatalf("schema: %v; decoder: %v", serr, derr)
			}
		})
	}
	for _, good := range []string{
		`{"v":1,"id":"good-1","source":"file:///media/a.mp4"}`,
		`{"v":1,"id":"good-2","source":"https://cdn.example.com/b.mov","cover":"https://cdn.example.com/b.jpg","procedure":"LongVideoPreset","storageRegion":"ap-guangzhou","classId":3,"sourceContext":"user=1","metadata":{"k":"v"}}`,
	} {
		if _, err := job.Decode([]byte(good)); err != nil {
			t.Errorf("decoder refuses a good job: %v", err)
		}
		if err := validJSON(t, schema, []byte(good)); err != nil {
			t.Errorf("schema refuses a good job: %v", err)
		}
	}
}

// validJSON validates b against schema; not one JSON value is a refusal.
func validJSON(t *testing.T, s *jsonschema.Schema, b []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return s.Validate(v)
}
