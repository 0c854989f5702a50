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
// config` documents; docs/configuration.md's table is this output, kept in sync by a test.
var configSections = []struct {
	name, prefix string
	spec         any
}{
	{"ingest (cmd/ingest)", config.Prefix, &ingest.Config{}},
	{"worker (cmd/worker)", config.Prefix, &worker.Config{}},
	{"notify (cmd/notify)", config.Prefix, &notify.Config{}},
	{"vodsim (cmd/vodsim)", vodsim.EnvPrefix, &vodsim.Config{}},
	{"logs (ingest, worker and notify)", config.Prefix, &service.LogConfig{}},
	{"the command line (submit, jobs, status, pause, resume, cancel, dead-letters)", config.Prefix, &cliEnv{}},
}

// cliEnv documents the variables the CLI's commands read (each has a flag
// too); the commands read them themselves.
type cliEnv struct {
	APIURL     string `envconfig:"API_URL" default:"http://127.0.0.1:8080" desc:"ingest API URL (--api)"`
	APIKey     string `envconfig:"API_KEY" desc:"API key (--api-key)"`
	APIKeyFile string `envconfig:"API_KEY_FILE" desc:"file holding the API key, e.g. a mounted secret (--api-key-file)"`
	NotifyURL  string `envconfig:"NOTIFY_URL" desc:"notify URL: submit --watch follows its event stream (--events)"`
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
