package fanout

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vodpipe/vodpipe/internal/netguard"
)

// ErrAddressRefused is returned when a webhook URL, or the address a
// delivery would connect to, is not on the public internet nor in
// WEBHOOK_ALLOW_CIDRS, or is link-local or a cloud metadata address.
var ErrAddressRefused = netguard.ErrRefused

// maxURLLen bounds a webhook URL.
const maxURLLen = 2048

// checkWebhookURL says what is wrong with a webhook URL, or "". A host that
// is, or resolves to, an address the guard refuses is refused; the dialer
// checks again at every connection, since DNS may answer differently later.
func checkWebhookURL(ctx context.Context, raw string, guard *netguard.Guard, resolver netguard.Resolver) string {
	if raw == "" {
		return "is required"
	}
	if len(raw) > maxURLLen {
		return fmt.Sprintf("is longer than %d characters", maxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "is not a URL"
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an http or https URL"
	case u.Host == "" || u.Hostname() == "":
		return "has no host"
	case u.User != nil:
		return "must not carry credentials (user:password@); put a token in the path or query"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not have a fragment"
	}
	if p := u.Port(); p != "" {
		if n, err := net.LookupPort("tcp", p); err != nil || n == 0 {
			return "has an invalid port"
		}
	}
	if err := guard.CheckHost(ctx, resolver, u.Hostname()); err != nil {
		return strings.TrimPrefix(err.Error(), "host ")
	}
	return ""
}

// newWebhookClient returns the client deliveries use: no proxy (a proxy
// would hide the real destination from the dial check), no redirects (a
// redirect to an internal address is the classic way around an SSRF check;
// a 3xx counts as a failed attempt), and a dialer that checks every address
// it connects to. Each attempt's timeout comes from its context.
func newWebhookClient(guard *netguard.Guard) *http.Client {
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           guard.Dialer().DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 0,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
