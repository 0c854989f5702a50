package job_test

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// The job schema and the decoder agree on every message: what one accepts
// the other accepts, what one refuses the other refuses. The messages
// include one with every field set.
func TestJobSchemaAgreesWithTheDecoder(t *testing.T) {
	js, _ := testharness.Schemas(t)
	full := `{"v":1,"id":"full-1","source":"https://example.com/a.mp4","cover":"file:///covers/a.jpg","mediaName":"A film",
		"mediaType":"mp4","procedure":"LongVideoPreset","storageRegion":"ap-guangzhou","classId":7,"subAppId":1500009999,
		"sourceContext":"user=1","sessionContext":"s","oneTimeSignature":true,"priority":-3,"metadata":{"k":[1,2]}}`
	var j job.Job
	if err := json.Unmarshal([]byte(full), &j); err != nil {
		t.Fatal(err)
	}
	rv := reflect.ValueOf(j)
	for i := range rv.NumField() {
		if rv.Field(i).IsZero() {
			t.Fatalf("the full message leaves %s unset", rv.Type().Field(i).Name)
		}
	}
	for _, tc := range []struct {
		name, msg string
		ok        bool
	}{
		{"minimal", `{"v":1,"id":"x","source":"file:///a.mp4"}`, true},
		{"every field", full, true},
		{"the decoder's own encoding of it", string(must(json.Marshal(j))), true},
		{"version 2", `{"v":2,"id":"x","source":"file:///a.mp4"}`, false},
		{"no id", `{"v":1,"source":"file:///a.mp4"}`, false},
		{"no source", `{"v":1,"id":"x"}`, false},
		{"unknown field", `{"v":1,"id":"x","source":"file:///a.mp4","colour":"red"}`, false},
		{"classId as a string", `{"v":1,"id":"x","source":"file:///a.mp4","classId":"7"}`, false},
		{"negative subAppId", `{"v":1,"id":"x","source":"file:///a.mp4","subAppId":-1}`, false},
		{"priority over 10", `{"v":1,"id":"x","source":"file:///a.mp4","priority":11}`, false},
		{"sourceContext of 251", `{"v":1,"id":"x","source":"file:///a.mp4","sourceContext":"` + strings.Repeat("c", 251) + `"}`, false},
		{"metadata not an object", `{"v":1,"id":"x","source":"file:///a.mp4","metadata":[1]}`, false},
		{"source of another scheme", `{"v":1,"id":"x","source":"ftp://h/a.mp4"}`, false},
		{"id with a space", `{"v":1,"id":"a b","source":"file:///a.mp4"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serr := testharness.Valid(t, js, []byte(tc.msg))
			_, derr := job.Decode([]byte(tc.msg))
			if (serr == nil) != tc.ok || (derr == nil) != tc.ok {
				t.Fatalf("want ok=%v; schema: %v; decoder: %v", tc.ok, serr, derr)
			}
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// Every event type's data is the Go type the services publish, property for
// property, required where Go always writes it (no omitempty); an event of
// each type built from a fully set value validates.
func TestEventSchemaDescribesTheGoTypes(t *testing.T) {
	_, es := testharness.Schemas(t)
	b, err := os.ReadFile("../../docs/events.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Properties struct {
			Type struct {
				Enum []string `json:"enum"`
			} `json:"type"`
		} `json:"properties"`
		Defs map[string]struct {
			Required   []string                   `json:"required"`
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		typ, def string
		data     any
	}{
		{job.EventStarted, "started", job.StartedData{Attempt: 2, Worker: "w-1", BytesResumed: 5, Metadata: json.RawMessage(`{"k":1}`)}},
		{job.EventPaused, "stopped", job.StoppedData{Metadata: json.RawMessage(`{"k":1}`)}},
		{job.EventCanceled, "stopped", job.StoppedData{}},
		{job.EventProgress, "progress", job.ProgressData{BytesDone: 1, BytesTotal: 2}},
		{job.EventCompleted, "completed", job.CompletedData{FileID: "f", MediaURL: "https://m", CoverURL: "https://c", SourceContext: "s", Bytes: 3, Metadata: json.RawMessage(`{"k":1}`)}},
		{job.EventFailed, "failed", job.FailedData{Error: job.Error{Code: "c", Message: "m", Permanent: true}, Attempt: 1, Metadata: json.RawMessage(`{"k":1}`)}},
		{job.EventVODFileUpload, "fileUploaded", job.FileUploadedData{FileID: "f", MediaURL: "https://m", CoverURL: "https://c", SourceContext: "s", ProcedureTaskID: "t"}},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			def, ok := doc.Defs[tc.def]
			if !ok {
				t.Fatalf("no $defs/%s", tc.def)
			}
			var props, required []string
			rt := reflect.TypeOf(tc.data)
			for i := range rt.NumField() {
				name, opts, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
				props = append(props, name)
				if !strings.Contains(opts, "omitempty") {
					required = append(required, name)
				}
			}
			var have []string
			for k := range def.Properties {
				have = append(have, k)
			}
			for _, l := range [][]string{props, required, have, def.Required} {
				sort.Strings(l)
			}
			if !slices.Equal(props, have) || !slices.Equal(required, def.Required) {
				t.Fatalf("$defs/%s has properties %v, required %v; %T has %v, always written %v", tc.def, have, def.Required, tc.data, props, required)
			}
			e, err := job.NewEvent(tc.typ, "job-1", tc.data)
			if err != nil {
				t.Fatal(err)
			}
			e.Time = now
			if err := testharness.Valid(t, es, must(json.Marshal(e))); err != nil {
				t.Fatalf("%s event refused: %v", tc.typ, err)
			}
		})
	}
	for _, typ := range []string{job.EventQueued, job.EventStarted, job.EventProgress, job.EventPaused, job.EventResumed,
		job.EventCanceled, job.EventFailed, job.EventCompleted, job.EventVODFileUpload, job.EventVODProcedure} {
		if !slices.Contains(doc.Properties.Type.Enum, typ) {
			t.Errorf("the schema's type enum lacks %s", typ)
		}
	}
	// A job.completed without its FileId is refused: the check can fail.
	bad := []byte(`{"id":"e","type":"job.completed","time":"2026-12-05T00:00:00Z","jobId":"j","data":{"mediaUrl":"m","bytes":1}}`)
	if err := testharness.Valid(t, es, bad); err == nil {
		t.Fatal("a job.completed without fileId validated")
	}
}
