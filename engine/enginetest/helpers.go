package enginetest

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Backend is a loopback TCP server running handle for every connection.
type Backend struct {
	Addr netip.AddrPort
	ln   *net.TCPListener
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   map[*net.TCPConn]struct{}
}

// NewBackend starts a backend on 127.0.0.1 (or ::1 when network is "tcp6");
// t.Cleanup closes it and every connection, and waits for the handlers.
func NewBackend(t testing.TB, handle func(c *net.TCPConn)) *Backend {
	t.Helper()
	return newBackendOn(t, "127.0.0.1:0", handle)
}

func newBackendOn(t testing.TB, addr string, handle func(c *net.TCPConn)) *Backend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("backend listen: %v", err)
	}
	b := &Backend{ln: ln.(*net.TCPListener), cs: map[*net.TCPConn]struct{}{}}
	b.Addr = ln.Addr().(*net.TCPAddr).AddrPort()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := b.ln.AcceptTCP()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.cs[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				handle(c)
				c.Close()
				b.mu.Lock()
				delete(b.cs, c)
				b.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(b.Close)
	return b
}

// Close stops the backend and closes its connections.
func (b *Backend) Close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.cs {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// Echo copies everything back until EOF, then closes.
func Echo(c *net.TCPConn) { _, _ = io.Copy(c, c) }

// DeadAddr returns a loopback address where nothing listens (connects are
// refused).
func DeadAddr(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return a
}

// Blackhole returns a loopback address whose connects hang until they time
// out: a socket listening with backlog 0 whose single queue slot is taken by
// a connection nobody accepts, so further SYNs are dropped.
func Blackhole(t testing.TB) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))
	filler, err := net.DialTimeout("tcp", addr.String(), time.Second)
	if err != nil {
		syscall.Close(fd)
		t.Fatalf("blackhole filler: %v", err)
	}
	t.Cleanup(func() {
		filler.Close()
		syscall.Close(fd)
	})
	return addr
}

// Stream is a deterministic pseudo-random byte stream of a given length,
// generated in place so that large transfers need no large buffers.
type Stream struct {
	rng  *rand.ChaCha8
	left int64
}

// NewStream returns n bytes of a stream identified by seed.
func NewStream(seed uint64, n int64) *Stream {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return &Stream{rng: rand.NewChaCha8(s), left: n}
}

// Read fills p with the next bytes of the stream.
func (s *Stream) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	_, _ = s.rng.Read(p)
	s.left -= int64(len(p))
	return len(p), nil
}

// StreamSum returns the SHA-256 of the stream (seed, n).
func StreamSum(seed uint64, n int64) [32]byte {
	h := sha256.New()
	_, _ = io.CopyBuffer(h, NewStream(seed, n), make([]byte, 64<<10))
	return sum(h)
}

func sum(h hash.Hash) (out [32]byte) {
	copy(out[:], h.Sum(nil))
	return out
}

// ReadAllSum reads r to EOF and returns the SHA-256 and length.
func ReadAllSum(r io.Reader) ([32]byte, int64, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, r, make([]byte, 64<<10))
	return sum(h), n, err
}

// isReset reports whether err means the peer reset the connection.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
