package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"
)

// Escapes that make whole characters pass, surrogate pairs included, and
// an escaped backslash before a "u" is not an escape.
func TestDecodeKeepsValidEscapes(t *testing.T) {
	j, err := Decode([]byte(`{"v":1,"id":"a","source":"file:///a.mp4","mediaName":"caf\u00e9 \ud83c\udfac","sourceContext":"\\udc80\"\\"}`))
	if err != nil {
		t.Fatal(err)
	}
	if j.MediaName != "café 🎬" || j.SourceContext != `\udc80"\` {
		t.Fatalf("mediaName %q, sourceContext %q", j.MediaName, j.SourceContext)
	}
}

func TestDecodeValidJob(t *testing.T) {
	j, err := Decode([]byte(`{"v":1,"id":"a-1","source":"file:///media/in/My Clip.MP4","procedure":"LongVideoPreset",
		"storageRegion":"ap-chongqing","classId":3,"sourceContext":"u=1","oneTimeSignature":true,"priority":5,
		"metadata":{"customer":"acme"}}`))
	if err != nil {
		t.Fatal(err)
	}
	j.Normalize()
	if j.MediaName != "My Clip" || j.MediaType != "mp4" || !j.OneTimeSignature || j.Priority != 5 {
		t.Fatalf("job = %+v", j)
	}
}

func TestDecodeNamesEveryBadField(t *testing.T) {
	cases := []struct {
		name   string
		msg    string
		fields []string
	}{
		{"malformed", `{"v":1,`, []string{"(message)"}},
		{"not an object", `[1,2]`, []string{"(message)"}},
		{"trailing", `{"v":1,"id":"a","source":"file:///a.mp4"} x`, []string{"(message)"}},
		{"wrong type", `{"v":1,"id":"a","source":"file:///a.mp4","classId":"three"}`, []string{"classId"}},
		{"wrong types", `{"v":1,"id":"a","source":"file:///a.mp4","classId":"three","priority":true,"oneTimeSignature":1}`,
			[]string{"classId", "oneTimeSignature", "priority"}},
		{"unknown field", `{"v":1,"id":"a","source":"file:///a.mp4","colour":"red"}`, []string{"colour"}},
		{"unknown version", `{"v":2,"id":"a","source":"file:///a.mp4"}`, []string{"v"}},
		{"many at once", `{"v":1,"id":"bad id!","source":"ftp://x/a.mp4","cover":"file:///../etc/passwd",
			"mediaName":"a/b","mediaType":"MP4","procedure":"has space","storageRegion":"Mars","classId":-1,
			"sourceContext":"` + strings.Repeat("x", 251) + `","priority":11,"metadata":[1]}`,
			[]string{"classId", "cover", "id", "mediaName", "mediaType", "metadata", "priority", "procedure", "source", "sourceContext", "storageRegion"}},
		{"traversal", `{"v":1,"id":"a","source":"file:///media/../../etc/passwd.mp4"}`, []string{"source"}},
		{"relative file", `{"v":1,"id":"a","source":"file:a.mp4"}`, []string{"source"}},
		// Ids are keys of the status bucket, whose keys are dot-separated tokens.
		{"id ends with a dot", `{"v":1,"id":"x.","source":"file:///a.mp4"}`, []string{"id"}},
		{"id with an empty token", `{"v":1,"id":"a..b","source":"file:///a.mp4"}`, []string{"id"}},
		{"credentials in URL", `{"v":1,"id":"a","source":"https://u:p@h/a.mp4"}`, []string{"source"}},
		{"missing", `{"v":1}`, []string{"id", "source"}},
		{"no extension no type", `{"v":1,"id":"a","source":"https://h/video"}`, []string{"mediaType"}},
		{"huge", `{"v":1,"id":"a","source":"file:///a.mp4","sessionContext":"` + strings.Repeat("x", MaxMessageSize) + `"}`, []string{"(message)"}},
		// encoding/json would turn these bytes into U+FFFD without a word.
		{"not UTF-8", "{\"v\":1,\"id\":\"a\",\"source\":\"file:///a.mp4\",\"mediaName\":\"caf\xe9\",\"sourceContext\":\"\xff\xfe\"}",
			[]string{"mediaName", "sourceContext"}},
		{"not UTF-8 in metadata", "{\"v\":1,\"id\":\"a\",\"source\":\"file:///a.mp4\",\"metadata\":{\"k\":\"\xc3\"}}", []string{"metadata"}},
		{"not UTF-8 in a field name", "{\"v\":1,\"id\":\"a\",\"source\":\"file:///a.mp4\",\"\xff\":1}", []string{"(message)"}},
		{"not UTF-8 and not JSON", "\xff\xfe{", []string{"(message)"}},
		{"lone surrogate escapes", `{"v":1,"id":"a","source":"file:///a.mp4","mediaName":"a\udc80","sourceContext":"\ud83d x","sessionContext":"\ud83d\u0041"}`,
			[]string{"mediaName", "sessionContext", "sourceContext"}},
		{"a type named twice", `{"v":1,"id":"a","source":"file:///a.mp4","priority":true,"sourceContext":7}`, []string{"priority", "sourceContext"}},
		// Names are case-sensitive (encoding/json's are not): a field in
		// another case is unknown, and one given twice is refused.
		{"a field in another case", `{"v":1,"id":"a","source":"file:///a.mp4","Priority":"x"}`, []string{"Priority"}},
		{"a field given twice", `{"v":1,"id":"a","source":"file:///a.mp4","source":"file:///b.mp4"}`, []string{"source"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.msg))
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v", err)
			}
			var got []string
			for _, f := range ve.Fields {
				got = append(got, f.Field)
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, c.fields) {
				t.Fatalf("fields = %v, want %v (%v)", got, c.fields, err)
			}
		})
	}
}

func TestStateMachine(t *testing.T) {
	allowed := []struct{ from, to State }{
		{"", StateQueued}, {StateQueued, StateRunning}, {StateRunning, StateCompleted},
		{StateRunning, StateQueued}, {StateRunning, StatePaused}, {StatePaused, StateQueued},
		{StateQueued, StateCanceled}, {StateRunning, StateFailed}, {StatePaused, StateCanceled},
		{StateFailed, StateQueued}, // a dead letter requeued
	}
	for _, c := range allowed {
		if err := CheckTransition(c.from, c.to); err != nil {
			t.Errorf("%s → %s refused: %v", c.from, c.to, err)
		}
	}
	refused := []struct{ from, to State }{
		{StateCompleted, StateQueued}, {StateCompleted, StateRunning}, {StateFailed, StateRunning}, {StateFailed, StateCompleted},
		{StateCanceled, StateRunning}, {StateCanceled, StateQueued}, {StatePaused, StateRunning}, {StatePaused, StateCompleted}, {"", StateRunning},
	}
	for _, c := range refused {
		if err := CheckTransition(c.from, c.to); !errors.Is(err, ErrBadTransition) {
			t.Errorf("%s → %s allowed", c.from, c.to)
		}
	}
	for _, s := range []State{StateCompleted, StateCanceled} {
		if !s.Terminal() || len(transitions[s]) != 0 {
			t.Errorf("%s should be terminal with no way out", s)
		}
	}
	// Failed is terminal too, but for a retry: requeued as a new run.
	if !StateFailed.Terminal() || !slices.Equal(transitions[StateFailed], []State{StateQueued}) {
		t.Errorf("failed should be terminal, with requeue its one way out: %v", transitions[StateFailed])
	}
}

// The JSON Schema in docs/ documents exactly the fields the decoder accepts.
func TestSchemaMatchesJobFields(t *testing.T) {
	b, err := os.ReadFile("../../docs/job.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Required   []string                   `json:"required"`
		Properties map[string]json.RawMessage `json:"properties"`
		Additional bool                       `json:"additionalProperties"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	var fields []string
	rt := reflect.TypeOf(Job{})
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		fields = append(fields, name)
	}
	var props []string
	for k := range schema.Properties {
		props = append(props, k)
	}
	sort.Strings(fields)
	sort.Strings(props)
	if !reflect.DeepEqual(fields, props) || schema.Additional {
		t.Fatalf("schema properties %v, Job fields %v", props, fields)
	}
	// A message with only the schema's required fields is valid.
	if _, err := Decode([]byte(`{"v":1,"id":"x","source":"file:///a.mp4"}`)); err != nil {
		t.Fatalf("minimal message: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"a","source":"file:///a.mp4"}`))
	f.Add([]byte(`{"v":1,"id":"a","source":"https://h/a.mp4","metadata":{"k":1}}`))
	f.Add([]byte(`{"v":"1"}`))
	f.Add([]byte("{\"v\":1,\"id\":\"a\",\"source\":\"file:///a.mp4\",\"mediaName\":\"caf\xe9\"}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := Decode(b)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) == 0 {
				t.Fatalf("error %v names no field", err)
			}
			return
		}
		if !utf8.Valid(b) {
			t.Fatalf("a message that is not valid UTF-8 decoded: %q", b)
		}
		// A valid job re-encodes into a valid job, the same one.
		out, err := j.Encode()
		if err != nil {
			t.Fatal(err)
		}
		j2, err := Decode(out)
		if err != nil {
			t.Fatalf("re-encoded job invalid: %v", err)
		}
		out2, err := j2.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("re-encoding changed the job:\n%s\n%s", out, out2)
		}
	})
}
