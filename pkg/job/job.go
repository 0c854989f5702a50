// Package job defines vodpipe's job message (versioned JSON), its validation,
// the job state machine and the event envelope. It imports nothing of
// vodpipe's, so publishers outside the pipeline can use it alone.
package job

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// Version is the job message version this package writes and reads.
const Version = 1

// Limits of a job message.
const (
	MaxMessageSize       = 64 << 10
	MaxIDLen             = 128
	MaxSourceLen         = 4096
	MaxMediaNameLen      = 64
	MaxSourceContextLen  = 250
	MaxSessionContextLen = 1000
	MaxMetadataSize      = 8 << 10
	MinPriority          = -10
	MaxPriority          = 10
)

var (
	idPattern        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$`)
	regionPattern    = regexp.MustCompile(`^[a-z]{2,}(-[a-z]+)+(-[0-9]+)?$`)
	procedurePattern = regexp.MustCompile(`^[A-Za-z0-9_\-.]{1,40}$`)
	mediaTypePattern = regexp.MustCompile(`^[a-z0-9]{1,8}$`)
	// badNameChars are refused in media names by VOD (and the official web SDK).
	badNameChars = `\/:*?"<>|`
)

// Job is one upload job: a source to upload into VOD with its policy.
type Job struct {
	// V is the message version; it must be 1.
	V int `json:"v"`
	// ID identifies the job; the publisher chooses it (for idempotency) or ingest generates one.
	ID string `json:"id"`
	// Source is the media: file:///path under the worker's source root, or an http(s) URL.
	Source string `json:"source"`
	// Cover is an optional cover image, same forms as Source.
	Cover string `json:"cover,omitempty"`
	// MediaName is the media's name in VOD; default: the source's base name without extension.
	MediaName string `json:"mediaName,omitempty"`
	// MediaType is the lower-case extension; default: the source's extension.
	MediaType string `json:"mediaType,omitempty"`
	// Procedure is the task flow VOD runs after upload.
	Procedure string `json:"procedure,omitempty"`
	// StorageRegion is where VOD stores the media, e.g. ap-guangzhou.
	StorageRegion string `json:"storageRegion,omitempty"`
	// ClassID is the media category.
	ClassID int64 `json:"classId,omitempty"`
	// SubAppID is the VOD sub-application.
	SubAppID uint64 `json:"subAppId,omitempty"`
	// SourceContext comes back in VOD's NewFileUpload event (at most 250 characters).
	SourceContext string `json:"sourceContext,omitempty"`
	// SessionContext is passed to the task flow.
	SessionContext string `json:"sessionContext,omitempty"`
	// OneTimeSignature makes every signature of this job valid for one use.
	OneTimeSignature bool `json:"oneTimeSignature,omitempty"`
	// Priority orders jobs: higher runs first (-10..10).
	Priority int `json:"priority,omitempty"`
	// Metadata is free-form JSON passed through to the job's events.
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// FieldError names one bad field of a job message.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (e FieldError) Error() string { return e.Field + ": " + e.Reason }

// ValidationError lists every bad field of a job message.
type ValidationError struct {
	Fields []FieldError `json:"fields"`
}

// ErrInvalid is matched by every *ValidationError.
var ErrInvalid = errors.New("job: invalid")

// Error implements error.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return "invalid job: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func (e *ValidationError) add(field, format string, args ...any) {
	e.Fields = append(e.Fields, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// Decode parses a job message strictly: unknown fields, wrong types and a
// message over MaxMessageSize are errors naming the field; then Validate runs.
func Decode(b []byte) (*Job, error) {
	if len(b) > MaxMessageSize {
		return nil, &ValidationError{Fields: []FieldError{{Field: "(message)", Reason: fmt.Sprintf("larger than %d bytes", MaxMessageSize)}}}
	}
	// encoding/json would quietly turn invalid UTF-8, and a \u escape of
	// half a UTF-16 surrogate pair, into U+FFFD: a name, context or path
	// changed without a word. Refused instead, by field.
	if !validText(b) {
		return nil, &ValidationError{Fields: invalidUTF8(b)}
	}
	var j Job
	if err := decodeStrict(b, &j); err != nil {
		return nil, err
	}
	if err := j.Validate(); err != nil {
		return &j, err
	}
	return &j, nil
}

// validText reports whether JSON text b is valid UTF-8 and escapes no lone
// UTF-16 surrogate (\ud800-\udfff not in a high-low pair).
func validText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for i := 0; i+1 < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] != 'u' {
			i++ // an escaped character, possibly a backslash
			continue
		}
		r, ok := hex4(b, i+2)
		switch {
		case !ok || r < 0xd800 || r > 0xdfff:
		case r >= 0xdc00: // a low surrogate with no high one before it
			return false
		default: // a high surrogate: a low one must follow
			if low, ok := hex4(b, i+8); !ok || i+7 >= len(b) || b[i+6] != '\\' || b[i+7] != 'u' || low < 0xdc00 || low > 0xdfff {
				return false
			}
			i += 6
		}
		i += 5
	}
	return true
}

// hex4 reads four hex digits at b[at:].
func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// invalidUTF8 names the top-level fields of message b whose value is not
// valid text (validText), or the message itself when no value is at fault
// (a field's name, or bytes that are not JSON at all).
func invalidUTF8(b []byte) []FieldError {
	const reason = "not valid UTF-8 (or half a UTF-16 surrogate pair)"
	var fields map[string]json.RawMessage
	if json.Unmarshal(b, &fields) != nil {
		return []FieldError{{Field: "(message)", Reason: reason}}
	}
	var out []FieldError
	for name, v := range fields {
		if !validText(v) {
			out = append(out, FieldError{Field: name, Reason: reason})
		}
	}
	if len(out) == 0 {
		return []FieldError{{Field: "(message)", Reason: reason}}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Field < out[k].Field })
	return out
}

// jobFields are the names of a job message's fields, as its JSON tags spell
// them (a lookup table, set once).
var jobFields = func() map[string]bool {
	out := map[string]bool{}
	t := reflect.TypeFor[Job]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}()

// checkKeys refuses a top-level key that is not one of jobFields spelled
// exactly, and a key given twice: encoding/json matches names whatever
// their case and lets a later duplicate win, so {"source": a, "SOURCE": b}
// would upload b where a gateway that checked "source" saw a. Malformed
// JSON is left to the decoder, which says where.
func checkKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := t.(string)
		switch {
		case !jobFields[key]:
			return &ValidationError{Fields: []FieldError{{Field: key, Reason: "unknown field (names are case-sensitive)"}}}
		case seen[key]:
			return &ValidationError{Fields: []FieldError{{Field: key, Reason: "given twice"}}}
		}
		seen[key] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return nil
		}
	}
	return nil
}

func decodeStrict(b []byte, j *Job) error {
	if err := checkKeys(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(j)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			return &ValidationError{Fields: []FieldError{{Field: "(message)", Reason: "trailing data after the JSON object"}}}
		}
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return &ValidationError{Fields: typeErrors(b, typeErr)}
	case errors.As(err, &syntaxErr):
		return &ValidationError{Fields: []FieldError{{Field: "(message)", Reason: fmt.Sprintf("not valid JSON at byte %d", syntaxErr.Offset)}}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &ValidationError{Fields: []FieldError{{Field: name, Reason: "unknown field"}}}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &ValidationError{Fields: []FieldError{{Field: "(message)", Reason: "empty or truncated JSON"}}}
	}
	return &ValidationError{Fields: []FieldError{{Field: "(message)", Reason: err.Error()}}}
}

// typeErrors names every top-level field of message b of the wrong type
// (encoding/json reports only the first, first): each field is decoded on
// its own.
func typeErrors(b []byte, first *json.UnmarshalTypeError) []FieldError {
	fieldError := func(te *json.UnmarshalTypeError) FieldError {
		field := te.Field
		if field == "" {
			field = "(message)"
		}
		return FieldError{Field: field, Reason: fmt.Sprintf("must be %s, not %s", jsonKind(te.Type.Kind().String()), te.Value)}
	}
	var fields map[string]json.RawMessage
	if first.Field == "" || json.Unmarshal(b, &fields) != nil {
		return []FieldError{fieldError(first)}
	}
	var out []FieldError
	named := map[string]bool{} // keys differing only in case name one field
	for name, raw := range fields {
		one, err := json.Marshal(map[string]json.RawMessage{name: raw})
		if err != nil {
			continue
		}
		var j Job
		var te *json.UnmarshalTypeError
		if err := json.Unmarshal(one, &j); errors.As(err, &te) && !named[te.Field] {
			named[te.Field] = true
			out = append(out, fieldError(te))
		}
	}
	if len(out) == 0 {
		return []FieldError{fieldError(first)}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Field < out[k].Field })
	return out
}

func jsonKind(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"), strings.HasPrefix(k, "float"):
		return "a number"
	case k == "string":
		return "a string"
	case k == "bool":
		return "true or false"
	}
	return "a " + k
}

// Validate checks every field and returns a *ValidationError listing all bad
// ones. It does not apply defaults; call Normalize first for that.
// ValidID reports whether id is a valid job id (see Validate): one a
// malformed request path cannot be.
func ValidID(id string) bool {
	return id != "" && len(id) <= MaxIDLen && idPattern.MatchString(id)
}

func (j *Job) Validate() error {
	e := &ValidationError{}
	if j.V != Version {
		e.add("v", "must be %d", Version)
	}
	switch {
	case j.ID == "":
		e.add("id", "is required")
	case len(j.ID) > MaxIDLen:
		e.add("id", "longer than %d characters", MaxIDLen)
	case !idPattern.MatchString(j.ID):
		e.add("id", "may hold only letters, digits, '_', '.' and '-', start with a letter or digit, and neither end with '.' nor hold '..'")
	}
	sourceOK := validateSource(e, "source", j.Source, true)
	validateSource(e, "cover", j.Cover, false)
	if j.MediaName != "" {
		if utf8.RuneCountInString(j.MediaName) > MaxMediaNameLen {
			e.add("mediaName", "longer than %d characters", MaxMediaNameLen)
		}
		if strings.ContainsAny(j.MediaName, badNameChars) {
			e.add("mediaName", `may not contain \ / : * ? " < > |`)
		}
	}
	if j.MediaType != "" && !mediaTypePattern.MatchString(j.MediaType) {
		e.add("mediaType", "must be a lower-case extension such as mp4")
	}
	if j.Procedure != "" && !procedurePattern.MatchString(j.Procedure) {
		e.add("procedure", "must be 1..40 letters, digits, '_', '-' or '.'")
	}
	if j.StorageRegion != "" && !regionPattern.MatchString(j.StorageRegion) {
		e.add("storageRegion", "must look like ap-guangzhou")
	}
	if j.ClassID < 0 {
		e.add("classId", "must not be negative")
	}
	if n := utf8.RuneCountInString(j.SourceContext); n > MaxSourceContextLen {
		e.add("sourceContext", "is %d characters, at most %d allowed", n, MaxSourceContextLen)
	}
	if n := utf8.RuneCountInString(j.SessionContext); n > MaxSessionContextLen {
		e.add("sessionContext", "is %d characters, at most %d allowed", n, MaxSessionContextLen)
	}
	if j.Priority < MinPriority || j.Priority > MaxPriority {
		e.add("priority", "must be between %d and %d", MinPriority, MaxPriority)
	}
	if len(j.Metadata) > 0 {
		if len(j.Metadata) > MaxMetadataSize {
			e.add("metadata", "larger than %d bytes", MaxMetadataSize)
		} else if !json.Valid(j.Metadata) || j.Metadata[0] != '{' {
			e.add("metadata", "must be a JSON object")
		}
	}
	if j.MediaType == "" && sourceOK {
		if _, ext := splitName(j.Source); ext == "" {
			e.add("mediaType", "is required when the source has no extension")
		}
	}
	if len(e.Fields) > 0 {
		sort.SliceStable(e.Fields, func(a, b int) bool { return e.Fields[a].Field < e.Fields[b].Field })
		return e
	}
	return nil
}

// validateSource reports whether s is a usable source; an empty optional one is not.
func validateSource(e *ValidationError, field, s string, required bool) bool {
	n := len(e.Fields)
	if s == "" {
		if required {
			e.add(field, "is required")
		}
		return false
	}
	if len(s) > MaxSourceLen {
		e.add(field, "longer than %d characters", MaxSourceLen)
		return false
	}
	u, err := url.Parse(s)
	if err != nil {
		e.add(field, "is not a URL")
		return false
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			e.add(field, "file URL must be file:///absolute/path")
			return false
		}
		p := u.Path
		if !strings.HasPrefix(p, "/") {
			e.add(field, "file URL must be file:///absolute/path")
			return false
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == ".." {
				e.add(field, "may not contain '..'")
				return false
			}
		}
		if strings.ContainsRune(p, 0) {
			e.add(field, "may not contain NUL")
		}
	case "http", "https":
		if u.Host == "" {
			e.add(field, "URL has no host")
		}
		if u.User != nil {
			e.add(field, "URL may not carry credentials")
		}
	default:
		e.add(field, "must be a file:// or http(s):// URL")
	}
	return len(e.Fields) == n
}

// Normalize fills defaults: version, a generated id, media name and type from the source.
func (j *Job) Normalize() {
	if j.V == 0 {
		j.V = Version
	}
	if j.ID == "" {
		j.ID = NewID()
	}
	name, ext := splitName(j.Source)
	if j.MediaName == "" {
		j.MediaName = sanitizeName(name)
	}
	if j.MediaType == "" {
		j.MediaType = ext
	}
}

// NewID returns a random job id.
func NewID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "j-" + hex.EncodeToString(b)
}

// splitName returns the base name without extension and the lower-case extension of a source URL.
func splitName(source string) (string, string) {
	u, err := url.Parse(source)
	if err != nil {
		return "", ""
	}
	base := path.Base(u.Path)
	if base == "/" || base == "." {
		return "", ""
	}
	ext := path.Ext(base)
	name := strings.TrimSuffix(base, ext)
	ext = strings.ToLower(strings.TrimPrefix(ext, "."))
	if !mediaTypePattern.MatchString(ext) {
		ext = ""
	}
	return name, ext
}

func sanitizeName(n string) string {
	n = strings.Map(func(r rune) rune {
		if strings.ContainsRune(badNameChars, r) {
			return '_'
		}
		return r
	}, n)
	if r := []rune(n); len(r) > MaxMediaNameLen {
		n = string(r[:MaxMediaNameLen])
	}
	if n == "" {
		n = "media"
	}
	return n
}

// Encode returns the job as JSON.
func (j *Job) Encode() ([]byte, error) { return json.Marshal(j) }
