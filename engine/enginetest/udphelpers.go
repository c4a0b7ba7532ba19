package enginetest

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
)

// UDPBackend is a loopback UDP server running handle for every datagram it
// receives, in order, on one goroutine.
type UDPBackend struct {
	Addr netip.AddrPort
	conn *net.UDPConn
	done chan struct{}
	got  atomic.Int64
}

// UDPHandler answers one datagram p from a peer (a flow's socket).
type UDPHandler func(b *UDPBackend, from netip.AddrPort, p []byte)

// NewUDPBackend starts a UDP backend on 127.0.0.1; t.Cleanup stops it.
func NewUDPBackend(t testing.TB, handle UDPHandler) *UDPBackend {
	t.Helper()
	return newUDPBackendOn(t, "127.0.0.1:0", handle)
}

func newUDPBackendOn(t testing.TB, addr string, handle UDPHandler) *UDPBackend {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatalf("udp backend listen: %v", err)
	}
	b := &UDPBackend{Addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), conn: c, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		buf := make([]byte, engine.DatagramBuffer)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			b.got.Add(1)
			if handle != nil {
				handle(b, from, buf[:n])
			}
		}
	}()
	t.Cleanup(b.Close)
	return b
}

// Reply sends p to a peer from the backend's address.
func (b *UDPBackend) Reply(to netip.AddrPort, p []byte) {
	_, _ = b.conn.WriteToUDPAddrPort(p, to)
}

// Received is the number of datagrams the backend has read.
func (b *UDPBackend) Received() int64 { return b.got.Load() }

// Close stops the backend.
func (b *UDPBackend) Close() {
	b.conn.Close()
	<-b.done
}

// UDPEcho sends every datagram back unchanged.
func UDPEcho(b *UDPBackend, from netip.AddrPort, p []byte) { b.Reply(from, p) }

// UDPTagged answers every datagram with tag followed by the datagram.
func UDPTagged(tag string) UDPHandler {
	return func(b *UDPBackend, from netip.AddrPort, p []byte) {
		b.Reply(from, append([]byte(tag), p...))
	}
}

// SilentUDP returns the address of a UDP socket that never reads, with a
// small receive buffer: everything sent to it beyond that is dropped by the
// kernel.
func SilentUDP(t testing.TB) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 10)
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// DeadUDP returns a loopback UDP address where nothing listens: datagrams
// sent there get ICMP port unreachable.
func DeadUDP(t testing.TB) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	a := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return a
}

// DialUDP returns a UDP socket connected to addr (it only accepts datagrams
// from addr); closed when the test ends.
func DialUDP(t testing.TB, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatalf("dial udp %v: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Exchange sends msg on c and returns the next datagram c receives, or an
// error after within.
func Exchange(c *net.UDPConn, msg []byte, within time.Duration) ([]byte, error) {
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	return ReadDatagram(c, within)
}

// ReadDatagram returns the next datagram c receives, or an error after within.
func ReadDatagram(c *net.UDPConn, within time.Duration) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, engine.DatagramBuffer)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// openFDs counts this process's descriptors (-1 where /proc/self/fd is
// missing).
func openFDs() int {
	if runtime.GOOS != "linux" {
		return -1
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1 // ReadDir's own descriptor
}

// waitFor polls cond every 10 ms until it holds or within passes.
func waitFor(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// replies counts FlowObserver calls of a Policy (see Replied).
type replies struct {
	mu  sync.Mutex
	ids map[uint64]int
}

// Replied implements engine.FlowObserver: it records the flow's first
// reply.
func (p *Policy) Replied(c *engine.ConnInfo) {
	p.replies.mu.Lock()
	if p.replies.ids == nil {
		p.replies.ids = map[uint64]int{}
	}
	p.replies.ids[c.ID]++
	p.replies.mu.Unlock()
}

// RepliedFlows returns how many times Replied was called for each flow ID.
func (p *Policy) RepliedFlows() map[uint64]int {
	p.replies.mu.Lock()
	defer p.replies.mu.Unlock()
	out := make(map[uint64]int, len(p.replies.ids))
	for k, v := range p.replies.ids {
		out[k] = v
	}
	return out
}

var _ engine.FlowObserver = (*Policy)(nil)
