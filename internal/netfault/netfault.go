// Package netfault is a TCP proxy that injects network faults between a
// client and a server, for the chaos run: latency with jitter, a bandwidth
// limit, a stall (connections stay open and carry nothing, as a half-open
// connection or a silent network does), and a cut (every connection closed
// and new ones refused, as a partition does). Faults change while
// connections are open and apply to the bytes that flow from then on.
package netfault

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Nowhere is a loopback address no process listens on (port 1, tcpmux,
// unused on Linux hosts): what a server behind proxies tells its peers as
// its own address, so that none connects around the proxies.
const Nowhere = "127.0.0.1:1"

// Faults are what a proxy does to the bytes it forwards. The zero value
// forwards them untouched.
type Faults struct {
	// Latency delays every chunk, each direction, by Latency ± Jitter.
	Latency, Jitter time.Duration
	// Bandwidth bounds the bytes per second of each direction of the
	// proxy, all connections together (0: unlimited).
	Bandwidth int64
	// Stall holds every byte until it ends; connections stay open.
	Stall bool
	// Cut closes every connection and refuses new ones until it ends.
	Cut bool
}

// Proxy forwards connections from its address to a target.
type Proxy struct {
	name   string
	target string
	ln     net.Listener

	mu      sync.Mutex
	faults  Faults
	changed chan struct{} // closed and replaced at every change of faults
	conns   map[net.Conn]struct{}
	up      *rate.Limiter // client → target
	down    *rate.Limiter // target → client

	// Chunks counts the chunks forwarded; Held those that waited out a
	// stall, Delayed those that waited for latency, Throttled those the
	// bandwidth limit slowed, Refused the connections a cut turned away:
	// evidence that a fault met traffic.
	Chunks, Held, Delayed, Throttled, Refused atomic.Int64
	closed                                    atomic.Bool
}

// Listen starts a proxy to target on a free loopback port.
func Listen(name, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{name: name, target: target, ln: ln, changed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	go p.accept()
	return p, nil
}

// Name is the proxy's name.
func (p *Proxy) Name() string { return p.name }

// Addr is the address clients dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is where the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Set replaces the faults. A cut closes the open connections at once.
func (p *Proxy) Set(f Faults) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = f
	p.up, p.down = limiter(f.Bandwidth), limiter(f.Bandwidth)
	close(p.changed)
	p.changed = make(chan struct{})
	if f.Cut {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}

// Faults are the faults in force.
func (p *Proxy) Faults() Faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults
}

func limiter(bps int64) *rate.Limiter {
	if bps <= 0 {
		return nil
	}
	// A tenth of a second of burst: the limit holds over short spans too.
	return rate.NewLimiter(rate.Limit(bps), int(max(min(bps/10, 32<<10), 1)))
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() error {
	p.closed.Store(true)
	err := p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
	close(p.changed)
	p.changed = make(chan struct{})
	return err
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go p.serve(c)
	}
}

// track adds c to the open connections, unless the proxy is cut.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.faults.Cut || p.closed.Load() {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) serve(client net.Conn) {
	if !p.track(client) {
		p.Refused.Add(1)
		_ = client.Close()
		return
	}
	defer p.untrack(client)
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = client.Close()
		return
	}
	if !p.track(server) {
		_ = client.Close()
		_ = server.Close()
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	go func() { p.pump(server, client, true); done <- struct{}{} }()
	go func() { p.pump(client, server, false); done <- struct{}{} }()
	<-done
	// One side ended: end the other (a proxy that kept it half open would
	// be a fault of its own, not one asked for).
	_ = client.Close()
	_ = server.Close()
	<-done
}

// pump copies src to dst a chunk at a time, each chunk under the faults in
// force when it was read.
func (p *Proxy) pump(dst, src net.Conn, up bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.forward(dst, buf[:n], up) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// forward writes one chunk after the stall, latency and bandwidth in force;
// false when the connection must end (a cut, a write error, the proxy closed).
func (p *Proxy) forward(dst net.Conn, b []byte, up bool) bool {
	p.Chunks.Add(1)
	held := false
	for {
		p.mu.Lock()
		f, changed, lim := p.faults, p.changed, p.down
		if up {
			lim = p.up
		}
		p.mu.Unlock()
		if f.Cut || p.closed.Load() {
			return false
		}
		if f.Stall {
			if !held {
				held = true
				p.Held.Add(1)
			}
			<-changed // until the faults change
			continue
		}
		if d := delay(f); d > 0 {
			p.Delayed.Add(1)
			select {
			case <-time.After(d):
			case <-changed:
				continue // the faults changed meanwhile: apply the new ones
			}
		}
		if lim != nil {
			slowed := false
			for rest := len(b); rest > 0; {
				n := min(rest, lim.Burst())
				r := lim.ReserveN(time.Now(), n)
				if d := r.Delay(); d > 0 {
					slowed = true
					time.Sleep(d)
				}
				rest -= n
			}
			if slowed {
				p.Throttled.Add(1)
			}
		}
		_, err := dst.Write(b)
		return err == nil
	}
}

func delay(f Faults) time.Duration {
	d := f.Latency
	if f.Jitter > 0 {
		d += time.Duration(rand.Int64N(int64(2*f.Jitter))) - f.Jitter
	}
	return max(d, 0)
}
