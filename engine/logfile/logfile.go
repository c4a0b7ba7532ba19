package logfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// Mode is the permission a new log file is created with (before the umask).
const Mode = 0o640

// ErrUnsafe: the path is a symlink, a FIFO, a directory, a hard link or
// anything else than a plain file of its own; bal refuses to write to it.
var ErrUnsafe = errors.New("unsafe log file")

// File is an append-only log file that can be reopened.
type File struct {
	path string

	mu     sync.Mutex
	f      *os.File
	closed bool
}

var _ io.WriteCloser = (*File)(nil)

// Open opens (creating it when missing) the log file at path for appending.
func Open(path string) (*File, error) {
	f, err := open(path)
	if err != nil {
		return nil, err
	}
	return &File{path: path, f: f}, nil
}

// open opens path with O_NOFOLLOW (a symlink fails) and O_NONBLOCK (a FIFO
// cannot block the open), then refuses anything but a regular file with a
// single link.
func open(path string) (*os.File, error) {
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_APPEND|syscall.O_CREAT|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, Mode)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.EMLINK) {
			return nil, fmt.Errorf("%w: %s is a symlink", ErrUnsafe, path)
		}
		if errors.Is(err, syscall.ENXIO) { // a FIFO without reader, a socket, a device
			return nil, fmt.Errorf("%w: %s is not a regular file", ErrUnsafe, path)
		}
		return nil, fmt.Errorf("open log file %s: %w", path, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("stat log file %s: %w", path, err)
	}
	switch {
	case st.Mode&syscall.S_IFMT != syscall.S_IFREG:
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrUnsafe, path)
	case st.Nlink > 1:
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("%w: %s has %d hard links", ErrUnsafe, path, st.Nlink)
	}
	// Writes to a regular file never block anyway; clear O_NONBLOCK so
	// the descriptor is an ordinary one.
	if err := syscall.SetNonblock(fd, false); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("log file %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Path is the file's path.
func (l *File) Path() string { return l.path }

// Write appends p. Each call is one write(2) on an O_APPEND descriptor, so
// lines from one Write are never interleaved with others.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, os.ErrClosed
	}
	return l.f.Write(p)
}

// Reopen opens the path again (creating a new file after a rotation renamed
// the old one) and switches writes to it. On failure the old file stays in
// use and the error says why.
func (l *File) Reopen() error {
	f, err := open(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = f.Close()
		return os.ErrClosed
	}
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Close closes the file; later writes fail with os.ErrClosed.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// DupTo makes descriptor fd (2, typically) another descriptor of the
// current file, so that what the process writes there — a Go runtime crash
// report — lands in the log too. Call it again after Reopen.
func (l *File) DupTo(fd int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return os.ErrClosed
	}
	raw, err := l.f.SyscallConn()
	if err != nil {
		return err
	}
	var derr error
	if err := raw.Control(func(src uintptr) { derr = dup2(int(src), fd) }); err != nil {
		return err
	}
	if derr != nil {
		return fmt.Errorf("dup log file onto fd %d: %w", fd, derr)
	}
	return nil
}
