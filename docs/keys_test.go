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

// tableScope is the scope cell of a Runtime keys row: | `key` | default |
// scope | rule |, the scope being "process", "service", "service, tcp" or
// "service, udp".
var tableScope = regexp.MustCompile("^\\| `[a-z_]+` \\|[^|]*\\| (process|service(?:, (?:tcp|udp))?) \\|")

// TestRuntimeKeysDocumented: the Runtime keys table of docs/configuration.md
// lists exactly the keys the config parser knows, in the parser's order,
// each with its scope (and protocol).
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
		m := tableKey.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		documented = append(documented, m[1])
		scope, _ := config.RuntimeKeyScope(m[1])
		proto, _ := config.RuntimeKeyProtocol(m[1])
		want := scope.String()
		if proto != "" {
			want += ", " + string(proto)
		}
		if sm := tableScope.FindStringSubmatch(line); sm == nil || sm[1] != want {
			t.Errorf("docs/configuration.md, Runtime keys: the row of %s does not give its scope %q: %s", m[1], want, line)
		}
	}
	if want := config.RuntimeKeys(); !slices.Equal(documented, want) {
		t.Errorf("docs/configuration.md, Runtime keys, lists\n  %v\nthe parser knows\n  %v", documented, want)
	}
}
