package cli

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/kelseyhightower/envconfig"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/internal/ingest"
	"github.com/vodpipe/vodpipe/internal/notify"
	"github.com/vodpipe/vodpipe/internal/service"
	"github.com/vodpipe/vodpipe/internal/worker"
	"github.com/vodpipe/vodpipe/pkg/vodsim"
)

// configSections are the services whose environment variables `vodpipe
// config` documents; docs/operations.md's table is this output, kept in sync by a test.
var configSections = []struct {
	name, prefix string
	spec         any
}{
	{"ingest (cmd/ingest)", config.Prefix, &ingest.Config{}},
	{"worker (cmd/worker)", config.Prefix, &worker.Config{}},
	{"notify (cmd/notify)", config.Prefix, &notify.Config{}},
	{"vodsim (cmd/vodsim)", vodsim.EnvPrefix, &vodsim.Config{}},
	{"logs (ingest, worker and notify)", config.Prefix, &service.LogConfig{}},
}

const configRow = `{{range .}}| ` + "`{{usage_key .}}`" + ` | {{usage_default .}} | {{usage_description .}} |
{{end}}`

// configMarkdown renders every service's variables as Markdown tables.
func configMarkdown() (string, error) {
	var b bytes.Buffer
	for _, s := range configSections {
		fmt.Fprintf(&b, "\n**%s**\n\n| variable | default | meaning |\n| --- | --- | --- |\n", s.name)
		var rows bytes.Buffer
		if err := envconfig.Usagef(s.prefix, s.spec, &rows, configRow); err != nil {
			return "", err
		}
		b.WriteString(strings.ReplaceAll(rows.String(), "||", "| |"))
	}
	return b.String(), nil
}

func runConfigDoc(w io.Writer) int {
	md, err := configMarkdown()
	if err != nil {
		fmt.Fprintln(w, "vodpipe config:", err)
		return 1
	}
	fmt.Fprint(w, md)
	return 0
}
