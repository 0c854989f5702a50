package chaos

import (
	"net"
	"strconv"

	"github.com/vodpipe/vodpipe/internal/testharness"
)

// freePort is a loopback port free a moment ago.
func freePort() (int, error) { return testharness.FreePort() }

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
