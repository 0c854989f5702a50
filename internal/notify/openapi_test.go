package notify_test

import (
	"net/http"
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
	documented, served := in.openapi.Routes(), in.svc.Routes()
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

// notify answers with the API client's types (pkg/client, which imports
// no service): its Subscription, Replay and Attempt are those, so the two
// cannot drift. The client's fields are the JSON notify writes.
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
	}{
		{fanout.Subscription{}, client.Subscription{}},
		{fanout.Attempt{}, client.Attempt{}},
		{fanout.Replay{}, client.Replay{}},
	} {
		if got, want := fields(tc.client), fields(tc.served); !slices.Equal(got, want) {
			t.Errorf("%T has %v, %T answers %v", tc.client, got, tc.served, want)
		}
	}
}
