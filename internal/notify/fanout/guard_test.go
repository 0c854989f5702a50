package fanout

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vodpipe/vodpipe/internal/netguard"
)

// TestDialGuardRefusesPrivateAddresses checks the second line of defence:
// whatever a URL passed at creation, the delivery client refuses to connect
// to an address the guard does not allow (DNS rebinding, a record changed later).
func TestDialGuardRefusesPrivateAddresses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, nil)
	_, err := newWebhookClient(netguard.New(nil)).Do(req)
	if !errors.Is(err, ErrAddressRefused) {
		t.Fatalf("guarded client to %s: err = %v, want ErrAddressRefused", srv.URL, err)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, nil)
	resp, err := newWebhookClient(netguard.New(netguard.Private())).Do(req)
	if err != nil {
		t.Fatalf("client allowing private addresses: %v", err)
	}
	resp.Body.Close()
}

// WEBHOOK_ALLOW_PRIVATE (or a loopback allow-list) opens loopback, never
// link-local or metadata addresses, however they are spelled.
func TestCheckWebhookURL(t *testing.T) {
	strict, private := netguard.New(nil), netguard.New(netguard.Private())
	cases := []struct {
		url   string
		guard *netguard.Guard
		ok    bool
	}{
		{"https://93.184.216.34/hook", strict, true},
		{"https://[2606:4700:4700::1111]:8443/hook", strict, true},
		{"http://127.0.0.1:8080/hook", strict, false},
		{"http://127.0.0.1:8080/hook", private, true},
		{"http://localhost/hook", strict, false},
		{"http://localhost/hook", private, true},
		{"http://api.localhost/hook", strict, false},
		{"http://169.254.169.254/latest/meta-data", strict, false},
		{"http://169.254.169.254/latest/meta-data", private, false},
		{"http://169.254.0.23/meta-data", private, false},
		{"http://100.100.100.200/latest/meta-data", private, false},
		{"http://[::ffff:169.254.169.254]/", private, false},
		{"http://[fd00:ec2::254]/", private, false},
		{"http://[::1]/", strict, false},
		{"http://10.0.0.5/", strict, false},
		{"ftp://93.184.216.34/", private, false},
		{"https://user:pw@93.184.216.34/", private, false},
		{"https://93.184.216.34/#frag", private, false},
		{"https:///nohost", private, false},
		{"", private, false},
		{"https://93.184.216.34:99999/", private, false},
	}
	for _, tc := range cases {
		msg := checkWebhookURL(t.Context(), tc.url, tc.guard, net.DefaultResolver)
		if (msg == "") != tc.ok {
			t.Errorf("checkWebhookURL(%q) = %q, want ok=%v", tc.url, msg, tc.ok)
		}
	}
}
