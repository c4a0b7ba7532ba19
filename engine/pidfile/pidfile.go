// Package pidfile manages bal.pid: created with O_EXCL and never followed
// through a symlink or written through a hard link; a stale file (dead PID,
// or a live PID that is not bal) is replaced.
package pidfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Sentinel errors.
var (
	// ErrRunning: the file names a live bal process.
	ErrRunning = errors.New("bal is already running")
	// ErrNotRunning: no file, or it names no live bal process.
	ErrNotRunning = errors.New("bal is not running")
	// ErrUnsafe: the path is a symlink or not a regular file; bal refuses to touch it.
	ErrUnsafe = errors.New("unsafe pid file")
)

// File is a PID file this process owns.
type File struct {
	path string
	pid  int
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Acquire writes the current PID to path. It fails with ErrRunning (and the
// PID) if a live bal owns the file, and ErrUnsafe if path is a symlink or
// not a regular file. A stale file is removed first.
func Acquire(path string) (*File, error) {
	pid := os.Getpid()
	for range 3 {
		fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644)
		if err == nil {
			f := os.NewFile(uintptr(fd), path)
			_, werr := f.WriteString(strconv.Itoa(pid) + "\n")
			cerr := f.Close()
			if werr != nil || cerr != nil {
				_ = os.Remove(path)
				return nil, fmt.Errorf("write pid file %s: %w", path, errors.Join(werr, cerr))
			}
			return &File{path: path, pid: pid}, nil
		}
		if !errors.Is(err, syscall.EEXIST) {
			return nil, fmt.Errorf("create pid file %s: %w", path, err)
		}
		other, err := Read(path)
		switch {
		case errors.Is(err, ErrUnsafe):
			return nil, err
		case err == nil && other != pid && Alive(other) && IsBal(other):
			return nil, fmt.Errorf("%w (PID %d, pid file %s)", ErrRunning, other, path)
		}
		// Stale: a dead PID, a PID that is not bal, or garbage. Unlink
		// the name (never the target of a link) and try again.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove stale pid file %s: %w", path, err)
		}
	}
	return nil, fmt.Errorf("create pid file %s: it keeps reappearing", path)
}

// Remove deletes the file if it still names this process.
func (f *File) Remove() error {
	if pid, err := Read(f.path); err != nil || pid != f.pid {
		return nil
	}
	return os.Remove(f.path)
}

// Read returns the PID stored at path. A symlink or non-regular file is
// ErrUnsafe; a missing file wraps fs.ErrNotExist.
func Read(path string) (int, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%w: %s is not a regular file (%s)", ErrUnsafe, path, fi.Mode().Type())
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open pid file %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	buf := make([]byte, 32)
	n, _ := f.Read(buf)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q, not a PID", path, strings.TrimSpace(string(buf[:n])))
	}
	return pid, nil
}

// Running returns the PID of the live bal named by path, or an error
// wrapping ErrNotRunning (with the reason: no file, dead or foreign PID).
func Running(path string) (int, error) {
	pid, err := Read(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("%w (no pid file %s)", ErrNotRunning, path)
		}
		return 0, fmt.Errorf("%w: %w", ErrNotRunning, err)
	}
	if !Alive(pid) {
		return pid, fmt.Errorf("%w (stale pid file: PID %d is dead)", ErrNotRunning, pid)
	}
	if !IsBal(pid) {
		return pid, fmt.Errorf("%w (stale pid file: PID %d is not bal)", ErrNotRunning, pid)
	}
	return pid, nil
}

// Alive reports whether a process with this PID exists and has not exited:
// a zombie (exited, waiting for its parent to collect it) is not alive.
func Alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return (err == nil || errors.Is(err, syscall.EPERM)) && !isZombie(pid)
}

// IsBal reports whether the live process pid runs the same executable as
// this process or one named bal.
func IsBal(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	name, err := processName(pid)
	if err != nil {
		return false
	}
	self, _ := os.Executable()
	return name == filepath.Base(self) || name == "bal"
}
