package netfault

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echo is a line echo server.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	line, err := r.ReadString('\n')
	if err == nil && line != "ping\n" {
		t.Fatalf("echo answered %q", line)
	}
	return time.Since(start), err
}

func TestProxyFaults(t *testing.T) {
	p, err := Listen("echo", echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := roundTrip(t, c, r); err != nil {
		t.Fatal(err)
	}

	// Latency: each direction waits, so a round trip takes twice as long.
	p.Set(Faults{Latency: 50 * time.Millisecond})
	if d, err := roundTrip(t, c, r); err != nil || d < 100*time.Millisecond {
		t.Fatalf("round trip under 50 ms latency: %s %v", d, err)
	}

	// A stall holds the bytes, the connection open, until it ends.
	p.Set(Faults{Stall: true})
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := roundTrip(t, c, r); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a stalled round trip: %v, want a read timeout", err)
	}
	if p.Held.Load() == 0 {
		t.Fatal("no chunk counted as held")
	}
	_ = c.SetReadDeadline(time.Time{})
	p.Set(Faults{})
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("after the stall: %q %v", line, err)
	}

	// Bandwidth: 64 KiB at 128 KiB/s takes about half a second.
	p.Set(Faults{Bandwidth: 128 << 10})
	payload := make([]byte, 64<<10)
	for i := range payload {
		payload[i] = 'x'
	}
	payload[len(payload)-1] = '\n'
	start := time.Now()
	go func() { _, _ = c.Write(payload) }()
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || p.Throttled.Load() == 0 {
		t.Fatalf("64 KiB each way at 128 KiB/s took %s (%d chunks counted as slowed)", d, p.Throttled.Load())
	}

	// A cut closes the connection and refuses new ones until it ends.
	p.Set(Faults{Cut: true})
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("the connection survived the cut")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		_ = c2.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := roundTrip(t, c2, bufio.NewReader(c2)); err == nil {
			t.Fatal("a new connection was served during the cut")
		}
		c2.Close()
	}
	p.Set(Faults{})
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if _, err := roundTrip(t, c3, bufio.NewReader(c3)); err != nil {
		t.Fatalf("after the cut: %v", err)
	}
}
