package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/vodpipe/vodpipe/internal/version"
)

// runVersion prints the binary's version: one line, or JSON.
func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("version", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	output := fs.String("output", "text", "text or json")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	in := version.Get()
	switch *output {
	case "text":
		fmt.Fprintln(stdout, in.String())
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(in)
	default:
		fmt.Fprintf(stderr, "vodpipe version: --output is text or json, not %q\n", *output)
		return 2
	}
	return 0
}
