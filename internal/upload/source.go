package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vodpipe/vodpipe/internal/netguard"
	"github.com/vodpipe/vodpipe/internal/redact"
)

// Source errors, matched with errors.Is. All are permanent for the job.
var (
	ErrSourceNotFound  = errors.New("upload: source not found")
	ErrSourceForbidden = errors.New("upload: source not allowed")
	ErrSourceChanged   = errors.New("upload: source changed during upload")
)

// Source is media to upload, read at offsets so parts can be sent in any order
// and resumed. Implementations are safe for concurrent ReadAt.
type Source interface {
	io.ReaderAt
	io.Closer
	// Size is the source's length, fixed when it was opened.
	Size() int64
	// Check reports ErrSourceChanged if the source is no longer what was
	// opened, ErrSourceNotFound if it is gone.
	Check(ctx context.Context) error
	// Streams reports whether ReadAt is cheap for small reads (a file) or each
	// call costs a request (HTTP), in which case parts are read in one call.
	Streams() bool
	// Version names the content opened, as far as the source can tell: a
	// file's modification time, an HTTP resource's ETag or Last-Modified;
	// "" when it cannot. A run resumes a session only over the same
	// version (with the same size): the parts kept are the old content's.
	Version() string
}

// Sources opens job sources: file:// under a root, and http(s) URLs.
type Sources struct {
	root      *os.Root
	rootPaths []string // as configured and with symlinks resolved: sources may spell either
	client    *http.Client
	guard     *netguard.Guard
}

// SourcesConfig configures Sources.
type SourcesConfig struct {
	// Root is the only folder file:// sources may come from; empty refuses file://.
	Root string `envconfig:"SOURCE_ROOT" desc:"folder that file:// sources must be under (empty: file:// refused)"`
	// AllowCIDRs are non-public addresses http(s) sources may reach.
	AllowCIDRs netguard.CIDRs `envconfig:"SOURCE_ALLOW_CIDRS" desc:"CIDRs beyond the public internet that http(s) sources may reach, comma-separated (link-local and cloud metadata addresses never)"`
	// AllowPrivate adds loopback and private ranges to AllowCIDRs.
	AllowPrivate bool `envconfig:"SOURCE_ALLOW_PRIVATE" desc:"shorthand: add loopback and private ranges (127.0.0.0/8, ::1, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7) to SOURCE_ALLOW_CIDRS"`
	// Timeout bounds one HTTP request of a source.
	Timeout time.Duration `envconfig:"SOURCE_HTTP_TIMEOUT" default:"5m" desc:"timeout of one HTTP request to a source"`
}

// NewSources builds an opener.
func NewSources(cfg SourcesConfig) (*Sources, error) {
	s := &Sources{guard: netguard.New(cfg.AllowCIDRs.Or(cfg.AllowPrivate))}
	if cfg.Root != "" {
		abs, err := filepath.Abs(cfg.Root)
		if err != nil {
			return nil, err
		}
		s.rootPaths = []string{abs}
		if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
			s.rootPaths = append(s.rootPaths, real)
		}
		r, err := os.OpenRoot(abs)
		if err != nil {
			return nil, fmt.Errorf("upload: source root: %w", err)
		}
		s.root = r
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	d := s.guard.Dialer()
	d.Control = s.checkDial
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second}
	s.client = &http.Client{Transport: tr, Timeout: timeout}
	return s, nil
}

// Close releases the root.
func (s *Sources) Close() error {
	if s.root != nil {
		return s.root.Close()
	}
	return nil
}

// checkDial refuses connections to addresses the guard does not allow. It
// runs for every connection, redirects included, after DNS resolution, so a
// name that resolves inward is caught too.
func (s *Sources) checkDial(network, address string, c syscall.RawConn) error {
	if err := s.guard.Control(network, address, c); err != nil {
		return fmt.Errorf("%w: %w", ErrSourceForbidden, err)
	}
	return nil
}

// Open opens a source URL.
func (s *Sources) Open(ctx context.Context, raw string) (Source, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSourceForbidden, redact.Err(err))
	}
	switch u.Scheme {
	case "file":
		return s.openFile(u.Path)
	case "http", "https":
		return s.openHTTP(ctx, u)
	}
	return nil, fmt.Errorf("%w: scheme %q", ErrSourceForbidden, u.Scheme)
}

func (s *Sources) openFile(p string) (Source, error) {
	if s.root == nil {
		return nil, fmt.Errorf("%w: file sources are disabled (no source root configured)", ErrSourceForbidden)
	}
	rel, ok := s.underRoot(p)
	if !ok {
		return nil, fmt.Errorf("%w: %s is outside the source root", ErrSourceForbidden, p)
	}
	// os.Root refuses any path, symlinks included, that leaves the root.
	// O_NONBLOCK keeps a named pipe from blocking the open until a writer
	// comes; it changes nothing for the regular files we accept.
	f, err := s.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrSourceNotFound, p)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSourceForbidden, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrSourceForbidden, p)
	}
	return &fileSource{f: f, root: s.root, rel: rel, path: p, size: st.Size(), mtime: st.ModTime()}, nil
}

// underRoot returns p relative to the root, if p is under it.
func (s *Sources) underRoot(p string) (string, bool) {
	clean := filepath.Clean(p)
	for _, base := range s.rootPaths {
		if rel, err := filepath.Rel(base, clean); err == nil && filepath.IsLocal(rel) {
			return rel, true
		}
	}
	return "", false
}

type fileSource struct {
	f     *os.File
	root  *os.Root // the source root, and the path under it the file was opened by
	rel   string
	path  string // as the job named it, for errors
	size  int64
	mtime time.Time
}

func (f *fileSource) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }
func (f *fileSource) Close() error                            { return f.f.Close() }
func (f *fileSource) Size() int64                             { return f.size }
func (f *fileSource) Streams() bool                           { return true }
func (f *fileSource) Version() string                         { return "mtime " + f.mtime.UTC().Format(time.RFC3339Nano) }

func (f *fileSource) Check(context.Context) error {
	st, err := f.f.Stat()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSourceChanged, err)
	}
	if st.Size() != f.size || !st.ModTime().Equal(f.mtime) {
		return fmt.Errorf("%w: size %d → %d", ErrSourceChanged, f.size, st.Size())
	}
	// The open file reads on after its path is removed or another file is
	// moved onto it, so the path is looked at too: what was uploaded must
	// still be the job's source when the upload ends.
	cur, err := f.root.Stat(f.rel)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %s was removed during the upload", ErrSourceNotFound, f.path)
	case err != nil:
		// Neither gone nor known to be another file: a transient failure, retried.
		return fmt.Errorf("upload: look at source %s again: %w", f.path, err)
	case !os.SameFile(st, cur):
		return fmt.Errorf("%w: %s was replaced by another file during the upload", ErrSourceChanged, f.path)
	}
	return nil
}

// openHTTP learns the size with a one-byte range request (servers that
// ignore Range answer 200 with the length; the body is not read).
func (s *Sources) openHTTP(ctx context.Context, u *url.URL) (Source, error) {
	if u.User != nil {
		return nil, fmt.Errorf("%w: URL carries credentials", ErrSourceForbidden)
	}
	h := &httpSource{client: s.client, url: u.String(), ctx: ctx}
	size, validator, err := h.probe(ctx)
	if err != nil {
		return nil, err
	}
	h.size, h.validator = size, validator
	return h, nil
}

type httpSource struct {
	client    *http.Client
	url       string
	size      int64
	validator string
	// ctx is the run's, which the source lives within: ReadAt (io.ReaderAt
	// takes none) ends with it, so a trickling server cannot hold a
	// cancelled run, or a worker's shutdown, for the whole read timeout.
	ctx context.Context
}

func (h *httpSource) Size() int64   { return h.size }
func (h *httpSource) Close() error  { return nil }
func (h *httpSource) Streams() bool { return false }
func (h *httpSource) Version() string {
	if h.validator == "" {
		return ""
	}
	return "validator " + h.validator
}

func (h *httpSource) probe(ctx context.Context) (int64, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Range", "bytes=0-0")
	resp, err := h.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrSourceForbidden) {
			return 0, "", fmt.Errorf("%w: %s", ErrSourceForbidden, redact.URL(h.url))
		}
		return 0, "", fmt.Errorf("upload: source %s: %w", redact.URL(h.url), redact.Err(err))
	}
	defer resp.Body.Close()
	validator := resp.Header.Get("ETag")
	if validator == "" {
		validator = resp.Header.Get("Last-Modified")
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		i := strings.LastIndexByte(cr, '/')
		if i < 0 {
			return 0, "", fmt.Errorf("upload: source %s: bad Content-Range %q", redact.URL(h.url), cr)
		}
		n, err := strconv.ParseInt(cr[i+1:], 10, 64)
		if err != nil || n < 0 {
			return 0, "", fmt.Errorf("upload: source %s: bad Content-Range %q", redact.URL(h.url), cr)
		}
		return n, validator, nil
	case http.StatusOK:
		if resp.ContentLength == 0 {
			return 0, validator, nil // empty resource: some servers ignore Range then
		}
		if resp.ContentLength < 0 {
			return 0, "", fmt.Errorf("%w: %s gives no length and no Range support", ErrSourceForbidden, redact.URL(h.url))
		}
		return 0, "", fmt.Errorf("%w: %s does not support Range requests", ErrSourceForbidden, redact.URL(h.url))
	case http.StatusRequestedRangeNotSatisfiable:
		return 0, validator, nil // empty resource
	case http.StatusNotFound, http.StatusGone:
		return 0, "", fmt.Errorf("%w: %s answered %d", ErrSourceNotFound, redact.URL(h.url), resp.StatusCode)
	case http.StatusUnauthorized, http.StatusForbidden:
		// An expired or wrong signed URL: retrying the same URL cannot help.
		return 0, "", fmt.Errorf("%w: %s answered %d", ErrSourceForbidden, redact.URL(h.url), resp.StatusCode)
	}
	return 0, "", fmt.Errorf("upload: source %s answered %d", redact.URL(h.url), resp.StatusCode)
}

// ReadAt fetches [off, off+len(p)) with one Range request.
func (h *httpSource) ReadAt(p []byte, off int64) (int, error) {
	if off >= h.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), h.size) - 1
	req, err := http.NewRequestWithContext(h.ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end))
	if h.validator != "" && strings.HasPrefix(h.validator, `"`) {
		req.Header.Set("If-Range", h.validator)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("upload: source %s: %w", redact.URL(h.url), redact.Err(err))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusNotFound, http.StatusGone:
		return 0, fmt.Errorf("%w: %s answered %d during the upload", ErrSourceNotFound, redact.URL(h.url), resp.StatusCode)
	default:
		return 0, fmt.Errorf("%w: range request answered %d", ErrSourceChanged, resp.StatusCode)
	}
	// The bytes must be the ones asked for: a server (or cache) answering
	// another range would go unnoticed by the CRC, computed from what we send.
	if want := fmt.Sprintf("bytes %d-%d/", off, end); !strings.HasPrefix(resp.Header.Get("Content-Range"), want) {
		return 0, fmt.Errorf("%w: asked for %s, got Content-Range %q", ErrSourceChanged, want, resp.Header.Get("Content-Range"))
	}
	want := int(end - off + 1)
	n, err := io.ReadFull(resp.Body, p[:want])
	if err != nil {
		return n, fmt.Errorf("upload: source %s: %w", redact.URL(h.url), err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (h *httpSource) Check(ctx context.Context) error {
	size, validator, err := h.probe(ctx)
	if err != nil {
		return err
	}
	if size != h.size || (h.validator != "" && validator != h.validator) {
		return fmt.Errorf("%w: size %d → %d", ErrSourceChanged, h.size, size)
	}
	return nil
}
