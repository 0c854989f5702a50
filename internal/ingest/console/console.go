// Package console is the operations console that ingest serves at
// /console: server-rendered pages over the same APIs the CLI calls
// (ingest's, in process, and notify's over HTTP, both with the signed-in
// operator's API key, so what a key may not do the API refuses), with live
// progress from the pipeline's events.
package console

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/vodpipe/vodpipe/internal/apikey"
	"github.com/vodpipe/vodpipe/pkg/client"
)

//go:embed templates/*.html static/*
var files embed.FS

// Config configures the console (prefix VODPIPE_).
type Config struct {
	// Console serves /console.
	Console bool `envconfig:"CONSOLE" default:"true" desc:"serve the operations console at /console (sign-in with an API key)"`
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration `envconfig:"CONSOLE_SESSION_TTL" default:"12h" desc:"how long a console sign-in lasts"`
	// NotifyURL is where the console reaches notify's API for its webhook pages.
	NotifyURL string `envconfig:"NOTIFY_URL" desc:"notify's URL, for the console's webhook pages (empty: the console shows no webhooks)"`
}

// Live is the pipeline's events as they are published (ingest's).
type Live interface {
	Subscribe() (events <-chan []byte, stop func(), err error)
}

// Console serves the pages.
type Console struct {
	cfg    Config
	log    *slog.Logger
	keys   apikey.Keys
	sealer *sealer
	live   Live
	pages  map[string]*template.Template
	static http.Handler
	// inproc calls ingest's API in this process, through its handler
	// (authentication, scopes and validation included).
	inproc *http.Client
	// logins limits failed sign-ins, all callers together.
	logins *rate.Limiter
}

// New returns the console. api is ingest's API handler; secret is shared by
// every ingest replica (the sessions are sealed under a key derived from it).
func New(cfg Config, keys apikey.Keys, secret []byte, api http.Handler, live Live, log *slog.Logger) (*Console, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	s, err := newSealer(secret)
	if err != nil {
		return nil, err
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(files, "static")
	if err != nil {
		return nil, err
	}
	return &Console{cfg: cfg, log: log, keys: keys, sealer: s, live: live, pages: pages,
		static: http.StripPrefix("/console/static/", http.FileServer(http.FS(sub))),
		inproc: &http.Client{Transport: handlerTransport{api}, Timeout: 30 * time.Second},
		logins: rate.NewLimiter(5, 20)}, nil
}

// handlerTransport answers a request with an http.Handler in process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// Register adds the console's routes to mux.
func (c *Console) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /console/login", c.loginPage)
	mux.HandleFunc("POST /console/login", c.login)
	mux.Handle("GET /console/static/", c.headers(c.static))
	for _, r := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"POST /console/logout", c.logout},
		{"GET /console", c.overview},
		{"GET /console/{$}", c.overview},
		{"GET /console/jobs", c.jobs},
		{"GET /console/jobs/{id}", c.jobPage},
		{"POST /console/jobs/{id}/{action}", c.jobAction},
		{"GET /console/dead-letters", c.deadLetters},
		{"GET /console/dead-letters/{seq}", c.deadLetter},
		{"POST /console/dead-letters/{seq}/requeue", c.requeue},
		{"GET /console/webhooks", c.webhooks},
		{"GET /console/webhooks/{id}", c.webhook},
		{"POST /console/webhooks/{id}/{action}", c.webhookAction},
		{"GET /console/events", c.events},
	} {
		mux.Handle(r.pattern, c.headers(c.signedIn(r.h)))
	}
}

// headers are every console answer's: no caching, no framing, scripts and
// styles from the console only.
func (c *Console) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "+
			"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/console/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// signedIn requires a session; a POST also requires the session's CSRF
// token and a same-origin request. A GET without a session goes to the
// sign-in page.
func (c *Console) signedIn(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var sess session
		ok := false
		if ck, err := r.Cookie(cookieName); err == nil {
			sess, ok = c.sealer.open(ck.Value, time.Now())
		}
		var key *apikey.Key
		if ok {
			key, ok = c.keys.Lookup(sess.Key) // a key removed since sign-in ends the session
		}
		if !ok {
			if r.Method == http.MethodGet && r.URL.Path != "/console/events" {
				http.Redirect(w, r, "/console/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.fail(w, r, http.StatusUnauthorized, "You are not signed in, or your session has ended. Sign in again.")
			return
		}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) {
				c.fail(w, r, http.StatusForbidden, "Refused: the request did not come from the console's own pages.")
				return
			}
			token := r.Header.Get("X-CSRF-Token")
			if token == "" {
				token = r.PostFormValue("csrf")
			}
			if !validCSRF(sess, token) {
				c.fail(w, r, http.StatusForbidden, "Refused: the form's CSRF token is missing or wrong. Reload the page and try again.")
				return
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, &operator{sess: sess, key: key})))
	})
}

// sameOrigin refuses what a browser marks as sent from another site (the
// Sec-Fetch-Site and Origin headers), a second line behind the CSRF token
// and the SameSite=Strict cookie.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host
	}
	return r.Header.Get("Origin") != "null"
}

// loginPage shows the sign-in form.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusOK, "login", map[string]any{"Next": safeNext(r.URL.Query().Get("next"))})
	})).ServeHTTP(w, r)
}

// login checks the API key and sets the session cookie.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	c.headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		next := safeNext(r.PostFormValue("next"))
		if !sameOrigin(r) {
			c.fail(w, r, http.StatusForbidden, "Refused: the sign-in did not come from the console's own page.")
			return
		}
		// Failed sign-ins spend the limiter's tokens; while none is left,
		// every sign-in waits, a right key's too: answering a right one
		// then would tell a guesser which guess was right at any rate.
		if c.logins.Tokens() < 1 {
			w.Header().Set("Retry-After", "1")
			c.render(w, r, http.StatusTooManyRequests, "login", map[string]any{"Next": next, "Error": "Too many failed sign-ins: wait a moment."})
			return
		}
		token := strings.TrimSpace(r.PostFormValue("key"))
		if _, ok := c.keys.Lookup(token); !ok {
			c.logins.Allow()
			c.log.Warn("console: sign-in refused: unknown API key", "remote", r.RemoteAddr)
			c.render(w, r, http.StatusUnauthorized, "login", map[string]any{"Next": next, "Error": "That API key is not one of this service's keys."})
			return
		}
		exp := time.Now().Add(c.cfg.SessionTTL)
		v, err := c.sealer.seal(session{Key: token, Expires: exp.Unix(), CSRF: randomToken()})
		if err != nil {
			c.fail(w, r, http.StatusInternalServerError, "Could not start a session.")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: v, Path: "/console", Expires: exp, HttpOnly: true,
			Secure: secure(r), SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, next, http.StatusSeeOther)
	})).ServeHTTP(w, r)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/console", MaxAge: -1, HttpOnly: true,
		Secure: secure(r), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// safeNext is where to go after signing in: a console path only, never
// another site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/console") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") ||
		strings.HasPrefix(next, "/console/login") {
		return "/console"
	}
	return next
}

// ingest is the ingest API client for the operator's key.
func (c *Console) ingest(o *operator) *client.Client {
	return client.NewClient("http://ingest.local", o.sess.Key).WithHTTPClient(c.inproc)
}

// errNoNotify means the console has no notify URL.
var errNoNotify = errors.New("the console has no notify URL (VODPIPE_NOTIFY_URL): webhooks cannot be shown")

// notify is the notify API client for the operator's key.
func (c *Console) notify(o *operator) (*client.Client, error) {
	if c.cfg.NotifyURL == "" {
		return nil, errNoNotify
	}
	return client.NewClient(c.cfg.NotifyURL, o.sess.Key), nil
}
