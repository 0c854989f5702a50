package netguard_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/vodpipe/vodpipe/internal/netguard"
)

func mustCIDRs(t *testing.T, s string) netguard.CIDRs {
	t.Helper()
	var c netguard.CIDRs
	if err := c.Decode(s); err != nil {
		t.Fatal(err)
	}
	return c
}

// Each address under three guards: none allowed, the ALLOW_PRIVATE
// shorthand, and an operator who allows everything. Link-local and metadata
// addresses stay refused under all three, however they are spelled.
func TestCheck(t *testing.T) {
	strict := netguard.New(nil)
	private := netguard.New(netguard.CIDRs(nil).Or(true))
	everything := netguard.New(mustCIDRs(t, "0.0.0.0/0,::/0"))
	for _, tc := range []struct {
		addr                        string
		strict, private, everything bool
	}{
		{"8.8.8.8", true, true, true},
		{"2606:4700:4700::1111", true, true, true},
		{"::ffff:8.8.8.8", true, true, true},
		{"127.0.0.1", false, true, true},
		{"::1", false, true, true},
		{"::ffff:127.0.0.1", false, true, true},
		{"10.1.2.3", false, true, true},
		{"192.168.1.1", false, true, true},
		{"fd12:3456::1", false, true, true},
		{"100.64.0.1", false, false, true},
		{"64:ff9b::a00:1", false, false, true},
		{"0.0.0.0", false, false, true},
		// Never, whatever is allowed.
		{"169.254.169.254", false, false, false}, // AWS, GCP, Azure metadata
		{"169.254.0.23", false, false, false},    // Tencent Cloud metadata
		{"100.100.100.200", false, false, false}, // Alibaba Cloud metadata
		{"fd00:ec2::254", false, false, false},   // AWS metadata over IPv6
		{"192.0.0.192", false, false, false},     // Oracle Cloud metadata
		{"::ffff:169.254.169.254", false, false, false},
		{"64:ff9b::a9fe:a9fe", false, false, false},       // NAT64 of 169.254.169.254
		{"2002:a9fe:a9fe::1", false, false, false},        // 6to4 of 169.254.169.254
		{"::169.254.169.254", false, false, false},        // IPv4-compatible
		{"64:ff9b:1:a9fe:a9:fe00::", false, false, false}, // local NAT64 (RFC 8215) of 169.254.169.254
		{"2001::5601:5601", false, false, false},          // Teredo client 169.254.169.254
		{"fe80::1", false, false, false},
		{"fe80::1%eth0", false, false, false},
		{"ff02::1", false, false, false}, // link-local multicast
	} {
		a := netip.MustParseAddr(tc.addr)
		for _, g := range []struct {
			name  string
			guard *netguard.Guard
			want  bool
		}{{"strict", strict, tc.strict}, {"private", private, tc.private}, {"everything", everything, tc.everything}} {
			err := g.guard.Check(a)
			if (err == nil) != g.want {
				t.Errorf("%s guard: Check(%s) = %v, want allowed %v", g.name, tc.addr, err, g.want)
			}
			if err != nil && !errors.Is(err, netguard.ErrRefused) {
				t.Errorf("%s guard: Check(%s) = %v, want ErrRefused", g.name, tc.addr, err)
			}
		}
	}
}

// hosts is a fixed DNS answer per name.
type hosts map[string][]netip.Addr

func (h hosts) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := h[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// A name is judged by every address it resolves to: one inward address is
// enough to refuse it; localhost is loopback without asking DNS.
func TestCheckHost(t *testing.T) {
	dns := hosts{
		"cdn.example.com":      {netip.MustParseAddr("93.184.216.34")},
		"metadata.example.com": {netip.MustParseAddr("169.254.169.254")},
		"mixed.example.com":    {netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("::ffff:169.254.0.23")},
		"inside.example.com":   {netip.MustParseAddr("10.0.0.7")},
	}
	loopback := netguard.New(mustCIDRs(t, "127.0.0.0/8,::1"))
	for _, tc := range []struct {
		host  string
		guard *netguard.Guard
		want  bool
		gname string
	}{
		{"cdn.example.com", netguard.New(nil), true, "strict"},
		{"93.184.216.34", netguard.New(nil), true, "strict"},
		{"metadata.example.com", loopback, false, "loopback"},
		{"mixed.example.com", loopback, false, "loopback"},
		{"inside.example.com", loopback, false, "loopback"},
		{"inside.example.com", netguard.New(mustCIDRs(t, "10.0.0.0/24")), true, "10.0.0.0/24"},
		{"localhost", netguard.New(nil), false, "strict"},
		{"api.localhost.", netguard.New(nil), false, "strict"},
		{"localhost", loopback, true, "loopback"},
		{"169.254.169.254", loopback, false, "loopback"},
		{"nowhere.example.com", loopback, false, "loopback"},
	} {
		err := tc.guard.CheckHost(t.Context(), dns, tc.host)
		if (err == nil) != tc.want {
			t.Errorf("%s guard: CheckHost(%s) = %v, want allowed %v", tc.gname, tc.host, err, tc.want)
		}
	}
}

// The dial hook judges the address a connection really goes to: with
// loopback allowed, a local server is reached; without, nothing connects.
func TestDialer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		allow string
		want  bool
	}{{"", false}, {"10.0.0.0/8", false}, {"127.0.0.1/32", true}} {
		c := &http.Client{Transport: &http.Transport{DialContext: netguard.New(mustCIDRs(t, tc.allow)).Dialer().DialContext}}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		resp, err := c.Do(req)
		if tc.want && err != nil {
			t.Errorf("allow %q: %v", tc.allow, err)
		}
		if !tc.want && !errors.Is(err, netguard.ErrRefused) {
			t.Errorf("allow %q: err = %v, want ErrRefused", tc.allow, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
}

func TestDecode(t *testing.T) {
	var c netguard.CIDRs
	if err := c.Decode(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,"); err != nil {
		t.Fatal(err)
	}
	if len(c) != 3 || c[1] != netip.MustParsePrefix("192.168.1.7/32") {
		t.Fatalf("CIDRs = %v", c)
	}
	err := c.Decode("10.0.0.0/8,intranet")
	var de *netguard.DecodeError
	if !errors.As(err, &de) || de.Entry != 2 {
		t.Fatalf("err = %v, want a DecodeError for entry 2", err)
	}
}
