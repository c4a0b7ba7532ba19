package adminstate

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/pool"
)

// FileName is the state file's name in $BAL_HOME.
const FileName = "state.json"

// Version is the format version this package writes and reads.
const Version = 1

// MaxSize bounds the state file (a state per backend of thousands of
// backends is far below).
const MaxSize = 4 << 20

// Mode is the state file's permission.
const Mode = 0o600

// Sentinel errors.
var (
	// ErrUnsafe: the path is a symlink or not a regular file; it is never
	// read through nor replaced.
	ErrUnsafe = errors.New("unsafe state file")
	// ErrCorrupt: the file is not a valid state document (truncated,
	// garbage, an unknown version, a bad entry).
	ErrCorrupt = errors.New("corrupt state file")
)

// File is the state file's document.
type File struct {
	Version  int     `json:"version"`
	Backends []Entry `json:"backends"`
}

// Entry is one backend not in the ready state.
type Entry struct {
	Service string `json:"service"`
	Pool    string `json:"pool"`    // the route's name, or "default"
	Backend string `json:"backend"` // "host:port" as configured
	State   string `json:"state"`   // drain | maint
}

// Parse reads a state document: strict JSON (one object, no unknown
// field), version 1, every entry with a service, a pool, a backend
// "host:port" and the state drain or maint. Errors wrap ErrCorrupt.
func Parse(data []byte) (File, error) {
	var f File
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return File{}, fmt.Errorf("%w: data after the document", ErrCorrupt)
	}
	if f.Version != Version {
		return File{}, fmt.Errorf("%w: version %d, want %d", ErrCorrupt, f.Version, Version)
	}
	for i, e := range f.Backends {
		switch {
		case e.Service == "" || e.Pool == "":
			return File{}, fmt.Errorf("%w: backends[%d]: service and pool are required", ErrCorrupt, i)
		case e.State != pool.Drain.String() && e.State != pool.Maint.String():
			return File{}, fmt.Errorf("%w: backends[%d]: state %q is not drain or maint", ErrCorrupt, i, e.State)
		}
		if _, err := BackendKey(e.Backend); err != nil {
			return File{}, fmt.Errorf("%w: backends[%d]: %w", ErrCorrupt, i, err)
		}
	}
	if f.Backends == nil {
		f.Backends = []Entry{}
	}
	return f, nil
}

// Load reads the state file at path. A missing file is an empty File and
// no error. The file is opened without following a symlink; a symlink or a
// non-regular file is ErrUnsafe, a file over MaxSize or not valid is
// ErrCorrupt.
func Load(path string) (File, error) {
	empty := File{Version: Version, Backends: []Entry{}}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return empty, nil
	}
	if err != nil {
		return empty, fmt.Errorf("state file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return empty, fmt.Errorf("%w: %s is not a regular file (%s)", ErrUnsafe, path, fi.Mode().Type())
	}
	// O_NONBLOCK: a FIFO swapped in since the Lstat cannot block the open.
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return empty, fmt.Errorf("%w: %s is a symlink", ErrUnsafe, path)
		}
		return empty, fmt.Errorf("state file %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return empty, fmt.Errorf("%w: %s is not a regular file", ErrUnsafe, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return empty, fmt.Errorf("state file %s: %w", path, err)
	}
	if len(data) > MaxSize {
		return empty, fmt.Errorf("%w: %s is over %d bytes", ErrCorrupt, path, MaxSize)
	}
	sf, err := Parse(data)
	if err != nil {
		return empty, fmt.Errorf("state file %s: %w", path, err)
	}
	return sf, nil
}

// Save writes f to path atomically: a temporary file in the same directory
// (created with O_EXCL|O_NOFOLLOW, mode 0600), written, fsynced and renamed
// over path, then the directory fsynced. A path that exists and is not a
// regular file (a symlink included) is ErrUnsafe and left alone.
func Save(path string, f File) error {
	f.Version = Version
	if f.Backends == nil {
		f.Backends = []Entry{}
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	data = append(data, '\n')
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file (%s); not replaced", ErrUnsafe, path, fi.Mode().Type())
	}
	dir := filepath.Dir(path)
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	tmp := filepath.Join(dir, "."+filepath.Base(path)+"."+strconv.Itoa(os.Getpid())+"."+hex.EncodeToString(suffix[:]))
	fd, err := syscall.Open(tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, Mode)
	if err != nil {
		return fmt.Errorf("state file %s: create a temporary file in %s: %w", path, dir, err)
	}
	w := os.NewFile(uintptr(fd), tmp)
	fail := func(err error) error {
		w.Close()
		os.Remove(tmp)
		return fmt.Errorf("state file %s: %w", path, err)
	}
	if err := w.Chmod(Mode); err != nil { // exactly, whatever the umask
		return fail(err)
	}
	if _, err := w.Write(data); err != nil {
		return fail(err)
	}
	if err := w.Sync(); err != nil {
		return fail(err)
	}
	if err := w.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("state file %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("state file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// BackendKey returns the identity (config.Backend.Key) of a backend named
// "host:port" the way the config writes it, or as an operator types it:
// "[::1]:80" and "::1:80" (the last colon before the port) are the same
// backend, host names are case-insensitive.
func BackendKey(s string) (string, error) {
	b, err := ParseBackend(s)
	if err != nil {
		return "", err
	}
	return b.Key(), nil
}

// ParseBackend reads "host:port" (see BackendKey) into a config.Backend.
func ParseBackend(s string) (config.Backend, error) {
	bad := func(why string) (config.Backend, error) {
		return config.Backend{}, fmt.Errorf("backend %q: %s (write host:port, as in the config: 10.0.0.1:8080, [::1]:8080, app.internal:8080)", clip(s), why)
	}
	if s == "" {
		return bad("empty")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// An IPv6 literal without brackets: the port follows the last colon.
		i := strings.LastIndexByte(s, ':')
		if i <= 0 {
			return bad("no port")
		}
		if _, perr := netip.ParseAddr(s[:i]); perr != nil {
			return bad("not host:port")
		}
		host, port = s[:i], s[i+1:]
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return bad("the port must be a number from 1 to 65535")
	}
	if host == "" || strings.ContainsAny(host, " \t\r\n[]/") {
		return bad("not a host name or IP address")
	}
	return config.Backend{Host: host, Port: n, Weight: 1}, nil
}

func clip(s string) string {
	if r := []rune(s); len(r) > 60 {
		return string(r[:60]) + "…"
	}
	return s
}
