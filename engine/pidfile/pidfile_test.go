package pidfile

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as a long-lived "bal" process: a child
// started with PIDFILE_TEST_SLEEP runs the same executable as the test.
func TestMain(m *testing.M) {
	if os.Getenv("PIDFILE_TEST_EXIT") != "" {
		os.Exit(0)
	}
	if path := os.Getenv("PIDFILE_TEST_HOLD"); path != "" {
		if _, err := Acquire(path); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ok")
		time.Sleep(30 * time.Second)
		os.Exit(0)
	}
	if os.Getenv("PIDFILE_TEST_SLEEP") != "" {
		time.Sleep(30 * time.Second)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func startChild(t *testing.T, name string, args ...string) int {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "PIDFILE_TEST_SLEEP=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

// startHolder runs this test binary as a bal that acquires path and holds
// it; it returns the child once the file is in place.
func startHolder(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "PIDFILE_TEST_HOLD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ok\n" {
		t.Fatalf("holder: %q", line)
	}
	return cmd
}

func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAcquire(t *testing.T) {
	self, _ := os.Executable()
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		wantErr error
	}{
		{"no file", func(*testing.T, string) {}, nil},
		{"dead pid", func(t *testing.T, p string) { write(t, p, strconv.Itoa(deadPID(t))+"\n") }, nil},
		{"garbage", func(t *testing.T, p string) { write(t, p, "not a pid") }, nil},
		{"live pid that is not bal", func(t *testing.T, p string) {
			write(t, p, strconv.Itoa(startChild(t, "sleep", "30")))
		}, nil},
		{"live bal holding the file", func(t *testing.T, p string) { startHolder(t, p) }, ErrRunning},
		{"live bal that does not hold the file (PID reused)", func(t *testing.T, p string) {
			write(t, p, strconv.Itoa(startChild(t, self)))
		}, nil},
		{"symlink", func(t *testing.T, p string) {
			target := filepath.Join(filepath.Dir(p), "target")
			write(t, target, "precious")
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsafe},
		{"directory", func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsafe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bal.pid")
			tt.prepare(t, path)
			f, err := Acquire(path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Acquire = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Acquire: %v", err)
			}
			fi, err := os.Lstat(path)
			if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
				t.Fatalf("pid file %v, %v; want a regular 0644 file", fi.Mode(), err)
			}
			if pid, err := Read(path); err != nil || pid != os.Getpid() {
				t.Fatalf("Read = %d, %v; want our pid %d", pid, err, os.Getpid())
			}
			if got, err := Running(path); err != nil || got != os.Getpid() {
				t.Fatalf("Running = %d, %v", got, err)
			}
			if err := f.Remove(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Fatalf("pid file still there after Remove: %v", err)
			}
		})
	}
}

func TestSymlinkTargetUntouched(t *testing.T) {
	dir := t.TempDir()
	target, path := filepath.Join(dir, "target"), filepath.Join(dir, "bal.pid")
	write(t, target, "precious")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(path); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("Acquire through a symlink = %v, want ErrUnsafe", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Fatalf("symlink target changed to %q", b)
	}
}

func TestHardLinkNotWrittenThrough(t *testing.T) {
	dir := t.TempDir()
	other, path := filepath.Join(dir, "other"), filepath.Join(dir, "bal.pid")
	stale := strconv.Itoa(deadPID(t))
	write(t, other, stale)
	if err := os.Link(other, path); err != nil {
		t.Fatal(err)
	}
	f, err := Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Remove()
	if b, _ := os.ReadFile(other); string(b) != stale {
		t.Fatalf("hard-linked file changed to %q", b)
	}
}

func TestRemoveLeavesForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bal.pid")
	f, err := Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, "12345")
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal("Remove deleted a pid file that names another process")
	}
}

func TestRunning(t *testing.T) {
	dir := t.TempDir()
	if _, err := Running(filepath.Join(dir, "missing")); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("missing file: %v", err)
	}
	p := filepath.Join(dir, "dead")
	write(t, p, strconv.Itoa(deadPID(t)))
	if _, err := Running(p); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("dead pid: %v", err)
	}
}

// TestZombieIsNotRunning: a bal that exited but was not collected yet (a
// zombie) does not hold the pid file. The child runs this test binary, so it
// counts as "bal" by name.
func TestZombieIsNotRunning(t *testing.T) {
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "PIDFILE_TEST_EXIT=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(5 * time.Second); !isZombie(pid); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("child never became a zombie")
		}
	}
	if Alive(pid) {
		t.Fatal("Alive(zombie) = true")
	}
	path := filepath.Join(t.TempDir(), "bal.pid")
	write(t, path, strconv.Itoa(pid))
	if _, err := Running(path); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Running with a zombie's pid: %v", err)
	}
	f, err := Acquire(path)
	if err != nil {
		t.Fatalf("Acquire over a zombie's pid file: %v", err)
	}
	f.Remove()
}

// TestLockFollowsTheProcess: the holder's pid file is running while it
// lives, and stale the moment it is killed (the kernel drops the lock), even
// if its PID were reused.
func TestLockFollowsTheProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bal.pid")
	holder := startHolder(t, path)
	if pid, err := Running(path); err != nil || pid != holder.Process.Pid {
		t.Fatalf("Running = %d, %v; want the holder %d", pid, err, holder.Process.Pid)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("pid file mode %v, %v", fi.Mode(), err)
	}
	_ = holder.Process.Kill()
	_ = holder.Wait()
	if _, err := Running(path); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Running after the holder died = %v", err)
	}
	// A pid file naming a live bal that does not hold it: not running.
	self, _ := os.Executable()
	other := startChild(t, self)
	write(t, path, strconv.Itoa(other)+"\n")
	if _, err := Running(path); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "does not hold") {
		t.Fatalf("Running with a reused PID = %v", err)
	}
	f, err := Acquire(path)
	if err != nil {
		t.Fatalf("Acquire over a reused PID: %v", err)
	}
	if pid, err := Running(path); err != nil || pid != os.Getpid() {
		t.Fatalf("Running after Acquire = %d, %v", pid, err)
	}
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	// No temporary file is left behind.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 0 {
		t.Fatalf("left in the directory: %v", ents)
	}
}

// TestFIFONeverBlocks: a FIFO at the pid file's path is refused at once.
func TestFIFONeverBlocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bal.pid")
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Acquire(path); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnsafe) {
			t.Fatalf("Acquire on a FIFO = %v, want ErrUnsafe", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Acquire blocked on a FIFO")
	}
	if _, err := Running(path); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Running on a FIFO = %v", err)
	}
}
