package packaging

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// shared is a temporary directory for what several tests reuse (bal
// builds, the release build); TestMain removes it.
var shared string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bal-packaging-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared = dir
	code := m.Run()
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// repoRoot is the checkout this package lives in.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod above packaging/: %v", err)
	}
	return root
}

// run runs name with args in dir with env (added to os.Environ) and returns
// stdout, stderr and the exit code; a command that cannot start, or that
// runs longer than timeout, fails the test.
func run(t testing.TB, timeout time.Duration, dir string, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: still running after %s\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), timeout, stdout.String(), stderr.String())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	t.Fatalf("%s: %v", name, err)
	return "", "", -1
}

// mustRun is run that fails the test on a non-zero exit.
func mustRun(t testing.TB, timeout time.Duration, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, timeout, dir, env, name, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

var (
	balBuildsMu sync.Mutex
	balBuilds   = map[string]string{}
)

// balBinary builds bal for this machine with -X main.version=version (once
// per version) and returns its path.
func balBinary(t testing.TB, version string) string {
	t.Helper()
	balBuildsMu.Lock()
	defer balBuildsMu.Unlock()
	if p, ok := balBuilds[version]; ok {
		return p
	}
	out := filepath.Join(shared, "bal-"+version, "bal")
	mustRun(t, 5*time.Minute, repoRoot(t), []string{"CGO_ENABLED=0"},
		"go", "build", "-trimpath", "-ldflags", "-X main.version="+version, "-o", out, "./cmd/bal")
	balBuilds[version] = out
	return out
}

// needTool skips the test when name is not installed.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed: skipping (apt-get install %s)", name, name)
	}
	return p
}

// sha256File is the hex SHA-256 of a file.
func sha256File(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// writeFile writes a file, creating its directory.
func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// tree lists everything under dir: relative path -> "d" for a directory,
// "l -> target" for a symlink, "f <mode> <sha256>" for a file.
func tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == dir {
				return fs.SkipAll
			}
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			out[rel] = "l -> " + target
		case d.IsDir():
			out[rel] = "d"
		default:
			info, err := d.Info()
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("f %v %s", info.Mode().Perm(), sha256File(t, path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diffTrees describes how two trees differ ("" when equal).
func diffTrees(want, got map[string]string) string {
	var lines []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			lines = append(lines, "missing "+k)
		} else if g != w {
			lines = append(lines, fmt.Sprintf("changed %s: %s -> %s", k, w, g))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			lines = append(lines, "extra "+k)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// recorder writes an executable script at dir/name that appends its
// arguments as one line to log and exits with code; it returns log's path.
func recorder(t testing.TB, dir, name string, code int) string {
	t.Helper()
	log := filepath.Join(dir, name+".calls")
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >>'%s'\nexit %d\n", log, code)
	writeFile(t, filepath.Join(dir, name), script, 0o755)
	return log
}

// calls is what a recorder logged, one call a line (nil when never called).
func calls(t testing.TB, log string) []string {
	t.Helper()
	data, err := os.ReadFile(log)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(data), "\n"), "\n")
}

// freePort is a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// verifyUnit runs systemd-analyze verify (when installed) on a copy of a
// unit whose binary path bin is replaced by the existing file real.
func verifyUnit(t testing.TB, unit []byte, bin, real string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed: the unit is not verified")
		return
	}
	path := filepath.Join(t.TempDir(), "bal.service")
	writeFile(t, path, strings.ReplaceAll(string(unit), bin, real), 0o644)
	out, errOut, code := run(t, time.Minute, "", nil, analyze, "verify", path)
	if code != 0 || strings.TrimSpace(out+errOut) != "" {
		t.Errorf("systemd-analyze verify: exit %d\n%s%s", code, out, errOut)
	}
}
