package baltest

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Bin is the bal binary built by Main ("" under -short: see NeedBinary).
var Bin string

// Version is stamped into Bin.
const Version = "v0.0.0-test"

// Main builds bal (from the module's cmd/bal) into a temporary directory,
// runs the tests and removes it. Call it from TestMain.
//
// Under `go test -short` (the quick inner loop) it builds nothing, and every
// test that runs the real binary skips: they all get it from NeedBinary.
// `make test` does not pass -short and runs them all.
func Main(m *testing.M) {
	flag.Parse() // testing.Short needs the flags
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "baltest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Tests run bal as other users too: they must reach the binary.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	Bin = filepath.Join(dir, "bal")
	if err := build(Bin); err != nil {
		fmt.Fprintln(os.Stderr, "building bal:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// MainLong is Main for a package whose tests are all long black-box tests
// (the reliability suites): under -short it runs none of them.
func MainLong(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("baltest: -short: the long black-box tests of this package are skipped (make test runs them)")
		os.Exit(0)
	}
	Main(m)
}

// NeedBinary returns the bal binary Main built, or skips t under -short,
// when Main builds none. Every helper that runs bal gets it here.
func NeedBinary(t testing.TB) string {
	t.Helper()
	if Bin == "" {
		if testing.Short() {
			t.Skip("black-box test (runs the real binary): skipped under -short; make test runs it")
		}
		t.Fatal("baltest: no bal binary: call baltest.Main from TestMain")
	}
	return Bin
}

func build(out string) error {
	_, file, _, _ := runtime.Caller(0)
	cmdDir := filepath.Join(filepath.Dir(file), "..", "..") // cmd/bal
	c := exec.Command("go", "build", "-ldflags", "-X main.version="+Version, "-o", out, ".")
	c.Dir = cmdDir
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	return c.Run()
}
