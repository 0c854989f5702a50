package ingest

import (
	"bufio"
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
	"io"
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
	// PageNotifyURL is notify's base URL as ingest reaches it; the page's
	// events come through ingest (GET /upload/events), filtered to the page's user.
	PageNotifyURL string `envconfig:"PAGE_NOTIFY_URL" desc:"notify's URL, for the upload page's events (empty: the page shows none)"`
	// PageNotifyKey is an API key of notify with the read scope.
	PageNotifyKey string `envconfig:"PAGE_NOTIFY_KEY" desc:"notify API key (read scope) ingest uses for the page's events"`
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
	cfg, _ := json.Marshal(map[string]any{
		"pageToken": s.issuePageToken(user, time.Now()), "procedure": s.cfg.PageProcedure, "events": s.cfg.PageNotifyURL != "",
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

// uploadEvents streams, to an upload page, the vod.file_uploaded events of its
// own user: it follows notify's event stream with ingest's notify key (a
// browser's EventSource cannot send one) and passes on only the events whose
// sourceContext is the page token's user.
func (s *Service) uploadEvents(w http.ResponseWriter, r *http.Request) {
	pt, err := s.verifyPageToken(r.URL.Query().Get("token"), time.Now())
	if err != nil {
		writeError(w, http.StatusUnauthorized, "unauthenticated", err.Error(), nil)
		return
	}
	if s.cfg.PageNotifyURL == "" {
		writeError(w, http.StatusNotFound, "not_configured", "no notify URL configured for the upload page's events", nil)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet,
		strings.TrimRight(s.cfg.PageNotifyURL, "/")+"/v1/events?type=vod.file_uploaded", nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "bad notify URL", nil)
		return
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.PageNotifyKey)
	req.Header.Set("Accept", "text/event-stream")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		req.Header.Set("Last-Event-ID", id)
	}
	resp, err := s.sseClient.Do(req)
	if err != nil {
		writeError(w, http.StatusBadGateway, "notify_unavailable", "the event stream is unavailable", nil)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		writeError(w, http.StatusBadGateway, "notify_unavailable", fmt.Sprintf("notify answered %d", resp.StatusCode), nil)
		return
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	want := "user=" + pt.User
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var block []string
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			block = append(block, line)
			continue
		}
		if ownEvent(block, want) {
			_, _ = io.WriteString(w, strings.Join(block, "\n")+"\n\n")
			if flusher != nil {
				flusher.Flush()
			}
		}
		block = block[:0]
	}
}

// ownEvent reports whether an SSE block carries an event of the user.
func ownEvent(block []string, sourceContext string) bool {
	for _, l := range block {
		data, ok := strings.CutPrefix(l, "data: ")
		if !ok {
			continue
		}
		var ev struct {
			Data struct {
				SourceContext string `json:"sourceContext"`
			} `json:"data"`
		}
		if json.Unmarshal([]byte(data), &ev) == nil && ev.Data.SourceContext == sourceContext {
			return true
		}
	}
	return false
}
