package baltest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Bin is the bal binary built by Main.
var Bin string

// Version is stamped into Bin.
const Version = "v0.0.0-test"

// Main builds bal (from the module's cmd/bal) into a temporary directory,
// runs the tests and removes it. Call it from TestMain.
func Main(m *testing.M) {
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

func build(out string) error {
	_, file, _, _ := runtime.Caller(0)
	cmdDir := filepath.Join(filepath.Dir(file), "..", "..") // cmd/bal
	c := exec.Command("go", "build", "-ldflags", "-X main.version="+Version, "-o", out, ".")
	c.Dir = cmdDir
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	return c.Run()
}

// Engines are the engines data-path tests run against here.
func Engines() []string {
	if runtime.GOOS == "linux" {
		return []string{"gnet", "std"}
	}
	return []string{"std"}
}
