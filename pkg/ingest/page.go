package ingest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

//go:embed page/upload.html
var pageFS embed.FS

// sdkPath is where `npm ci --prefix web` puts the official web upload SDK.
const sdkPath = "node_modules/vod-js-sdk-v6/dist/vod-js-sdk-v6.js"

// PageConfig configures the upload page for an application's own users.
type PageConfig struct {
	// WebDir holds web/package.json and, after `npm ci`, the SDK in node_modules.
	WebDir string `envconfig:"WEB_DIR" default:"web" desc:"folder of the web upload SDK package (npm ci --prefix web)"`
	// PageTokenKey signs page tokens; random per process when empty (set it when ingest has replicas).
	PageTokenKey string `envconfig:"PAGE_TOKEN_KEY" desc:"key that signs upload-page tokens (random per process when empty)"`
	// PageTokenTTL is how long a page may ask for signatures.
	PageTokenTTL time.Duration `envconfig:"PAGE_TOKEN_TTL" default:"30m" desc:"lifetime of an upload page's token"`
	// PageProcedure is the task flow of uploads from the page.
	PageProcedure string `envconfig:"PAGE_PROCEDURE" desc:"task flow of uploads from the upload page"`
	// EventsURL is where the page listens for vod.file_uploaded (notify's SSE URL, reachable by browsers).
	EventsURL string `envconfig:"PAGE_EVENTS_URL" desc:"notify's SSE URL the upload page listens on (empty: no event shown)"`
}

var pageTmpl = template.Must(template.ParseFS(pageFS, "page/upload.html"))

var userPattern = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)

// pageToken is what the upload page sends as its bearer token: who the end
// user is and until when, signed. Its only scope is "sign", and the
// signature's sourceContext is fixed to the user.
type pageToken struct {
	User    string
	Expires time.Time
}

func (s *Service) pageKey() []byte {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	if s.tokenKey == nil {
		if s.cfg.PageTokenKey != "" {
			s.tokenKey = []byte(s.cfg.PageTokenKey)
		} else {
			s.tokenKey = make([]byte, 32)
			_, _ = rand.Read(s.tokenKey)
		}
	}
	return s.tokenKey
}

func (s *Service) issuePageToken(user string, now time.Time) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(user + "|" + strconv.FormatInt(now.Add(s.pageTTL()).Unix(), 10)))
	m := hmac.New(sha256.New, s.pageKey())
	m.Write([]byte(payload))
	return "pt." + payload + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Service) pageTTL() time.Duration {
	if s.cfg.PageTokenTTL > 0 {
		return s.cfg.PageTokenTTL
	}
	return 30 * time.Minute
}

var errPageToken = errors.New("page token invalid or expired")

func (s *Service) verifyPageToken(tok string, now time.Time) (pageToken, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != "pt" {
		return pageToken{}, errPageToken
	}
	m := hmac.New(sha256.New, s.pageKey())
	m.Write([]byte(parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, m.Sum(nil)) {
		return pageToken{}, errPageToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return pageToken{}, errPageToken
	}
	user, exp, ok := strings.Cut(string(raw), "|")
	n, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil || now.Unix() >= n {
		return pageToken{}, errPageToken
	}
	return pageToken{User: user, Expires: time.Unix(n, 0)}, nil
}

// uploadPage serves the page for an end user. The application in front of
// ingest authenticates its users and passes ?user=; the demo accepts any name.
func (s *Service) uploadPage(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if user == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		user = "visitor-" + hex.EncodeToString(b)
	}
	if !userPattern.MatchString(user) {
		writeError(w, http.StatusBadRequest, "invalid_query", "user must be 1..64 letters, digits or _ . @ -", nil)
		return
	}
	cfg, _ := json.Marshal(map[string]string{
		"pageToken": s.issuePageToken(user, time.Now()), "procedure": s.cfg.PageProcedure, "eventsUrl": s.cfg.EventsURL,
	})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; connect-src *; img-src 'self' data:; style-src 'unsafe-inline'")
	if err := pageTmpl.Execute(w, map[string]any{"User": user, "Config": template.JS(cfg)}); err != nil {
		s.log.Error("upload page", "err", err)
	}
}

// uploadSDK serves the official web SDK from the installed npm package.
func (s *Service) uploadSDK(w http.ResponseWriter, r *http.Request) {
	p := filepath.Join(s.cfg.WebDir, sdkPath)
	if _, err := os.Stat(p); err != nil {
		writeError(w, http.StatusNotFound, "sdk_not_installed", fmt.Sprintf("the web upload SDK is not installed: run `npm ci --prefix %s`", s.cfg.WebDir), nil)
		return
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.ServeFile(w, r, p)
}
