package stack

import "testing"

func TestDialable(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{":8080", "127.0.0.1:8080"},
		{"0.0.0.0:8080", "127.0.0.1:8080"},
		{"[::]:8080", "127.0.0.1:8080"},
		{"127.0.0.1:8080", "127.0.0.1:8080"},
		{"10.1.2.3:8080", "10.1.2.3:8080"},
		{"[::1]:8080", "[::1]:8080"},
		{"not an address", "not an address"},
	} {
		if got := dialable(tt.addr); got != tt.want {
			t.Errorf("dialable(%q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// LoadConfigs reads each service's variables with its defaults, vodsim's
// under their own prefix.
func TestLoadConfigsReadsTheServicesVariables(t *testing.T) {
	t.Setenv("VODPIPE_NOTIFY_HTTP_ADDR", "127.0.0.1:9081")
	t.Setenv("VODPIPE_VODSIM_TLS_ADDR", "127.0.0.1:9443")
	t.Setenv("VODPIPE_MAX_BODY", "1024")
	c, err := LoadConfigs()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"notify address", c.Notify.HTTPAddr, "127.0.0.1:9081"},
		{"vodsim TLS address", c.Vodsim.TLSAddr, "127.0.0.1:9443"},
		{"ingest max body", c.Ingest.MaxBody, int64(1024)},
		{"ingest address (default)", c.Ingest.HTTPAddr, ":8080"},
		{"worker jobs (default)", c.Worker.Jobs, 2},
		{"vodsim address (default)", c.Vodsim.Addr, "127.0.0.1:8190"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}
