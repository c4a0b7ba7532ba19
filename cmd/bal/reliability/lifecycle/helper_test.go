package lifecycle_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// helperEnv makes this test binary act as a small client instead of
// running tests: the security tests run it as another user.
const helperEnv = "LIFECYCLE_HELPER"

// dialResult is what the helper client saw.
type dialResult struct {
	Err      string `json:"err"`      // connect error, "" when connected
	Errno    string `json:"errno"`    // EACCES, ECONNREFUSED...
	Answer   string `json:"answer"`   // what the server wrote back
	ReadErr  string `json:"read_err"` // how the read ended
	Answered bool   `json:"answered"` // an HTTP answer arrived
}

func helperMain() {
	switch os.Getenv(helperEnv) {
	case "":
		return
	case "dial":
		os.Exit(helperDial(os.Args[len(os.Args)-1]))
	default:
		os.Exit(2)
	}
}

// helperDial connects to the unix socket path, sends GET /status and prints
// a dialResult as JSON.
func helperDial(path string) int {
	var r dialResult
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		r.Err = err.Error()
		var en syscall.Errno
		if errors.As(err, &en) {
			r.Errno = errnoName(en)
		}
	} else {
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = io.WriteString(c, "GET /status HTTP/1.1\r\nHost: bal\r\nConnection: close\r\n\r\n")
		b, err := io.ReadAll(io.LimitReader(c, 1<<20))
		r.Answer = string(b)
		r.Answered = len(b) >= 5 && string(b[:5]) == "HTTP/"
		if err != nil {
			r.ReadErr = err.Error()
		} else {
			r.ReadErr = "EOF"
		}
		c.Close()
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EACCES:
		return "EACCES"
	case syscall.EPERM:
		return "EPERM"
	case syscall.ECONNREFUSED:
		return "ECONNREFUSED"
	case syscall.ENOENT:
		return "ENOENT"
	}
	return e.Error()
}

// helperBinary is a copy of this test binary that other users can run
// (the go tool's build directory is private to root), removed with the
// test's temporary directory.
func helperBinary(t testing.TB) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(baltest.SharedTempDir(t), "helper")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// dialAs runs the helper client (helperBinary) as uid:gid against the unix socket path.
func dialAs(t testing.TB, helper string, uid, gid int, path string) dialResult {
	t.Helper()
	c := exec.Command(helper, "-test.run=^$", path)
	c.Env = append(os.Environ(), helperEnv+"=dial")
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := c.Output()
	if err != nil {
		t.Fatalf("helper as uid %d: %v\n%s", uid, err, out)
	}
	var r dialResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	return r
}

// binReachable makes the bal binary's directory traversable by other users
// (baltest builds it in a private temporary directory), once.
var binOnce sync.Once

func binReachable(t testing.TB) {
	t.Helper()
	binOnce.Do(func() { _ = os.Chmod(filepath.Dir(baltest.Bin), 0o755) })
}
