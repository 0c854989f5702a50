package httpapi_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/vodpipe/vodpipe/internal/httpapi"
)

// docs/errors.md's table is the catalog: every code with its meaning.
func TestErrorCatalogInSync(t *testing.T) {
	const path, begin, end = "../../docs/errors.md", "<!-- codes:begin -->", "<!-- codes:end -->"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatal("docs/errors.md lacks the codes markers")
	}
	var table strings.Builder
	table.WriteString("\n| code | meaning |\n| --- | --- |\n")
	for _, c := range httpapi.Catalog() {
		fmt.Fprintf(&table, "| `%s` | %s |\n", c.Code, c.Meaning)
	}
	want := s[:i+len(begin)] + table.String() + s[j:]
	if want == s {
		return
	}
	if os.Getenv("VODPIPE_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("docs/errors.md is stale: VODPIPE_UPDATE_DOCS=1 go test ./internal/httpapi -run ErrorCatalog")
}
