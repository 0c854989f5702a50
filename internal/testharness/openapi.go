package testharness

import (
	"bytes"
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// OpenAPI checks an API's answers against its OpenAPI 3.1 document (whose
// schemas are JSON Schema 2020-12), with an independent JSON Schema
// validator: an answer to a documented route must have a documented
// status, and a JSON body that validates against that status's schema.
type OpenAPI struct {
	name   string
	base   string
	doc    map[string]any
	c      *jsonschema.Compiler
	routes []openAPIRoute

	mu       sync.Mutex
	compiled map[string]*jsonschema.Schema
}

type openAPIRoute struct {
	method, template string
	re               *regexp.Regexp
}

// LoadOpenAPI loads docs/<file> and the JSON Schema documents beside it.
func LoadOpenAPI(t testing.TB, file string) *OpenAPI {
	t.Helper()
	c, raw := docsCompiler(t, file)
	o := &OpenAPI{name: file, base: docsBase + file, c: c, compiled: map[string]*jsonschema.Schema{}}
	if err := json.Unmarshal(raw[file], &o.doc); err != nil {
		t.Fatal(err)
	}
	paths, _ := o.doc["paths"].(map[string]any)
	for tmpl, ops := range paths {
		pattern := regexp.QuoteMeta(tmpl)
		pattern = regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(pattern, `[^/]+`)
		re := regexp.MustCompile("^" + pattern + "$")
		for m := range ops.(map[string]any) {
			o.routes = append(o.routes, openAPIRoute{method: strings.ToUpper(m), template: tmpl, re: re})
		}
	}
	return o
}

// Routes lists the operations the document describes, as "METHOD /path".
func (o *OpenAPI) Routes() []string {
	var out []string
	for _, r := range o.routes {
		out = append(out, r.method+" "+r.template)
	}
	slices.Sort(out)
	return out
}

// CheckResponse checks one answer; a route the document does not describe
// (the probes, /metrics) is not checked.
func (o *OpenAPI) CheckResponse(t testing.TB, method, path string, status int, contentType string, body []byte) {
	t.Helper()
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	var r *openAPIRoute
	for i := range o.routes {
		if o.routes[i].method == method && o.routes[i].re.MatchString(path) {
			r = &o.routes[i]
			break
		}
	}
	if r == nil {
		return
	}
	op := o.doc["paths"].(map[string]any)[r.template].(map[string]any)[strings.ToLower(method)].(map[string]any)
	responses, _ := op["responses"].(map[string]any)
	code := strconv.Itoa(status)
	resp, ok := responses[code].(map[string]any)
	if !ok {
		if resp, ok = responses["default"].(map[string]any); !ok {
			t.Errorf("%s: %s %s answered %d, which the document does not list for %s %s", o.name, method, path, status, method, r.template)
			return
		}
		code = "default"
	}
	if len(bytes.TrimSpace(body)) == 0 || !strings.Contains(contentType, "json") {
		return
	}
	content, _ := resp["content"].(map[string]any)
	if _, ok := content["application/json"]; !ok {
		return
	}
	ptr := "#/paths/" + pointerToken(r.template) + "/" + strings.ToLower(method) + "/responses/" + code + "/content/application~1json/schema"
	o.mu.Lock()
	s, ok := o.compiled[ptr]
	if !ok {
		var err error
		if s, err = o.c.Compile(o.base + ptr); err != nil {
			o.mu.Unlock()
			t.Fatalf("%s: compile %s: %v", o.name, ptr, err)
		}
		o.compiled[ptr] = s
	}
	o.mu.Unlock()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Errorf("%s: %s %s answered %d with a body that is not JSON: %v", o.name, method, path, status, err)
		return
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("%s: %s %s answered %d with a body its schema refuses: %v\n%s", o.name, method, path, status, err, body)
	}
}

// pointerToken escapes a JSON pointer token for a URI fragment.
func pointerToken(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
	return url.PathEscape(s)
}
