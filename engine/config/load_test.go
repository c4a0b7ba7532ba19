package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	writeFile(t, "ok.yaml", "bind_address: 127.0.0.1\n"+one)
	writeFile(t, "bad.yaml", "port: 0\n"+one)

	s, err := Load("ok.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "ok.yaml"); s.Path != want {
		t.Errorf("Path = %q, want the absolute %q", s.Path, want)
	}

	_, err = Load("bad.yaml")
	var ce *Error
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &ce) || ce.Path != filepath.Join(dir, "bad.yaml") {
		t.Errorf("invalid file: err = %v", err)
	}

	_, err = Load("missing.yaml")
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("missing file: err = %v", err)
	}
	if err != nil && !strings.Contains(err.Error(), filepath.Join(dir, "missing.yaml")) {
		t.Errorf("missing file error does not name the path: %v", err)
	}

	_, err = Load(dir)
	if err == nil || errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) {
		t.Errorf("directory: err = %v", err)
	}

	writeFile(t, "big.yaml", strings.Repeat("#\n", MaxFileSize))
	if _, err = Load("big.yaml"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "at most") {
		t.Errorf("big file: err = %v", err)
	}

	if os.Geteuid() != 0 { // root reads anything
		writeFile(t, "secret.yaml", one)
		if err := os.Chmod("secret.yaml", 0); err != nil {
			t.Fatal(err)
		}
		if _, err = Load("secret.yaml"); err == nil || errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) {
			t.Errorf("unreadable file: err = %v", err)
		}
	}
}

func TestHome(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("BAL_HOME", dir)
	if h, err := Home(); err != nil || h != dir {
		t.Errorf("Home() = %q, %v; want %q", h, err, dir)
	}

	t.Chdir(dir)
	t.Setenv("BAL_HOME", "rel")
	if h, err := Home(); err != nil || h != filepath.Join(dir, "rel") {
		t.Errorf("relative BAL_HOME: Home() = %q, %v", h, err)
	}

	t.Setenv("BAL_HOME", "")
	t.Setenv("HOME", filepath.Join(dir, "user"))
	if h, err := Home(); err != nil || h != filepath.Join(dir, "user", ".bal") {
		t.Errorf("no BAL_HOME: Home() = %q, %v", h, err)
	}
}

func TestResolve(t *testing.T) {
	defer func(p string) { etcPath = p }(etcPath)
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	etc := filepath.Join(dir, "etc", "config.yaml")
	etcPath = etc
	t.Setenv("BAL_HOME", home)
	t.Chdir(dir)
	homeFile := filepath.Join(home, "config.yaml")

	// Nothing exists: the $BAL_HOME path.
	if p, err := Resolve(""); err != nil || p != homeFile {
		t.Errorf("nothing exists: %q, %v; want %q", p, err, homeFile)
	}
	// Only /etc exists.
	if err := os.MkdirAll(filepath.Dir(etc), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, etc, one)
	if p, err := Resolve(""); err != nil || p != etc {
		t.Errorf("only etc: %q, %v; want %q", p, err, etc)
	}
	// $BAL_HOME wins over /etc.
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, homeFile, one)
	if p, err := Resolve(""); err != nil || p != homeFile {
		t.Errorf("both: %q, %v; want %q", p, err, homeFile)
	}
	// -c wins, and a relative -c is made absolute against the cwd, even
	// when it does not exist.
	for flag, want := range map[string]string{
		"x.yaml":                filepath.Join(dir, "x.yaml"),
		"./sub/../y.yaml":       filepath.Join(dir, "y.yaml"),
		filepath.Join(dir, "z"): filepath.Join(dir, "z"),
	} {
		if p, err := Resolve(flag); err != nil || p != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", flag, p, err, want)
		}
	}
}

func TestWriteDefault(t *testing.T) {
	home := filepath.Join(t.TempDir(), "nested", ".bal")
	t.Setenv("BAL_HOME", home)
	h, err := Home()
	if err != nil {
		t.Fatal(err)
	}
	path, err := WriteDefault(h)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(home, "config.yaml") {
		t.Errorf("path = %q", path)
	}
	st, err := os.Stat(home)
	if err != nil || st.Mode().Perm() != 0o700 || !st.IsDir() {
		t.Errorf("home: %v, mode %v; want a 0700 directory", err, st.Mode())
	}
	st, err = os.Lstat(path)
	if err != nil || st.Mode().Perm() != 0o600 || !st.Mode().IsRegular() {
		t.Errorf("file: %v, mode %v; want a regular 0600 file", err, st.Mode())
	}
	data, err := os.ReadFile(path)
	if err != nil || string(data) != DefaultFile {
		t.Fatalf("content differs from DefaultFile (%v)", err)
	}
	// It resolves and loads, with no warning (bal check --strict passes).
	if p, err := Resolve(""); err != nil || p != path {
		t.Errorf("Resolve = %q, %v", p, err)
	}
	s, err := Load(path)
	if err != nil || len(s.Warnings) != 0 {
		t.Errorf("Load: %v, warnings %v", err, s.Warnings)
	}

	// Never overwrites.
	if err := os.WriteFile(path, []byte("# mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteDefault(h); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second WriteDefault: %v, want fs.ErrExist", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "# mine\n" {
		t.Error("WriteDefault overwrote an existing file")
	}
}

func TestWriteDefaultRefusesSymlink(t *testing.T) {
	for _, dangling := range []bool{false, true} {
		home := t.TempDir()
		target := filepath.Join(t.TempDir(), "target")
		if !dangling {
			writeFile(t, target, "keep\n")
		}
		if err := os.Symlink(target, filepath.Join(home, "config.yaml")); err != nil {
			t.Fatal(err)
		}
		if _, err := WriteDefault(home); err == nil {
			t.Errorf("dangling=%v: WriteDefault wrote through a symlink", dangling)
		}
		data, err := os.ReadFile(target)
		switch {
		case dangling && err == nil:
			t.Errorf("the symlink's target was created: %q", data)
		case !dangling && string(data) != "keep\n":
			t.Errorf("the symlink's target was changed: %q", data)
		}
	}
}

func TestWriteDefaultKeepsExistingHomeMode(t *testing.T) {
	home := t.TempDir()
	if err := os.Chmod(home, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteDefault(home); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(home); st.Mode().Perm() != 0o750 {
		t.Errorf("existing home mode changed to %v", st.Mode().Perm())
	}
}
