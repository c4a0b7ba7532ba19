package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/bal-lb/bal/engine/config"
)

// tableKey is the first cell of a reference table row: | `key` | ...
var tableKey = regexp.MustCompile("^\\| `([a-z_]+)` \\|")

// TestRuntimeKeysDocumented: the Runtime keys table of docs/configuration.md
// lists exactly the keys the config parser knows, in the parser's order.
func TestRuntimeKeysDocumented(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Runtime keys\n")
	if !ok {
		t.Fatal("docs/configuration.md has no \"## Runtime keys\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var documented []string
	for _, line := range strings.Split(section, "\n") {
		if m := tableKey.FindStringSubmatch(line); m != nil {
			documented = append(documented, m[1])
		}
	}
	if want := config.RuntimeKeys(); !slices.Equal(documented, want) {
		t.Errorf("docs/configuration.md, Runtime keys, lists\n  %v\nthe parser knows\n  %v", documented, want)
	}
}
