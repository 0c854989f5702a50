package notify_test

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
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
