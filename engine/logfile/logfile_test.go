package logfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestOpenCreatesAndAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bal.log")
	if err := os.WriteFile(path, []byte("old line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte("new line\n")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "old line\nnew line\n" {
		t.Errorf("content %q", got)
	}
	if _, err := l.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	if err := l.Reopen(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("reopen after close: %v", err)
	}

	fresh := filepath.Join(t.TempDir(), "new.log")
	old := syscall.Umask(0o022)
	l, err = Open(fresh)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("new log file mode %v (%v), want 0640", st.Mode().Perm(), err)
	}
}

// TestOpenRefusesUnsafe: a symlink, a hard link, a FIFO or a directory at
// the path is refused at once and whatever it points to is left untouched.
func TestOpenRefusesUnsafe(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		plant func(path string) error
	}{
		{"symlink", func(p string) error { return os.Symlink(victim, p) }},
		{"dangling symlink", func(p string) error { return os.Symlink(filepath.Join(dir, "nowhere"), p) }},
		{"hard link", func(p string) error { return os.Link(victim, p) }},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }},
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".log")
			if err := tt.plant(path); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				l, err := Open(path)
				if err == nil {
					l.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("opened")
				}
				if tt.name != "directory" && !errors.Is(err, ErrUnsafe) {
					t.Errorf("err = %v, want ErrUnsafe", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Open blocked")
			}
			if got, _ := os.ReadFile(victim); string(got) != "precious\n" {
				t.Errorf("victim changed: %q", got)
			}
			if _, err := os.Stat(filepath.Join(dir, "nowhere")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a dangling symlink's target was created")
			}
		})
	}
}

// TestReopenAfterRotation is logrotate's create mode: the file is renamed,
// Reopen creates a new one, and later lines go there.
func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bal.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fmt.Fprintln(l, "before")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(l, "still old")
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(l, "after")
	if got, _ := os.ReadFile(path + ".1"); string(got) != "before\nstill old\n" {
		t.Errorf("rotated file %q", got)
	}
	if got, _ := os.ReadFile(path); string(got) != "after\n" {
		t.Errorf("new file %q", got)
	}

	// A reopen that fails keeps the old file in use.
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), path); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); !errors.Is(err, ErrUnsafe) {
		t.Errorf("reopen onto a symlink: %v", err)
	}
	fmt.Fprintln(l, "kept")
	if got, _ := os.ReadFile(path + ".2"); string(got) != "after\nkept\n" {
		t.Errorf("old file after failed reopen %q", got)
	}
}

// TestConcurrentWritesAndReopens: lines written while reopening are never
// lost or split.
func TestConcurrentWritesAndReopens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bal.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const writers, lines = 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				if _, err := fmt.Fprintf(l, "w%d line %d %s\n", w, i, strings.Repeat("x", 100)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range 20 {
		if err := os.Rename(path, fmt.Sprintf("%s.%d", path, i)); err != nil {
			t.Fatal(err)
		}
		if err := l.Reopen(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	l.Close()
	files, _ := filepath.Glob(path + "*")
	total := 0
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			if line == "" {
				continue
			}
			if !strings.HasPrefix(line, "w") || !strings.HasSuffix(line, strings.Repeat("x", 100)) {
				t.Fatalf("split line %q in %s", line, f)
			}
			total++
		}
	}
	if total != writers*lines {
		t.Errorf("%d lines, want %d", total, writers*lines)
	}
}

// TestDupTo: writes to the duplicated descriptor land in the current log
// file, and in the new one after Reopen and DupTo.
func TestDupTo(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bal.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A descriptor number of our own to play the part of stderr.
	spare, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer spare.Close()
	fd := int(spare.Fd())
	if err := l.DupTo(fd); err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.Write(fd, []byte("panic: one\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := l.DupTo(fd); err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.Write(fd, []byte("panic: two\n")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path + ".1"); string(got) != "panic: one\n" {
		t.Errorf("rotated %q", got)
	}
	if got, _ := os.ReadFile(path); string(got) != "panic: two\n" {
		t.Errorf("current %q", got)
	}
	l.Close()
	if err := l.DupTo(fd); !errors.Is(err, os.ErrClosed) {
		t.Errorf("DupTo after Close: %v", err)
	}
}
