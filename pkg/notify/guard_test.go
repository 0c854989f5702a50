package notify

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestPublicAddr(t *testing.T) {
	cases := map[string]bool{
		"8.8.8.8": true, "1.1.1.1": true, "2606:4700:4700::1111": true, "93.184.216.34": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fc00::1": false, "0.0.0.0": false, "::": false,
		"100.64.0.1": false, "224.0.0.1": false, "255.255.255.255": false, "::ffff:127.0.0.1": false,
		"::ffff:10.0.0.1": false, "64:ff9b::a00:1": false, "2002:a00:1::": false, "198.18.0.1": false,
	}
	for s, want := range cases {
		if got := publicAddr(netip.MustParseAddr(s)); got != want {
			t.Errorf("publicAddr(%s) = %v, want %v", s, got, want)
		}
	}
}

// TestDialGuardRefusesPrivateAddresses checks the second line of defence:
// whatever a URL passed at creation, the delivery client refuses to connect
// to a non-public address (DNS rebinding, a record changed later).
func TestDialGuardRefusesPrivateAddresses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, nil)
	_, err := newWebhookClient(false).Do(req)
	if !errors.Is(err, ErrAddressRefused) {
		t.Fatalf("guarded client to %s: err = %v, want ErrAddressRefused", srv.URL, err)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, nil)
	resp, err := newWebhookClient(true).Do(req)
	if err != nil {
		t.Fatalf("client allowing private addresses: %v", err)
	}
	resp.Body.Close()
}

func TestCheckWebhookURL(t *testing.T) {
	cases := []struct {
		url          string
		allowPrivate bool
		ok           bool
	}{
		{"https://93.184.216.34/hook", false, true},
		{"https://[2606:4700:4700::1111]:8443/hook", false, true},
		{"http://127.0.0.1:8080/hook", false, false},
		{"http://127.0.0.1:8080/hook", true, true},
		{"http://localhost/hook", false, false},
		{"http://api.localhost/hook", false, false},
		{"http://169.254.169.254/latest/meta-data", false, false},
		{"http://[::1]/", false, false},
		{"http://10.0.0.5/", false, false},
		{"ftp://93.184.216.34/", true, false},
		{"https://user:pw@93.184.216.34/", true, false},
		{"https://93.184.216.34/#frag", true, false},
		{"https:///nohost", true, false},
		{"", true, false},
		{"https://93.184.216.34:99999/", true, false},
	}
	for _, tc := range cases {
		msg := checkWebhookURL(t.Context(), tc.url, tc.allowPrivate, nil)
		if (msg == "") != tc.ok {
			t.Errorf("checkWebhookURL(%q, allowPrivate=%v) = %q, want ok=%v", tc.url, tc.allowPrivate, msg, tc.ok)
		}
	}
}
