package notify_test

import (
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/internal/notify/fanout"
	"github.com/vodpipe/vodpipe/pkg/client"
)

// The routes notify serves are exactly the ones docs/notify-openapi.json
// describes (web/openapi_test.go has a validator check the document), and
// each answers: an authorized request to a documented path never meets the
// catch-all "no route".
func TestRoutesMatchNotifyOpenAPI(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	b, err := os.ReadFile("../../docs/notify-openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for p, ops := range doc.Paths {
		for m := range ops {
			documented = append(documented, strings.ToUpper(m)+" "+p)
		}
	}
	served := in.svc.Routes()
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Fatalf("OpenAPI paths:\n%s\n\nserved routes:\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}
	for _, r := range served {
		method, path, _ := strings.Cut(r, " ")
		if method != http.MethodGet || strings.Contains(path, "events") {
			continue
		}
		path = strings.ReplaceAll(path, "{id}", "sub_nosuchsubscription")
		var body struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		in.call(t, method, path, nil, &body)
		if strings.HasPrefix(body.Error.Message, "no such route") {
			t.Errorf("%s: %s", r, body.Error.Message)
		}
	}
}

// The API client's notify types (pkg/client, which imports no service)
// have the JSON fields of what notify answers.
func TestClientTypesMatchNotifyAnswers(t *testing.T) {
	fields := func(v any) []string {
		var out []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			if name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
				out = append(out, name)
			}
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		served, client any
		extra          []string // the client's fields notify sets in one answer only
	}{
		{fanout.Subscription{}, client.Subscription{}, nil},
		{fanout.Attempt{}, client.Attempt{}, nil},
		{fanout.Replay{}, client.Replay{}, []string{"pending"}},
	} {
		want := append(fields(tc.served), tc.extra...)
		slices.Sort(want)
		if got := fields(tc.client); !slices.Equal(got, want) {
			t.Errorf("%T has %v, %T answers %v", tc.client, got, tc.served, want)
		}
	}
}
