package vod

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
)

// bulkChunk is how much of a request body a connection of NewTransport or
// DialOverride reads and writes at a time.
const bulkChunk = 256 << 10

// dialFunc is http.Transport.DialContext's type.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// bulkWrites returns dial with its connections writing request bodies in
// chunks of bulkChunk. net/http hands a body to a plain (not TLS) connection
// through the connection's ReadFrom, which for TCP reads and writes 32 KiB at
// a time: for an 8 MiB part, 256 reads of the file and 256 socket writes,
// each a system call whose fixed cost, on a virtual machine above all, is
// much of the sender's CPU ("Where the time goes" in docs/development.md).
// In chunks of 256 KiB the same part takes 32 of each. A TLS connection
// wraps this one and writes its records through Write, which is unchanged.
func bulkWrites(dial dialFunc) dialFunc {
	bufs := &sync.Pool{New: func() any { b := make([]byte, bulkChunk); return &b }}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &bulkConn{Conn: c, bufs: bufs}, nil
	}
}

// fileBacked reports whether r is a file, or a file limited to a length.
func fileBacked(r io.Reader) bool {
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	_, ok := r.(*os.File)
	return ok
}

// bulkConn is a connection whose ReadFrom copies through a large buffer.
type bulkConn struct {
	net.Conn
	bufs *sync.Pool
}

// ReadFrom copies r into the connection bulkChunk at a time; a reader that
// can write itself out (io.WriterTo, e.g. a bytes.Reader) still does, and
// a file (as net/http hands it, limited to the body's length) goes to the
// connection's own ReadFrom, which sends it without copying it here.
func (c *bulkConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok && fileBacked(r) {
		return rf.ReadFrom(r) // a TCP connection sends a file with sendfile
	}
	bp := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(bp)
	// The struct hides the connection's own ReadFrom, which io.CopyBuffer
	// would otherwise call again.
	return io.CopyBuffer(struct{ io.Writer }{c.Conn}, r, *bp)
}
