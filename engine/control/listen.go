package control

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Sentinel errors.
var (
	// ErrInUse: a live process answers on the socket (another instance).
	ErrInUse = errors.New("control socket in use by another process")
	// ErrUnsafe: something that is not a socket sits at the socket's path.
	ErrUnsafe = errors.New("unsafe control socket path")
	// ErrPathTooLong: the path does not fit in a unix socket address.
	ErrPathTooLong = errors.New("control socket path too long")
)

// SocketMode is the control socket's permission.
const SocketMode = 0o600

// maxPathLen is the longest usable sun_path: 108 bytes on Linux and 104 on
// the BSDs, both with a terminating NUL; the smaller one is used everywhere.
const maxPathLen = 103

// Listener is the control socket's listener. Accept refuses peers running
// as another user (root excepted).
type Listener struct {
	ln   *net.UnixListener
	path string
	fi   os.FileInfo // the socket file we created, to remove only our own
	log  *slog.Logger

	closeOnce sync.Once
	closeErr  error
}

var _ net.Listener = (*Listener)(nil)

// Listen creates the control socket at path, mode 0600. A stale socket file
// (nobody answering) is replaced; a live one fails with ErrInUse; anything
// that is not a socket fails with ErrUnsafe and is left alone. log (may be
// nil) receives a line per refused peer.
func Listen(path string, log *slog.Logger) (*Listener, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Dir(path)
	// The socket is bound under a temporary name, set to 0600, then
	// renamed into place: there is no moment where path is wider.
	tmp := filepath.Join(dir, ".bal.sock."+strconv.Itoa(os.Getpid()))
	if n := max(len(path), len(tmp)); n > maxPathLen {
		return nil, fmt.Errorf("%w: %s is %d bytes, at most %d fit (use a shorter BAL_HOME)", ErrPathTooLong, path, n, maxPathLen)
	}
	if err := clearStale(path); err != nil {
		return nil, err
	}
	_ = os.Remove(tmp) // left by a crashed process that had our PID
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*Listener, error) {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, SocketMode); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &Listener{ln: ln, path: path, fi: fi, log: log}, nil
}

// clearStale removes a socket file nobody answers on. A live socket is
// ErrInUse, a non-socket ErrUnsafe.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%w: %s is not a socket (%s); remove it if it is not needed", ErrUnsafe, path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("%w: %s", ErrInUse, path)
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, fs.ErrNotExist):
		// Stale: its process is gone. Unlink the name.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale control socket %s: %w", path, err)
		}
		return nil
	default:
		// EACCES (another user's socket), a timeout (a live but stuck
		// process): not ours to replace.
		return fmt.Errorf("%w: %s: %w", ErrInUse, path, err)
	}
}

// Path is the socket's path.
func (l *Listener) Path() string { return l.path }

// Addr is the listener's address.
func (l *Listener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Accept returns the next connection from a peer of this user (or root);
// others are closed at once and logged.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		switch {
		case errors.Is(err, errors.ErrUnsupported):
			return c, nil // the socket's mode is the only guard here
		case err != nil:
			l.log.Warn("control: cannot read peer credentials; closing", "error", err.Error())
		case uid == os.Geteuid() || uid == 0:
			return c, nil
		default:
			l.log.Warn("control: refusing a peer of another user", "uid", uid)
		}
		_ = c.Close()
	}
}

// Close stops listening and removes the socket file if it is still ours.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.closeErr = l.ln.Close()
		if fi, err := os.Lstat(l.path); err == nil && os.SameFile(fi, l.fi) {
			_ = os.Remove(l.path)
		}
	})
	return l.closeErr
}
