package httpapi_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/internal/apikey"
	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/pkg/client"
)

type request struct {
	URL   string   `json:"url"`
	Count int      `json:"count"`
	Tags  []string `json:"tags"`
}

// answer runs h on one request and decodes its error body.
func answer(t *testing.T, h http.Handler, r *http.Request) (*httptest.ResponseRecorder, client.ErrorBody) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var e client.ErrorBody
	if w.Code >= 400 {
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatalf("error body %q: %v", w.Body.String(), err)
		}
	}
	return w, e
}

func TestDecodeRefusalsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, body string
		optional                bool
		status                  int
		code, field             string
	}{
		{"valid", "application/json", `{"url":"x","count":2}`, false, 200, "", ""},
		{"no content type", "", `{"url":"x"}`, false, 200, "", ""},
		{"charset", "application/json; charset=utf-8", `{}`, false, 200, "", ""},
		{"empty, optional", "application/json", ``, true, 200, "", ""},
		{"empty", "application/json", ` `, false, 400, httpapi.CodeBadJSON, ""},
		{"not JSON", "application/json", `{url:`, false, 400, httpapi.CodeBadJSON, ""},
		{"cut short", "application/json", `{"url":"x"`, false, 400, httpapi.CodeBadJSON, ""},
		{"two objects", "application/json", `{}{}`, false, 400, httpapi.CodeBadJSON, ""},
		{"unknown field", "application/json", `{"colour":"red"}`, false, 400, httpapi.CodeUnknownField, "colour"},
		{"wrong type", "application/json", `{"count":"two"}`, false, 400, httpapi.CodeInvalidField, "count"},
		{"wrong element type", "application/json", `{"tags":[1]}`, false, 400, httpapi.CodeInvalidField, "tags"},
		{"too large", "application/json", `{"url":"` + strings.Repeat("x", 100) + `"}`, false, 413, httpapi.CodeBodyTooLarge, ""},
		{"other media type", "text/plain", `{}`, false, 415, httpapi.CodeUnsupportedMediaType, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var v request
				if e := (httpapi.Body{Max: 64, Optional: tc.optional}).Decode(w, r, &v); e != nil {
					httpapi.Write(w, e)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			w, e := answer(t, h, r)
			var fields []string
			for _, f := range e.Error.Fields {
				fields = append(fields, f.Field)
			}
			wantFields := []string(nil)
			if tc.field != "" {
				wantFields = []string{tc.field}
			}
			if w.Code != tc.status || e.Error.Code != tc.code || !slices.Equal(fields, wantFields) {
				t.Fatalf("%d %s, want %d %q naming %v", w.Code, w.Body.String(), tc.status, tc.code, wantFields)
			}
			if w.Code >= 400 && (e.Error.Message == "" || !slices.Contains(httpapi.Codes(), e.Error.Code)) {
				t.Fatalf("answer %s: a message and a code of the table are required", w.Body.String())
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	var keys apikey.Keys
	if err := keys.Decode("reader:r-secret-0123456789:read,admin:a-secret-0123456789:read+control"); err != nil {
		t.Fatal(err)
	}
	var seen string
	h := httpapi.Authorize(keys, "control", func(w http.ResponseWriter, r *http.Request) {
		seen = httpapi.KeyFrom(r.Context()).Name
		w.WriteHeader(http.StatusNoContent)
	})
	for _, tc := range []struct {
		name, header string
		status       int
		code         string
		challenge    string
	}{
		{"no header", "", 401, httpapi.CodeUnauthenticated, `Bearer realm="vodpipe"`},
		{"not bearer", "Basic YTpi", 401, httpapi.CodeUnauthenticated, `Bearer realm="vodpipe"`},
		{"unknown key", "Bearer nope", 401, httpapi.CodeUnauthenticated, `Bearer realm="vodpipe", error="invalid_token"`},
		{"lacks the scope", "Bearer r-secret-0123456789", 403, httpapi.CodeForbidden, ""},
		{"allowed", "Bearer a-secret-0123456789", 204, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen = ""
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			w, e := answer(t, h, r)
			if w.Code != tc.status || e.Error.Code != tc.code || w.Header().Get("WWW-Authenticate") != tc.challenge {
				t.Fatalf("%d %s (%q), want %d %q", w.Code, w.Body.String(), w.Header().Get("WWW-Authenticate"), tc.status, tc.code)
			}
			if (tc.status == 204) != (seen == "admin") {
				t.Fatalf("handler saw key %q", seen)
			}
			if strings.Contains(w.Body.String(), "secret") {
				t.Fatalf("answer shows a key: %s", w.Body.String())
			}
		})
	}
}

func TestKeyFromOutsideAuthorize(t *testing.T) {
	if k := httpapi.KeyFrom(httptest.NewRequest(http.MethodGet, "/", nil).Context()); k != nil {
		t.Fatalf("KeyFrom = %+v outside Authorize", k)
	}
}

// Codes lists every constant of codes.go, once, sorted.
func TestCodesListsEveryConstant(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var consts []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			for _, v := range s.(*ast.ValueSpec).Values {
				if lit, ok := v.(*ast.BasicLit); ok {
					consts = append(consts, strings.Trim(lit.Value, `"`))
				}
			}
		}
	}
	slices.Sort(consts)
	if len(consts) < 30 || !slices.Equal(consts, httpapi.Codes()) || !slices.IsSorted(httpapi.Codes()) {
		t.Fatalf("constants %v\nCodes() %v", consts, httpapi.Codes())
	}
}
