// Package netguard decides which addresses vodpipe's outbound requests (job
// sources, webhooks) may reach: public addresses, plus the CIDRs an operator
// allows; link-local and cloud metadata addresses never, whatever is allowed.
// It checks a URL's host when it is given and every address at connect time
// (Control), since DNS may answer differently later.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrRefused is returned for an address the guard does not allow.
var ErrRefused = errors.New("netguard: address not allowed")

// Guard allows public addresses and those in its allow-list.
type Guard struct {
	allow CIDRs
}

// New returns a guard that also allows the addresses in allow (never a
// link-local or metadata address).
func New(allow CIDRs) *Guard { return &Guard{allow: allow} }

// Private is the allow-list the ALLOW_PRIVATE shorthands stand for:
// loopback and private ranges, never link-local.
func Private() CIDRs {
	return CIDRs{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fc00::/7"),
	}
}

// Check returns nil if a may be reached, else an error wrapping ErrRefused.
func (g *Guard) Check(a netip.Addr) error {
	a = a.Unmap().WithZone("")
	switch {
	case !a.IsValid():
		return fmt.Errorf("%w: not an IP address", ErrRefused)
	case never(a):
		return fmt.Errorf("%w: %s is a link-local or cloud metadata address", ErrRefused, a)
	case Public(a):
		return nil
	}
	for _, p := range g.allow {
		if p.Contains(a) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is not a public address", ErrRefused, a)
}

// Control is a net.Dialer Control hook: it refuses every connection to an
// address the guard does not allow, after DNS resolution and on redirects.
func (g *Guard) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s is not an IP address", ErrRefused, address)
	}
	return g.Check(ap.Addr())
}

// Resolver looks host names up; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// CheckHost checks an IP literal, or every address a name resolves to.
// localhost and names under .localhost are loopback without asking DNS.
func (g *Guard) CheckHost(ctx context.Context, r Resolver, host string) error {
	if a, err := netip.ParseAddr(host); err == nil {
		return g.Check(a)
	}
	var addrs []netip.Addr
	if h := strings.ToLower(strings.TrimSuffix(host, ".")); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		addrs = []netip.Addr{netip.IPv6Loopback(), netip.MustParseAddr("127.0.0.1")}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		if addrs, err = r.LookupNetIP(ctx, "ip", host); err != nil || len(addrs) == 0 {
			return fmt.Errorf("%w: host %q does not resolve", ErrRefused, host)
		}
	}
	for _, a := range addrs {
		if err := g.Check(a); err != nil {
			return fmt.Errorf("host %q: %w", host, err)
		}
	}
	return nil
}

// Dialer returns a dialer that checks every address it connects to.
func (g *Guard) Dialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: g.Control}
}

// Public reports whether a is an address on the public internet.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// never reports whether a may not be reached whatever is allowed:
// link-local (where cloud metadata services live) and metadata addresses,
// also as the IPv4 address inside an IPv6 translation address.
func never(a netip.Addr) bool {
	if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() {
		return true
	}
	for _, p := range metadata {
		if p.Contains(a) {
			return true
		}
	}
	if v4, ok := embedded(a); ok {
		return never(v4)
	}
	return false
}

// embedded returns the IPv4 address inside a NAT64 (well-known or local),
// 6to4, Teredo or IPv4-compatible IPv6 address.
func embedded(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case nat64.Contains(a) || v4compat.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case localNAT64.Contains(a): // RFC 6052 /48: the u octet (byte 8) splits it
		return netip.AddrFrom4([4]byte{b[6], b[7], b[9], b[10]}), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	case teredo.Contains(a): // the client's address, inverted
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), true
	}
	return netip.Addr{}, false
}

var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	v4compat   = netip.MustParsePrefix("::/96")
	sixToFour  = netip.MustParsePrefix("2002::/16")
	localNAT64 = netip.MustParsePrefix("64:ff9b:1::/48")
	teredo     = netip.MustParsePrefix("2001::/32")
)

// metadata are cloud instance metadata services outside link-local.
var metadata = []netip.Prefix{
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS over IPv6
	netip.MustParsePrefix("192.0.0.192/32"),     // Oracle Cloud
	// Tencent Cloud (169.254.0.23), AWS, GCP, Azure (169.254.169.254) are link-local.
}

// nonPublic are the ranges beyond netip.Addr's own predicates (loopback,
// private, link-local, multicast, unspecified) that are not public.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: embeds an IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local NAT64
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds an IPv4 address
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated): embeds an IPv4 address
}

// CIDRs is an allow-list, read from the environment as comma-separated
// CIDRs or single addresses.
type CIDRs []netip.Prefix

// Decode implements envconfig.Decoder.
func (c *CIDRs) Decode(v string) error {
	var out CIDRs
	for i, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			a, aerr := netip.ParseAddr(part)
			if aerr != nil {
				return &DecodeError{Entry: i + 1, Why: "is not a CIDR or an IP address"}
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	*c = out
	return nil
}

// Or returns c with the Private ranges added when private is set: the
// ALLOW_PRIVATE shorthands.
func (c CIDRs) Or(private bool) CIDRs {
	if !private {
		return c
	}
	return append(Private(), c...)
}

// DecodeError is a malformed entry of an allow-list.
type DecodeError struct {
	Entry int    // 1-based place in the list
	Why   string // what is wrong
}

func (e *DecodeError) Error() string { return "netguard: " + e.Reason() }

// Reason says what is wrong, for configuration errors.
func (e *DecodeError) Reason() string { return fmt.Sprintf("entry %d %s", e.Entry, e.Why) }
