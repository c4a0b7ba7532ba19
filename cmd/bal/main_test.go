package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// balBin is the real binary, built once by TestMain for the black-box tests.
var balBin string

// testVersion is stamped into balBin with -ldflags -X main.version.
const testVersion = "v0.0.0-test"

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "bal-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	balBin = filepath.Join(dir, "bal")
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+testVersion, "-o", balBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building bal for the black-box tests:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	baltest.Bin = balBin // the black-box helpers run this binary
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runInProcess calls run with a fresh, empty BAL_HOME.
func runInProcess(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Setenv("BAL_HOME", t.TempDir())
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}
