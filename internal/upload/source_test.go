package upload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vodpipe/vodpipe/internal/netguard"
)

// token stands for a signed URL's secret: no error may repeat it.
const token = "SECRETTOKEN0123456789"

func newSources(t *testing.T, cfg SourcesConfig) *Sources {
	t.Helper()
	s, err := NewSources(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func open(t *testing.T, s *Sources, raw string) (Source, error) {
	t.Helper()
	src, err := s.Open(t.Context(), raw)
	if err == nil {
		t.Cleanup(func() { _ = src.Close() })
	}
	return src, err
}

func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func fileURL(p string) string { return (&url.URL{Scheme: "file", Path: p}).String() }

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// wantErr checks err against a sentinel (nil: no error wanted).
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s: %v, want no error", what, err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func TestFileSources(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	a, b, secret := randomData(10_000, 1), randomData(3_000, 2), []byte("outside the root")
	writeFile(t, filepath.Join(root, "a.mp4"), a)
	writeFile(t, filepath.Join(root, "sub", "b.mp4"), b)
	writeFile(t, filepath.Join(outside, "secret.mp4"), secret)
	symlink(t, "a.mp4", filepath.Join(root, "inlink.mp4"))
	symlink(t, filepath.Join(outside, "secret.mp4"), filepath.Join(root, "outlink.mp4"))
	symlink(t, "../"+filepath.Base(outside)+"/secret.mp4", filepath.Join(root, "relout.mp4"))
	symlink(t, outside, filepath.Join(root, "outdir"))
	symlink(t, "gone.mp4", filepath.Join(root, "dangling.mp4"))
	if err := syscall.Mkfifo(filepath.Join(root, "fifo.mp4"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSources(t, SourcesConfig{Root: root})
	up := "/../" + filepath.Base(outside) + "/secret.mp4"

	cases := []struct {
		name string
		raw  string
		want []byte
		err  error
	}{
		{"file under the root", fileURL(filepath.Join(root, "a.mp4")), a, nil},
		{"file in a subfolder", fileURL(filepath.Join(root, "sub", "b.mp4")), b, nil},
		{"dot-dot staying inside", "file://" + root + "/sub/../a.mp4", a, nil},
		{"symlink to a file inside", fileURL(filepath.Join(root, "inlink.mp4")), a, nil},
		{"dot-dot out of the root", "file://" + root + up, nil, ErrSourceForbidden},
		{"dot-dot out of a subfolder", "file://" + root + "/sub/.." + up, nil, ErrSourceForbidden},
		{"percent-encoded dot-dot", "file://" + root + "/%2e%2e/" + filepath.Base(outside) + "/secret.mp4", nil, ErrSourceForbidden},
		{"absolute path outside", fileURL(filepath.Join(outside, "secret.mp4")), nil, ErrSourceForbidden},
		{"system file", "file:///etc/passwd", nil, ErrSourceForbidden},
		{"missing file outside", fileURL(filepath.Join(outside, "nope.mp4")), nil, ErrSourceForbidden},
		{"absolute symlink leaving the root", fileURL(filepath.Join(root, "outlink.mp4")), nil, ErrSourceForbidden},
		{"relative symlink leaving the root", fileURL(filepath.Join(root, "relout.mp4")), nil, ErrSourceForbidden},
		{"symlinked folder leaving the root", fileURL(filepath.Join(root, "outdir", "secret.mp4")), nil, ErrSourceForbidden},
		{"directory", fileURL(filepath.Join(root, "sub")), nil, ErrSourceForbidden},
		{"the root itself", fileURL(root), nil, ErrSourceForbidden},
		{"named pipe", fileURL(filepath.Join(root, "fifo.mp4")), nil, ErrSourceForbidden},
		{"relative file URL", "file:a.mp4", nil, ErrSourceForbidden},
		{"missing file", fileURL(filepath.Join(root, "nope.mp4")), nil, ErrSourceNotFound},
		{"missing folder", fileURL(filepath.Join(root, "nodir", "a.mp4")), nil, ErrSourceNotFound},
		{"dangling symlink", fileURL(filepath.Join(root, "dangling.mp4")), nil, ErrSourceNotFound},
		{"other scheme", "ftp://example.com/a.mp4", nil, ErrSourceForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A source that blocks on open (a FIFO without writer) must fail, not hang.
			type result struct {
				src Source
				err error
			}
			done := make(chan result, 1)
			go func() {
				src, err := s.Open(t.Context(), tc.raw)
				done <- result{src, err}
			}()
			var res result
			select {
			case res = <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("Open(%s) still blocked after 5s", tc.raw)
			}
			wantErr(t, "Open("+tc.raw+")", res.err, tc.err)
			if res.err != nil {
				if bytes.Contains([]byte(res.err.Error()), secret) {
					t.Fatalf("error reveals the outside file: %v", res.err)
				}
				return
			}
			defer res.src.Close()
			if res.src.Size() != int64(len(tc.want)) || !res.src.Streams() {
				t.Fatalf("Size() = %d, Streams() = %v; want %d, true", res.src.Size(), res.src.Streams(), len(tc.want))
			}
			got, err := io.ReadAll(io.NewSectionReader(res.src, 0, res.src.Size()))
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("read %d bytes (%v), want the %d-byte file", len(got), err, len(tc.want))
			}
			if err := res.src.Check(t.Context()); err != nil {
				t.Fatalf("Check() of an unchanged file = %v", err)
			}
		})
	}
}

func TestFileSourceReadAt(t *testing.T) {
	root := t.TempDir()
	data := randomData(100_000, 3)
	writeFile(t, filepath.Join(root, "v.mp4"), data)
	src, err := open(t, newSources(t, SourcesConfig{Root: root}), fileURL(filepath.Join(root, "v.mp4")))
	if err != nil {
		t.Fatal(err)
	}
	readAtCases(t, src, data)
}

// readAtCases reads src at offsets around its ends and compares with data.
func readAtCases(t *testing.T, src Source, data []byte) {
	t.Helper()
	size := int64(len(data))
	cases := []struct {
		name string
		off  int64
		n    int
		got  int
		eof  bool
	}{
		{"start", 0, 10, 10, false},
		{"middle", 4096, 5000, 5000, false},
		{"exact end", size - 10, 10, 10, false},
		{"past the end", size - 10, 100, 10, true},
		{"at the end", size, 10, 0, true},
		{"whole", 0, int(size), int(size), false},
	}
	for _, tc := range cases {
		p := make([]byte, tc.n)
		n, err := src.ReadAt(p, tc.off)
		if n != tc.got || (err == io.EOF) != tc.eof || (err != nil && err != io.EOF) {
			t.Errorf("%s: ReadAt(%d bytes, %d) = %d, %v; want %d, eof=%v", tc.name, tc.n, tc.off, n, err, tc.got, tc.eof)
			continue
		}
		if !bytes.Equal(p[:n], data[tc.off:tc.off+int64(n)]) {
			t.Errorf("%s: ReadAt(%d bytes, %d) read other bytes", tc.name, tc.n, tc.off)
		}
	}
}

func TestFileSourcesNeedARoot(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.mp4")
	writeFile(t, p, []byte("x"))
	_, err := open(t, newSources(t, SourcesConfig{}), fileURL(p))
	wantErr(t, "Open without a root", err, ErrSourceForbidden)
	if !strings.Contains(err.Error(), "no source root") {
		t.Fatalf("error %q does not say file sources are disabled", err)
	}
}

// A root configured through a symlink (macOS's /var → /private/var, a
// mounted volume) takes sources spelled either way.
func TestFileSourceRootBehindSymlink(t *testing.T) {
	target := t.TempDir()
	link := filepath.Join(t.TempDir(), "media")
	symlink(t, target, link)
	writeFile(t, filepath.Join(target, "a.mp4"), []byte("abc"))
	s := newSources(t, SourcesConfig{Root: link})
	for _, p := range []string{filepath.Join(link, "a.mp4"), filepath.Join(target, "a.mp4")} {
		src, err := open(t, s, fileURL(p))
		if err != nil {
			t.Fatalf("Open(%s): %v", p, err)
		}
		if src.Size() != 3 {
			t.Fatalf("Open(%s): size %d", p, src.Size())
		}
	}
	_, err := open(t, s, "file://"+link+"/../"+filepath.Base(target)+"/a.mp4")
	wantErr(t, "dot-dot out of the linked root", err, ErrSourceForbidden)
}

func TestFileSourceCheck(t *testing.T) {
	cases := []struct {
		name   string
		change func(t *testing.T, p string)
		err    error
	}{
		{"unchanged", func(*testing.T, string) {}, nil},
		{"appended to", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte("more")); err != nil {
				t.Fatal(err)
			}
		}, ErrSourceChanged},
		{"truncated", func(t *testing.T, p string) {
			if err := os.Truncate(p, 10); err != nil {
				t.Fatal(err)
			}
		}, ErrSourceChanged},
		{"mtime changed", func(t *testing.T, p string) {
			when := time.Now().Add(-time.Hour)
			if err := os.Chtimes(p, when, when); err != nil {
				t.Fatal(err)
			}
		}, ErrSourceChanged},
		{"rewritten in place", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("zz"), 5); err != nil {
				t.Fatal(err)
			}
			// Same size: only the mtime tells; make sure it moves even on a coarse clock.
			when := time.Now().Add(time.Hour)
			if err := os.Chtimes(p, when, when); err != nil {
				t.Fatal(err)
			}
		}, ErrSourceChanged},
		// The open file still reads the same bytes, size and mtime: only the path tells.
		{"removed", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, ErrSourceNotFound},
		{"replaced by another file", func(t *testing.T, p string) {
			other := p + ".new"
			writeFile(t, other, randomData(1000, 4))
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			// Same bytes, size and mtime as the opened file: only its identity differs.
			if err := os.Chtimes(other, st.ModTime(), st.ModTime()); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other, p); err != nil {
				t.Fatal(err)
			}
		}, ErrSourceChanged},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			p := filepath.Join(root, "v.mp4")
			writeFile(t, p, randomData(1000, 4))
			src, err := open(t, newSources(t, SourcesConfig{Root: root}), fileURL(p))
			if err != nil {
				t.Fatal(err)
			}
			tc.change(t, p)
			wantErr(t, "Check()", src.Check(t.Context()), tc.err)
		})
	}
}

// resource is one HTTP resource served with Range support; tests change it.
type resource struct {
	mu       sync.Mutex
	data     []byte
	etag     string
	requests []string // the Range header of each request
}

func (r *resource) set(data []byte, etag string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.data, r.etag = data, etag
}

func (r *resource) ranges() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}

func (r *resource) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	data, etag := r.data, r.etag
	r.requests = append(r.requests, req.Header.Get("Range"))
	r.mu.Unlock()
	if data == nil {
		http.NotFound(w, req)
		return
	}
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(data))
}

// serve starts a loopback server and counts the connections it accepts.
func serve(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// local lets sources reach the loopback test servers.
var local = SourcesConfig{AllowPrivate: true}

func TestHTTPSourceReadsRanges(t *testing.T) {
	data := randomData(100_000, 5)
	res := &resource{}
	res.set(data, `"v1"`)
	srv, _ := serve(t, res)
	src, err := open(t, newSources(t, local), srv.URL+"/v.mp4?sign="+token)
	if err != nil {
		t.Fatal(err)
	}
	if src.Size() != int64(len(data)) || src.Streams() {
		t.Fatalf("Size() = %d, Streams() = %v; want %d, false", src.Size(), src.Streams(), len(data))
	}
	readAtCases(t, src, data)
	// One request per read, each asking for exactly the bytes wanted.
	got := res.ranges()
	want := []string{"bytes=0-0", "bytes=0-9", "bytes=4096-9095", "bytes=99990-99999", "bytes=99990-99999", "bytes=0-99999"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Range headers = %q, want %q", got, want)
	}
	if err := src.Check(t.Context()); err != nil {
		t.Fatalf("Check() of an unchanged resource = %v", err)
	}
}

func TestHTTPSourceEmpty(t *testing.T) {
	res := &resource{}
	res.set([]byte{}, `"empty"`)
	srv, _ := serve(t, res)
	src, err := open(t, newSources(t, local), srv.URL+"/empty.mp4")
	if err != nil {
		t.Fatal(err)
	}
	if src.Size() != 0 {
		t.Fatalf("Size() = %d", src.Size())
	}
	if n, err := src.ReadAt(make([]byte, 10), 0); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt = %d, %v; want 0, EOF", n, err)
	}
}

func TestHTTPSourceOpenErrors(t *testing.T) {
	body := randomData(5000, 6)
	cases := []struct {
		name    string
		handler http.HandlerFunc
		err     error // nil: an error that is none of the sentinels (transient)
		says    string
	}{
		{"ignores Range", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			_, _ = w.Write(body)
		}, ErrSourceForbidden, "Range"},
		{"ignores Range, no length", func(w http.ResponseWriter, _ *http.Request) {
			w.(http.Flusher).Flush() // chunked: no Content-Length
			_, _ = w.Write(body)
		}, ErrSourceForbidden, "Range"},
		{"404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, ErrSourceNotFound, "404"},
		{"410", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusGone) }, ErrSourceNotFound, "410"},
		{"500", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }, nil, "500"},
		{"403 expired signed URL", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) }, ErrSourceForbidden, "403"},
		{"401", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) }, ErrSourceForbidden, "401"},
		{"bad Content-Range", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Range", "bytes 0-0/*")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(body[:1])
		}, nil, "Content-Range"},
	}
	s := newSources(t, local)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := serve(t, tc.handler)
			_, err := open(t, s, srv.URL+"/v.mp4?sign="+token)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if tc.err != nil {
				wantErr(t, "Open", err, tc.err)
			}
			if tc.err == nil && (errors.Is(err, ErrSourceForbidden) || errors.Is(err, ErrSourceNotFound) || errors.Is(err, ErrSourceChanged)) {
				t.Fatalf("Open: %v; want a transient error, not a permanent source error", err)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Open: %q does not mention %q", err, tc.says)
			}
			if strings.Contains(err.Error(), token) {
				t.Fatalf("Open: error reveals the URL's token: %v", err)
			}
		})
	}
}

func TestHTTPSourceCheck(t *testing.T) {
	data := randomData(20_000, 7)
	cases := []struct {
		name   string
		change func(r *resource)
		err    error
	}{
		{"unchanged", func(*resource) {}, nil},
		{"new ETag, same size", func(r *resource) { r.set(randomData(len(data), 8), `"v2"`) }, ErrSourceChanged},
		{"new size, same ETag", func(r *resource) { r.set(data[:len(data)-1], `"v1"`) }, ErrSourceChanged},
		{"removed", func(r *resource) { r.set(nil, "") }, ErrSourceNotFound},
	}
	s := newSources(t, local)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := &resource{}
			res.set(data, `"v1"`)
			srv, _ := serve(t, res)
			src, err := open(t, s, srv.URL+"/v.mp4")
			if err != nil {
				t.Fatal(err)
			}
			tc.change(res)
			wantErr(t, "Check()", src.Check(t.Context()), tc.err)
		})
	}
}

// A read after the resource changed must not mix old and new bytes: If-Range
// makes the server answer the whole new body, which is refused.
func TestHTTPSourceReadAfterChange(t *testing.T) {
	res := &resource{}
	res.set(randomData(20_000, 9), `"v1"`)
	srv, _ := serve(t, res)
	src, err := open(t, newSources(t, local), srv.URL+"/v.mp4")
	if err != nil {
		t.Fatal(err)
	}
	res.set(randomData(20_000, 10), `"v2"`)
	_, err = src.ReadAt(make([]byte, 100), 100)
	wantErr(t, "ReadAt after a change", err, ErrSourceChanged)
}

// A resource removed while it uploads ends the upload as not found, like a
// removed file source.
func TestHTTPSourceReadAfterRemoval(t *testing.T) {
	res := &resource{}
	res.set(randomData(20_000, 9), `"v1"`)
	srv, _ := serve(t, res)
	src, err := open(t, newSources(t, local), srv.URL+"/v.mp4?sign="+token)
	if err != nil {
		t.Fatal(err)
	}
	res.set(nil, "")
	_, err = src.ReadAt(make([]byte, 100), 100)
	wantErr(t, "ReadAt after a removal", err, ErrSourceNotFound)
	if strings.Contains(err.Error(), token) {
		t.Fatalf("ReadAt: error reveals the URL's token: %v", err)
	}
}

func TestHTTPSourceRefusesCredentials(t *testing.T) {
	res := &resource{}
	res.set([]byte("x"), "")
	srv, conns := serve(t, res)
	u, _ := url.Parse(srv.URL + "/v.mp4")
	u.User = url.UserPassword("user", token)
	_, err := open(t, newSources(t, local), u.String())
	wantErr(t, "Open with user:pass", err, ErrSourceForbidden)
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error reveals the password: %v", err)
	}
	if conns.Load() != 0 {
		t.Fatal("the server was contacted")
	}
}

// With private addresses refused, a loopback server is never connected to,
// whether the URL names its IP or a name resolving to it.
func TestHTTPSourceRefusesPrivateAddresses(t *testing.T) {
	res := &resource{}
	res.set([]byte("abc"), `"v1"`)
	srv, conns := serve(t, res)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	s := newSources(t, SourcesConfig{})
	for _, host := range []string{"127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]"} {
		raw := "http://" + host + ":" + port + "/v.mp4?sign=" + token
		_, err := open(t, s, raw)
		wantErr(t, "Open("+raw+")", err, ErrSourceForbidden)
		if strings.Contains(err.Error(), token) {
			t.Fatalf("error reveals the URL's token: %v", err)
		}
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("the loopback server accepted %d connections", n)
	}
}

// With loopback allowed (SOURCE_ALLOW_CIDRS), a loopback server is read,
// but a redirect from it to a metadata, link-local or unlisted private
// address, however spelled, is refused at the dial: nothing is sent there.
func TestHTTPSourceAllowListRefusesMetadata(t *testing.T) {
	res := &resource{}
	res.set([]byte("abc"), `"v1"`)
	mux := http.NewServeMux()
	mux.Handle("/v.mp4", res)
	mux.HandleFunc("/to/{host}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+r.PathValue("host")+"/latest/meta-data/?sign="+token, http.StatusFound)
	})
	srv, _ := serve(t, mux)
	var loopback netguard.CIDRs
	if err := loopback.Decode("127.0.0.1/32"); err != nil {
		t.Fatal(err)
	}
	s := newSources(t, SourcesConfig{AllowCIDRs: loopback})
	if src, err := open(t, s, srv.URL+"/v.mp4"); err != nil || src.Size() != 3 {
		t.Fatalf("allowed loopback source: %v", err)
	}
	for _, host := range []string{"169.254.169.254", "169.254.0.23", "100.100.100.200", "[::ffff:169.254.169.254]",
		"[fd00:ec2::254]", "[fe80::1]", "10.0.0.1", "[::ffff:a9fe:a9fe]"} {
		for _, raw := range []string{srv.URL + "/to/" + host, "http://" + host + "/latest/meta-data/?sign=" + token} {
			_, err := open(t, s, raw)
			wantErr(t, raw, err, ErrSourceForbidden)
			if strings.Contains(err.Error(), token) {
				t.Fatalf("error reveals the URL's token: %v", err)
			}
		}
	}
}

// A public server (played by a loopback server the test's dialer lets
// through) that redirects inward is refused at the redirect's dial.
func TestHTTPSourceRefusesRedirectsToPrivateAddresses(t *testing.T) {
	inner := &resource{}
	inner.set([]byte("internal metadata"), `"v1"`)
	innerSrv, innerConns := serve(t, inner)
	_, innerPort, _ := net.SplitHostPort(innerSrv.Listener.Addr().String())
	public := &resource{}
	public.set([]byte("public"), `"p1"`)
	mux := http.NewServeMux()
	mux.Handle("/public.mp4", public)
	mux.HandleFunc("/to/{host}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+r.PathValue("host")+":"+innerPort+"/v.mp4?sign="+token, http.StatusFound)
	})
	mux.HandleFunc("/self", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/public.mp4", http.StatusFound)
	})
	publicSrv, _ := serve(t, mux)

	s := newSources(t, SourcesConfig{})
	allowed := publicSrv.Listener.Addr().String()
	d := &net.Dialer{Timeout: 5 * time.Second, Control: func(network, address string, c syscall.RawConn) error {
		if address == allowed {
			return nil
		}
		return s.checkDial(network, address, c)
	}}
	s.client.Transport.(*http.Transport).DialContext = d.DialContext

	// The stand-in public server is reachable, redirects within it too.
	src, err := open(t, s, publicSrv.URL+"/self")
	if err != nil || src.Size() != int64(len("public")) {
		t.Fatalf("redirect within the public server: %v", err)
	}
	for _, host := range []string{"127.0.0.1", "localhost", "[::1]"} {
		_, err := open(t, s, publicSrv.URL+"/to/"+host)
		wantErr(t, "redirect to "+host, err, ErrSourceForbidden)
		if strings.Contains(err.Error(), token) {
			t.Fatalf("error reveals the redirect's token: %v", err)
		}
	}
	if n := innerConns.Load(); n != 0 {
		t.Fatalf("the inner server accepted %d connections", n)
	}
}

// checkDial only judges the address; nothing is sent anywhere. The
// SOURCE_ALLOW_PRIVATE shorthand opens loopback and private ranges, never
// link-local or metadata addresses; an allow-list opens what it names.
func TestCheckDial(t *testing.T) {
	cases := []struct {
		address             string
		strict, lax, listed bool // listed: SOURCE_ALLOW_CIDRS=127.0.0.1/32,100.64.0.0/10
	}{
		{"10.0.0.1:80", false, true, false},
		{"172.16.0.1:80", false, true, false},
		{"192.168.1.1:80", false, true, false},
		{"127.0.0.1:80", false, true, true},
		{"127.8.9.10:80", false, true, false},
		{"169.254.169.254:80", false, false, false},
		{"169.254.0.23:80", false, false, false},
		{"100.100.100.200:80", false, false, false},
		{"[fd00:ec2::254]:80", false, false, false},
		{"[::ffff:169.254.169.254]:80", false, false, false},
		{"100.64.0.1:80", false, false, true},
		{"0.1.2.3:80", false, false, false},
		{"198.18.0.1:80", false, false, false},
		{"240.0.0.1:80", false, false, false},
		{"[64:ff9b::7f00:1]:80", false, false, false},
		{"[2002:7f00:1::1]:80", false, false, false},
		{"100.127.255.254:80", false, false, true},
		{"0.0.0.0:80", false, false, false},
		{"224.0.0.1:80", false, false, false},
		{"[::1]:80", false, true, false},
		{"[::]:80", false, false, false},
		{"[fe80::1]:80", false, false, false},
		{"[fe80::1%eth0]:80", false, false, false},
		{"[fc00::1]:80", false, true, false},
		{"[fd12:3456::1]:80", false, true, false},
		{"[::ffff:10.0.0.1]:80", false, true, false},
		{"[::ffff:127.0.0.1]:80", false, true, true},
		{"[ff02::1]:80", false, false, false},
		{"example.com:80", false, false, false},
		{"8.8.8.8:443", true, true, true},
		{"1.1.1.1:80", true, true, true},
		{"100.128.0.1:80", true, true, true},
		{"[2001:4860:4860::8888]:443", true, true, true},
		{"[::ffff:8.8.8.8]:443", true, true, true},
	}
	var listed netguard.CIDRs
	if err := listed.Decode("127.0.0.1/32,100.64.0.0/10"); err != nil {
		t.Fatal(err)
	}
	guards := []struct {
		name string
		s    *Sources
		want func(tc int) bool
	}{
		{"strict", newSources(t, SourcesConfig{}), func(i int) bool { return cases[i].strict }},
		{"SOURCE_ALLOW_PRIVATE", newSources(t, SourcesConfig{AllowPrivate: true}), func(i int) bool { return cases[i].lax }},
		{"SOURCE_ALLOW_CIDRS", newSources(t, SourcesConfig{AllowCIDRs: listed}), func(i int) bool { return cases[i].listed }},
	}
	for i, tc := range cases {
		for _, g := range guards {
			err := g.s.checkDial("tcp", tc.address, nil)
			if g.want(i) && err != nil {
				t.Errorf("%s: checkDial(%s) = %v, want allowed", g.name, tc.address, err)
			}
			if !g.want(i) && !errors.Is(err, ErrSourceForbidden) {
				t.Errorf("%s: checkDial(%s) = %v, want ErrSourceForbidden", g.name, tc.address, err)
			}
		}
	}
}

// No failure of an HTTP source, the transport's included, repeats the URL's query.
func TestHTTPSourceErrorsCarryNoToken(t *testing.T) {
	s := newSources(t, local)
	res := &resource{}
	res.set(randomData(1000, 11), `"v1"`)
	srv, _ := serve(t, res)
	src, err := open(t, s, srv.URL+"/v.mp4?sign="+token)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close() // from now on, every request is refused by the network
	errs := map[string]error{}
	_, errs["ReadAt"] = src.ReadAt(make([]byte, 10), 0)
	errs["Check"] = src.Check(t.Context())
	_, errs["Open"] = s.Open(t.Context(), srv.URL+"/v.mp4?sign="+token)
	_, errs["Open unparseable"] = s.Open(t.Context(), "http://127.0.0.1/%zz?sign="+token)
	for what, err := range errs {
		if err == nil {
			t.Errorf("%s succeeded against a closed server", what)
			continue
		}
		if strings.Contains(err.Error(), token) {
			t.Errorf("%s: error reveals the URL's token: %v", what, err)
		}
	}
}

// A server that answers another range than the one asked for is caught:
// the CRC, computed from the bytes sent, could not notice.
func TestHTTPSourceWrongRangeIsRefused(t *testing.T) {
	body := randomData(5000, 9)
	srv, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") == "bytes=0-0" {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-0/%d", len(body)))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(body[:1])
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-99/%d", len(body)))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(body[:100])
	}))
	src, err := open(t, newSources(t, local), srv.URL+"/v.mp4")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if _, err := src.ReadAt(buf, 1000); !errors.Is(err, ErrSourceChanged) {
		t.Fatalf("ReadAt with a wrong range answer: %v", err)
	}
}

// A read from a server that trickles its body ends when the run's context
// does: a cancelled run, or a worker's shutdown, was held for the whole
// read timeout (5 minutes by default).
func TestHTTPSourceReadEndsWithTheRunsContext(t *testing.T) {
	reading, stop := make(chan struct{}), make(chan struct{})
	srv, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Range", strings.Replace(r.Header.Get("Range"), "=", " ", 1)+"/1000000")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write([]byte{0})
		if r.Header.Get("Range") == "bytes=0-0" {
			return // the probe
		}
		w.(http.Flusher).Flush()
		close(reading)
		select { // trickles nothing more
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(func() { close(stop) }) // before the server's Close, which waits for this handler
	s := newSources(t, local)
	ctx, cancel := context.WithCancel(t.Context())
	src, err := s.Open(ctx, srv.URL+"/slow.mp4")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	go func() { <-reading; cancel() }()
	done := make(chan error, 1)
	go func() { _, err := src.ReadAt(make([]byte, 64<<10), 0); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("ReadAt of a stalled body succeeded")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ReadAt went on after the run's context ended")
	}
}
