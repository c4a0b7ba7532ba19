//go:build linux

package datapath

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// TestLeakGate is the goroutine-leak gate of research test 30 for the
// engine packages: every package under engine/, engine_linux/ and
// engine_darwin/ whose code starts goroutines (a go statement outside its
// tests) and that has tests must run them under goleak.VerifyTestMain, so
// `make test` (go test -race) fails on a leaked goroutine. The race and
// vet gates are `make test` itself (go test -race, go vet).
func TestLeakGate(t *testing.T) {
	root, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, pattern := range []string{"engine", "engine/*", "engine_linux", "engine_darwin"} {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		for _, d := range m {
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				dirs = append(dirs, d)
			}
		}
	}
	if len(dirs) < 3 {
		t.Fatalf("found only %v under %s", dirs, root)
	}
	var gated, missing, exempt []string
	for _, d := range dirs {
		goStmts, hasTests, verifies := scanPackage(t, d)
		rel, _ := filepath.Rel(root, d)
		switch {
		case goStmts == 0:
			continue
		case !hasTests:
			exempt = append(exempt, rel+" (no tests of its own)")
		case verifies:
			gated = append(gated, rel)
		default:
			missing = append(missing, rel)
		}
	}
	sort.Strings(gated)
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("packages that start goroutines without goleak.VerifyTestMain: %v", missing)
	}
	baltest.Record(t, 30, fmt.Sprintf("goleak.VerifyTestMain in %d/%d engine packages that start goroutines (%s); exempt: %s; -race and go vet run in make test",
		len(gated), len(gated)+len(missing), strings.Join(gated, ", "), strings.Join(exempt, ", ")), len(missing) == 0)
}

// scanPackage counts go statements in dir's non-test files and reports
// whether it has tests and whether a test file calls goleak.VerifyTestMain.
func scanPackage(t *testing.T, dir string) (goStmts int, hasTests, verifies bool) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
		test := strings.HasSuffix(f, "_test.go")
		hasTests = hasTests || test
		ast.Inspect(af, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				if !test {
					goStmts++
				}
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); test && ok && x.Name == "goleak" && n.Sel.Name == "VerifyTestMain" {
					verifies = true
				}
			}
			return true
		})
	}
	return goStmts, hasTests, verifies
}
