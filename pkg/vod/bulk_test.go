package vod

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// writeSizes is a connection that records the size of every Write.
type writeSizes struct {
	net.Conn
	mu    sync.Mutex
	sizes []int
}

func (c *writeSizes) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.sizes = append(c.sizes, len(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// md5Server answers every request with the hex MD5 of its body.
func md5Server(t *testing.T, tls bool) *httptest.Server {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := md5.New()
		if _, err := io.Copy(sum, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, hex.EncodeToString(sum.Sum(nil)))
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv
}

// put sends body (hidden behind a plain Reader, as cos-go-sdk-v5 wraps a
// part) and checks that the server got it whole.
func put(t *testing.T, c *http.Client, url string, body []byte) {
	t.Helper()
	putFrom(t, c, url, struct{ io.Reader }{bytes.NewReader(body)}, body)
}

// putFile sends body from a file (which a plain connection sends with
// sendfile) and checks that the server got it whole.
func putFile(t *testing.T, c *http.Client, url string, body []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "part")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	putFrom(t, c, url, f, body)
}

// putFrom sends r, which holds body, and checks the server's MD5 of it.
func putFrom(t *testing.T, c *http.Client, url string, r io.Reader, body []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, url, r)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	want := md5.Sum(body)
	if resp.StatusCode != http.StatusOK || string(got) != hex.EncodeToString(want[:]) {
		t.Fatalf("server answered %s %q for a %T body, want its MD5 %x", resp.Status, got, r, want)
	}
}

// A request body reaches the socket in writes of bulkChunk, not net/http's
// 32 KiB: an 8 MiB part takes 32 writes instead of 256.
func TestTransportWritesBodiesInLargeChunks(t *testing.T) {
	srv := md5Server(t, false)
	var conns []*writeSizes
	var mu sync.Mutex
	d := &net.Dialer{}
	tr := NewTransport(2)
	tr.DialContext = bulkWrites(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		w := &writeSizes{Conn: c}
		mu.Lock()
		conns = append(conns, w)
		mu.Unlock()
		return w, nil
	})
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	const size = 4 << 20
	body := make([]byte, size)
	_, _ = rand.Read(body)
	put(t, client, srv.URL+"/part", body)

	mu.Lock()
	defer mu.Unlock()
	var big, bytes int
	for _, c := range conns {
		c.mu.Lock()
		for _, n := range c.sizes {
			bytes += n
			if n == bulkChunk {
				big++
			}
		}
		c.mu.Unlock()
	}
	if want := size / bulkChunk; big < want {
		t.Errorf("%d writes of %d bytes carried the %d-byte body (%d bytes written in all), want %d", big, bulkChunk, size, bytes, want)
	}
}

// Every transport this package makes writes in chunks, TLS ones too (the TLS
// connection writes its records through the chunked one), and bodies arrive
// whole.
func TestTransportsAreChunkedAndCarryBodiesWhole(t *testing.T) {
	body := make([]byte, bulkChunk*3+12345)
	_, _ = rand.Read(body)
	for _, tls := range []bool{false, true} {
		srv := md5Server(t, tls)
		addr := strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://")
		for name, tr := range map[string]*http.Transport{"NewTransport": NewTransport(2), "DialOverride": DialOverride(addr, 2)} {
			if tls {
				tr.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
			} else {
				c, err := tr.DialContext(t.Context(), "tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := c.(*bulkConn); !ok {
					t.Errorf("%s dials a %T, want a *bulkConn", name, c)
				}
				c.Close()
			}
			put(t, &http.Client{Transport: tr}, srv.URL+"/part", body)
			putFile(t, &http.Client{Transport: tr}, srv.URL+"/file", body)
			tr.CloseIdleConnections()
		}
	}
}
