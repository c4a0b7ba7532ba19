// Package pidfile manages bal.pid: created with O_EXCL and never followed
// through a symlink or written through a hard link; a stale file (dead PID,
// or a live PID that is not bal) is replaced.
//
// The owner holds an exclusive flock(2) on the file for as long as it runs
// (the kernel drops it when the process dies), and the file is complete and
// locked before its name appears. A pid file is live only while its lock is
// held: a PID that was reused by another process — another bal serving
// another BAL_HOME included — is never taken for the owner.
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

	errNotPID = errors.New("not a PID")
)

// File is a PID file this process owns (and holds locked).
type File struct {
	path string
	pid  int
	f    *os.File // holds the lock until Remove
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Acquire writes the current PID to path and keeps the file locked until
// Remove. It fails with ErrRunning (and the PID) if a live bal holds the
// file, and ErrUnsafe if path is a symlink or not a regular file. A stale
// file (not locked by anyone) is removed first; it is never written to.
func Acquire(path string) (*File, error) {
	pid := os.Getpid()
	// The file is written and locked under a temporary name, then linked
	// into place: nobody ever sees it empty or unlocked.
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"."+strconv.Itoa(pid))
	_ = os.Remove(tmp) // left by a crashed process that had our PID
	fd, err := syscall.Open(tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create pid file %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer os.Remove(tmp)
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock pid file %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil { // exactly, whatever the umask
		f.Close()
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	if _, err := f.WriteString(strconv.Itoa(pid) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("write pid file %s: %w", path, err)
	}
	for range 3 {
		err := os.Link(tmp, path)
		if err == nil {
			return &File{path: path, pid: pid, f: f}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			f.Close()
			return nil, fmt.Errorf("create pid file %s: %w", path, err)
		}
		other, err := inspect(path)
		switch {
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			f.Close()
			return nil, err
		case other.held:
			f.Close()
			return nil, fmt.Errorf("%w (PID %d, pid file %s)", ErrRunning, other.pid, path)
		}
		// Stale: nobody holds it. Unlink the name (never the target of a
		// link), unless it was replaced meanwhile, and try again.
		if other.fi != nil {
			if now, err := os.Lstat(path); err == nil && os.SameFile(now, other.fi) {
				if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
					f.Close()
					return nil, fmt.Errorf("remove stale pid file %s: %w", path, err)
				}
			}
		}
	}
	f.Close()
	return nil, fmt.Errorf("create pid file %s: it keeps reappearing", path)
}

// Remove deletes the file if it is still this process's (the same file,
// still naming this PID), and releases the lock.
func (f *File) Remove() error {
	defer f.f.Close()
	fi, err := os.Lstat(f.path)
	if err != nil {
		return nil
	}
	mine, err := f.f.Stat()
	if err != nil || !os.SameFile(fi, mine) {
		return nil
	}
	if pid, err := Read(f.path); err != nil || pid != f.pid {
		return nil
	}
	return os.Remove(f.path)
}

// state is what inspect found at a pid file's path.
type state struct {
	pid    int         // 0 when the content is not a PID
	badPID error       // why the content is not a PID
	held   bool        // a live process holds the lock
	fi     os.FileInfo // the file inspected
}

// inspect reads the PID at path and whether a live process holds the
// file's lock. The error is fs.ErrNotExist, ErrUnsafe or an open failure;
// content that is not a PID is reported in state.badPID.
func inspect(path string) (state, error) {
	var st state
	pid, err := Read(path)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrUnsafe):
		return st, err
	case errors.Is(err, errNotPID):
		st.badPID = err
	case err != nil:
		return st, err
	}
	st.pid = pid
	// O_NONBLOCK: a FIFO swapped in since Read cannot block the open.
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return st, fs.ErrNotExist
		}
		return st, fmt.Errorf("open pid file %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return st, fmt.Errorf("%w: %s is not a regular file", ErrUnsafe, path)
	}
	st.fi = fi
	lerr := syscall.Flock(fd, syscall.LOCK_SH|syscall.LOCK_NB)
	switch {
	case errors.Is(lerr, syscall.EWOULDBLOCK):
		st.held = true
	case lerr != nil:
		// flock is not supported here: a live bal of that PID counts.
		st.held = st.pid > 0 && Alive(st.pid) && IsBal(st.pid)
	}
	// Otherwise nobody holds it: we got the lock, and closing releases it.
	return st, nil
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
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open pid file %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	buf := make([]byte, 32)
	n, _ := f.Read(buf)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%w: pid file %s holds %q", errNotPID, path, strings.TrimSpace(string(buf[:n])))
	}
	return pid, nil
}

// Running returns the PID of the live bal that holds the file at path, or
// an error wrapping ErrNotRunning (with the reason: no file, a dead PID, a
// PID that is not bal, or a bal that does not hold this file — the PID was
// reused).
func Running(path string) (int, error) {
	st, err := inspect(path)
	pid := st.pid
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, fmt.Errorf("%w (no pid file %s)", ErrNotRunning, path)
	case err != nil:
		return 0, fmt.Errorf("%w: %w", ErrNotRunning, err)
	case st.held && st.badPID != nil:
		return 0, fmt.Errorf("%w: a live process holds %s but it %w", ErrNotRunning, path, st.badPID)
	case st.held:
		return pid, nil
	case st.badPID != nil:
		return 0, fmt.Errorf("%w: %w", ErrNotRunning, st.badPID)
	case !Alive(pid):
		return pid, fmt.Errorf("%w (stale pid file: PID %d is dead)", ErrNotRunning, pid)
	case !IsBal(pid):
		return pid, fmt.Errorf("%w (stale pid file: PID %d is not bal)", ErrNotRunning, pid)
	}
	return pid, fmt.Errorf("%w (stale pid file: PID %d is a bal that does not hold it — the PID was reused, or it serves another BAL_HOME)", ErrNotRunning, pid)
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
