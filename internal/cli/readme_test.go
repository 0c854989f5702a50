package cli

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/internal/worker"
)

const (
	configBegin = "<!-- config:begin -->"
	configEnd   = "<!-- config:end -->"
)

// The configuration table of docs/configuration.md is `vodpipe config`'s output. Run with
// VODPIPE_UPDATE_README=1 to rewrite it.
func TestREADMEConfigTableInSync(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, configBegin), strings.Index(s, configEnd)
	if i < 0 || j < i {
		t.Fatal("docs/configuration.md lacks the config markers")
	}
	md, err := configMarkdown()
	if err != nil {
		t.Fatal(err)
	}
	want := s[:i+len(configBegin)] + "\n" + md + "\n" + s[j:]
	if want == s {
		return
	}
	if os.Getenv("VODPIPE_UPDATE_README") == "1" {
		if err := os.WriteFile("../../docs/configuration.md", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("the configuration table of docs/configuration.md is stale: run VODPIPE_UPDATE_README=1 go test ./internal/cli -run READMEConfig")
}

// Only ingest is given the Tencent keys: no other service's config has a field for them.
func TestOnlyIngestConfigHoldsTheSecretKey(t *testing.T) {
	for _, s := range configSections {
		if strings.HasPrefix(s.name, "ingest") {
			continue
		}
		for _, f := range fieldNames(reflect.TypeOf(s.spec).Elem()) {
			// The Tencent pair: SecretId, SecretKey(File) or the Credentials
			// that hold them (WebhookSecretKeys seal notify's own secrets).
			if f == "Credentials" || strings.HasPrefix(f, "SecretKey") || strings.HasPrefix(f, "SecretID") {
				t.Errorf("%s config has field %s", s.name, f)
			}
		}
	}
	for _, f := range fieldNames(reflect.TypeOf(worker.Config{})) {
		if f == "Credentials" || strings.HasPrefix(f, "Secret") {
			t.Errorf("worker config has %s", f)
		}
	}
}

func fieldNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		out = append(out, f.Name)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, fieldNames(f.Type)...)
		}
	}
	return out
}
