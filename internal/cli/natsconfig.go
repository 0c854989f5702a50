package cli

import (
	"fmt"
	"io"

	"github.com/vodpipe/vodpipe/internal/natsperm"
)

// runNATSConfig prints the nats-server users block of vodpipe's roles.
func runNATSConfig(stdout, stderr io.Writer) int {
	if err := natsperm.WriteServerConfig(stdout); err != nil {
		fmt.Fprintln(stderr, "vodpipe nats-config:", err)
		return 1
	}
	return 0
}
