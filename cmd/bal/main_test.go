package main

import (
	"bytes"
	"flag"
	"testing"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestMain builds the real binary for the black-box tests (not under
// -short: those tests skip then, the in-process ones run).
func TestMain(m *testing.M) { baltest.Main(m) }

// runInProcess calls run with a fresh, empty BAL_HOME.
func runInProcess(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Setenv("BAL_HOME", t.TempDir())
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}
