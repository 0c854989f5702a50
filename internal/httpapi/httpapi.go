// Package httpapi is the HTTP layer ingest and notify share: one error
// shape (client.ErrorBody) with one table of codes, strict JSON bodies whose
// refusals name the field, and bearer-key authorization on top of apikey.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/vodpipe/vodpipe/internal/apikey"
	"github.com/vodpipe/vodpipe/pkg/client"
	"github.com/vodpipe/vodpipe/pkg/job"
)

// Error is a 4xx or 5xx answer: its status, a code of Codes, a message for
// people and, when the request's content is at fault, the fields.
type Error struct {
	Status  int
	Code    string
	Message string
	Fields  []job.FieldError
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Field is a 400 refusing one field: its message is "<field> <reason>".
func Field(code, field, reason string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Message: field + " " + reason,
		Fields: []job.FieldError{{Field: field, Reason: reason}}}
}

// Write answers e as client.ErrorBody.
func Write(w http.ResponseWriter, e *Error) {
	WriteJSON(w, e.Status, client.ErrorBody{Error: client.ErrorDetail{Code: e.Code, Message: e.Message, Fields: e.Fields}})
}

// WriteJSON answers v as JSON with the status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// JSONContent checks r's Content-Type: absent, application/json, or one of
// also.
func JSONContent(r *http.Request, also ...string) *Error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || (err == nil && (mt == "application/json" || slices.Contains(also, mt))) {
		return nil
	}
	msg := "Content-Type must be application/json"
	if len(also) > 0 {
		msg += " or " + strings.Join(also, " or ")
	}
	return &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType, Message: msg}
}

// ReadBody reads r's body, at most max bytes.
func ReadBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, *Error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeBodyTooLarge, Message: fmt.Sprintf("the body exceeds %d bytes", max)}
	}
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeBadBody, Message: "reading the body failed"}
	}
	return b, nil
}

// Body says how Decode treats a body.
type Body struct {
	// Max is the most bytes read.
	Max int64
	// Optional leaves v as it is for an empty body instead of refusing it.
	Optional bool
}

// Decode reads r's JSON body into v strictly: a JSON Content-Type, at most
// b.Max bytes, one object, no unknown fields. A refusal names the field
// when one is at fault.
func (b Body) Decode(w http.ResponseWriter, r *http.Request, v any) *Error {
	if e := JSONContent(r); e != nil {
		return e
	}
	raw, e := ReadBody(w, r, b.Max)
	if e != nil {
		return e
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		if b.Optional {
			return nil
		}
		return &Error{Status: http.StatusBadRequest, Code: CodeBadJSON, Message: "the body is empty; a JSON object is required"}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return &Error{Status: http.StatusBadRequest, Code: CodeBadJSON, Message: "data after the JSON object"}
	}
	return nil
}

// jsonError turns a decoding error into an answer naming the field.
func jsonError(err error) *Error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return Field(CodeInvalidField, typeErr.Field, "must be "+jsonType(typeErr.Type.String()))
	case errors.As(err, &syntaxErr):
		return &Error{Status: http.StatusBadRequest, Code: CodeBadJSON, Message: fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, err)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Status: http.StatusBadRequest, Code: CodeBadJSON, Message: "the JSON object is cut short"}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return Field(CodeUnknownField, strings.Trim(name, `"`), "is not a field of this request")
	}
	return &Error{Status: http.StatusBadRequest, Code: CodeBadJSON, Message: strings.TrimPrefix(err.Error(), "json: ")}
}

func jsonType(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "[]"):
		return "an array of " + strings.TrimSuffix(jsonType(goType[2:]), "s") + "s"
	case goType == "time.Time":
		return "an RFC 3339 time string"
	case strings.HasPrefix(goType, "*"):
		return jsonType(goType[1:])
	}
	return "of type " + goType
}

// Bearer is the bearer token of r's Authorization header, or a 401 that
// asks for one.
func Bearer(w http.ResponseWriter, r *http.Request) (string, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vodpipe"`)
		Write(w, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "an API key is required: Authorization: Bearer <key>"})
		return "", false
	}
	return token, true
}

// RefuseToken answers a bearer token that is not valid; what names what
// was expected ("API key", "API key or upload token").
func RefuseToken(w http.ResponseWriter, what string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="vodpipe", error="invalid_token"`)
	Write(w, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "the " + what + " is not valid"})
}

// LacksScope is the 403 of a key without the scope a route needs.
func LacksScope(k *apikey.Key, scope string) *Error {
	return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: fmt.Sprintf("API key %q lacks the %q scope", k.Name, scope)}
}

type keyCtx struct{}

// Authorize lets a request through when it bears an API key of keys with
// the scope, and puts the key in its context (KeyFrom).
func Authorize(keys apikey.Keys, scope string, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := Bearer(w, r)
		if !ok {
			return
		}
		key, ok := keys.Lookup(token)
		if !ok {
			RefuseToken(w, "API key")
			return
		}
		if !key.Allows(scope) {
			Write(w, LacksScope(key, scope))
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), keyCtx{}, key)))
	})
}

// KeyFrom is the API key Authorize let through, nil outside it.
func KeyFrom(ctx context.Context) *apikey.Key {
	k, _ := ctx.Value(keyCtx{}).(*apikey.Key)
	return k
}

// Refuse answers an Error made of its parts.
func Refuse(w http.ResponseWriter, status int, code, msg string, fields []job.FieldError) {
	Write(w, &Error{Status: status, Code: code, Message: msg, Fields: fields})
}

// NoRoute answers a request no route matched: 404 naming the method and path.
func NoRoute(w http.ResponseWriter, r *http.Request) {
	Refuse(w, http.StatusNotFound, CodeNotFound, "no such route: "+r.Method+" "+r.URL.Path, nil)
}
