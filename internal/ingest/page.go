package ingest

import (
	"embed"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vodpipe/vodpipe/internal/httpapi"
	"github.com/vodpipe/vodpipe/internal/httpserve"
	"github.com/vodpipe/vodpipe/internal/queue"
	"github.com/vodpipe/vodpipe/pkg/job"
)

//go:embed page/upload.html
var pageFS embed.FS

// sdkPath is where `npm ci --prefix web` puts the official web upload SDK.
const sdkPath = "node_modules/vod-js-sdk-v6/dist/vod-js-sdk-v6.js"

// PageConfig configures the upload page for an application's own users.
type PageConfig struct {
	// UploadPage serves /upload: off unless enabled.
	UploadPage bool `envconfig:"UPLOAD_PAGE" desc:"serve the upload page for end users at /upload (needs UPLOAD_TOKEN_KEYS)"`
	// WebDir holds web/package.json and, after `npm ci`, the SDK in node_modules.
	WebDir string `envconfig:"WEB_DIR" default:"web" desc:"folder of the web upload SDK package (npm ci --prefix web)"`
}

// pageHTML is the page: static, its token comes in the URL's fragment.
var pageHTML, _ = pageFS.ReadFile("page/upload.html")

// pageOnly answers 404 unless the upload page is enabled.
func (s *Service) pageOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.cfg.UploadPage {
			httpapi.Refuse(w, http.StatusNotFound, httpapi.CodeNotFound, "the upload page is off (VODPIPE_UPLOAD_PAGE)", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// uploadPage serves the page. It takes no user: the application's backend
// mints an upload token for its signed-in user and sends the browser to
// /upload#token=…, a fragment that browsers never send to a server, so no
// proxy logs it. The page sends it only in Authorization headers.
func (*Service) uploadPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; connect-src *; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'none'")
	_, _ = w.Write(pageHTML)
}

// uploadSDK serves the official web SDK from the installed npm package.
func (s *Service) uploadSDK(w http.ResponseWriter, r *http.Request) {
	p := filepath.Join(s.cfg.WebDir, sdkPath)
	if _, err := os.Stat(p); err != nil {
		httpapi.Refuse(w, http.StatusNotFound, httpapi.CodeSDKNotInstalled, fmt.Sprintf("the web upload SDK is not installed: run `npm ci --prefix %s`", s.cfg.WebDir), nil)
		return
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.ServeFile(w, r, p)
}

// uploadEvents streams to an upload page the vod.file_uploaded events of
// its own token's sourceContext, as server-sent events. The page reads it
// with fetch, so the token travels in the Authorization header.
func (s *Service) uploadEvents(w http.ResponseWriter, r *http.Request) {
	key := keyFrom(r)
	if key.Upload == nil {
		httpapi.Refuse(w, http.StatusForbidden, httpapi.CodeForbidden, "the upload page's events are for upload tokens", nil)
		return
	}
	// The server caps such streams (httpserve.Streams); an authorised one
	// outlives the request deadlines.
	sub, ok := s.page.subscribe(key.Upload.streamHolder(), key.Upload.Policy.SourceContext)
	if !ok {
		w.Header().Set("Retry-After", "5")
		httpapi.Refuse(w, http.StatusTooManyRequests, httpapi.CodeTooManyStreams,
			fmt.Sprintf("this user has %d upload page streams open, as many as one may (VODPIPE_UPLOAD_TOKEN_MAX_STREAMS); close one", s.page.perHolder), nil)
		return
	}
	defer s.page.unsubscribe(sub)
	httpserve.StartStream(w)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	expires := time.NewTimer(time.Until(time.Unix(key.Upload.Expires, 0)))
	defer expires.Stop()
	heartbeat := time.NewTicker(15 * time.Second)
	defer heartbeat.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-expires.C:
			return // the token's life is the stream's
		case <-heartbeat.C:
			_ = rc.SetWriteDeadline(time.Now().Add(pageWriteTimeout))
			_, err = w.Write([]byte(": heartbeat\n\n"))
		case ev := <-sub.ch:
			_ = rc.SetWriteDeadline(time.Now().Add(pageWriteTimeout))
			_, err = fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", ev.id, job.EventVODFileUpload, ev.data)
		}
		if err != nil || rc.Flush() != nil {
			return
		}
	}
}

// pageWriteTimeout bounds one write to a page's stream: a page that stops
// reading loses its stream rather than holding it.
const pageWriteTimeout = 30 * time.Second

// pageEvents is the one subscription to VOD's file events that every
// upload page's stream shares: each event goes to the streams of its
// sourceContext only.
type pageEvents struct {
	sub      *nats.Subscription
	log      *slog.Logger
	received prometheus.Counter

	perHolder int // streams one end user may have open (see streamHolder)

	mu      sync.Mutex
	streams map[string]map[*pageStream]struct{} // by sourceContext
	holders map[string]int                      // streams open, by streamHolder
	// recent events, replayed to a stream that opens just after its
	// upload's event was published.
	recent [recentPageEvents]pageEvent
	next   int
}

// recentPageEvents is how many of the latest events are kept for replay.
const recentPageEvents = 256

// pageReplayAge bounds the age of the events replayed to a new stream.
const pageReplayAge = 10 * time.Minute

type pageStream struct {
	sourceContext string
	holder        string
	ch            chan pageEvent
}

// streamHolder is whom the upload page's streams of a token count
// against: its end user, as the key that minted it names them (a page
// reloaded gets a new token for the same user), or the token itself.
func (c *uploadClaims) streamHolder() string {
	if c.User == "" {
		return "token\x00" + c.ID
	}
	return "user\x00" + c.Issuer + "\x00" + c.User
}

type pageEvent struct {
	id            string
	sourceContext string
	at            time.Time
	data          []byte
}

// startPageEvents subscribes to vod.file_uploaded events as they are published.
func startPageEvents(nc *nats.Conn, perHolder int, received prometheus.Counter, log *slog.Logger) (*pageEvents, error) {
	p := &pageEvents{log: log, received: received, perHolder: perHolder,
		streams: map[string]map[*pageStream]struct{}{}, holders: map[string]int{}}
	sub, err := nc.Subscribe(queue.EventsPrefix+"."+job.EventVODFileUpload+".>", p.deliver)
	if err != nil {
		return nil, fmt.Errorf("ingest: subscribe to the upload page's events: %w", err)
	}
	p.sub = sub
	return p, nil
}

func (p *pageEvents) close() { _ = p.sub.Unsubscribe() }

// deliver hands one event to the streams of its sourceContext; a stream
// that is not keeping up misses it rather than holding the others back.
func (p *pageEvents) deliver(m *nats.Msg) {
	var ev struct {
		ID   string `json:"id"`
		Data struct {
			SourceContext string `json:"sourceContext"`
		} `json:"data"`
	}
	if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Data.SourceContext == "" {
		return
	}
	p.received.Inc()
	pe := pageEvent{id: ev.ID, sourceContext: ev.Data.SourceContext, at: time.Now(), data: m.Data}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recent[p.next] = pe
	p.next = (p.next + 1) % recentPageEvents
	for st := range p.streams[ev.Data.SourceContext] {
		select {
		case st.ch <- pe:
		default:
			p.log.Warn("upload page stream behind: an event skipped", "event_id", ev.ID)
		}
	}
}

// subscribe adds a stream for one sourceContext, replaying its latest
// recent events (the newest half a buffer's worth, oldest first); false
// when holder has as many streams open as one may.
func (p *pageEvents) subscribe(holder, sourceContext string) (*pageStream, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holders[holder] >= p.perHolder {
		return nil, false
	}
	p.holders[holder]++
	st := &pageStream{sourceContext: sourceContext, holder: holder, ch: make(chan pageEvent, 32)}
	var replay []pageEvent
	for i := 1; i <= recentPageEvents && len(replay) < cap(st.ch)/2; i++ {
		pe := p.recent[(p.next-i+recentPageEvents)%recentPageEvents]
		if pe.sourceContext == sourceContext && time.Since(pe.at) < pageReplayAge {
			replay = append(replay, pe)
		}
	}
	for i := len(replay) - 1; i >= 0; i-- {
		st.ch <- replay[i]
	}
	if p.streams[sourceContext] == nil {
		p.streams[sourceContext] = map[*pageStream]struct{}{}
	}
	p.streams[sourceContext][st] = struct{}{}
	return st, true
}

func (p *pageEvents) unsubscribe(st *pageStream) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.streams[st.sourceContext], st)
	if len(p.streams[st.sourceContext]) == 0 {
		delete(p.streams, st.sourceContext)
	}
	if p.holders[st.holder]--; p.holders[st.holder] <= 0 {
		delete(p.holders, st.holder)
	}
}
