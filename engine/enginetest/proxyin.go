package enginetest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	libproxy "github.com/pires/go-proxyproto"

	"github.com/bal-lb/bal/engine"
)

// proxyInTunables: a service that reads a PROXY header from loopback peers.
func proxyInTunables(in engine.ProxyIn, out engine.ProxyProtocol) engine.Tunables {
	return engine.Tunables{
		ConnectTimeout: 2 * time.Second, IdleTimeout: time.Minute, ProxyProtocol: out,
		ProxyIn: in, ProxyHeaderTimeout: 5 * time.Second, Trusted: loopback,
	}
}

// outHeader is the PROXY header a backend received.
type outHeader struct {
	src, dst netip.AddrPort
	err      error
}

// headerBackend reads the outbound PROXY header of each connection, reports
// it, then echoes what follows.
func headerBackend(t *testing.T) (*Backend, <-chan outHeader) {
	got := make(chan outHeader, 4)
	b := NewBackend(t, func(c *net.TCPConn) {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		var oh outHeader
		h, err := libproxy.Read(r)
		if oh.err = err; err == nil {
			src, dst, ok := h.TCPAddrs()
			if !ok {
				oh.err = fmt.Errorf("header %+v has no TCP addresses", h)
			} else {
				oh.src, oh.dst = src.AddrPort(), dst.AddrPort()
			}
		}
		got <- oh
		_ = c.SetReadDeadline(time.Time{})
		_, _ = io.Copy(c, r)
	})
	return b, got
}

// testProxyIn: a trusted peer's v1 or v2 header makes its source the client
// (ConnInfo.Client, the outbound header in v1 and v2) and its destination
// Local; the TCP peer stays in Peer; bytes after the header are payload.
func (s *suite) testProxyIn(t *testing.T) {
	src6 := netip.MustParseAddrPort("[2001:db8::7]:5555")
	dst6 := netip.MustParseAddrPort("[2001:db8::1]:443")
	for _, tc := range []struct {
		name     string
		in       engine.ProxyIn
		version  byte
		out      engine.ProxyProtocol
		src, dst netip.AddrPort
	}{
		{"v1-in/v1-out", engine.ProxyInV1, 1, engine.ProxyV1, headerSource, headerDest},
		{"v1-in/v2-out", engine.ProxyInV1, 1, engine.ProxyV2, headerSource, headerDest},
		{"v2-in/v1-out", engine.ProxyInV2, 2, engine.ProxyV1, headerSource, headerDest},
		{"v2-in/v2-out", engine.ProxyInV2, 2, engine.ProxyV2, headerSource, headerDest},
		{"any-in-v1/v2-out-IPv6", engine.ProxyInAny, 1, engine.ProxyV2, src6, dst6},
		{"any-in-v2/v1-out-IPv6", engine.ProxyInAny, 2, engine.ProxyV1, src6, dst6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noFDLeak(t)
			b, got := headerBackend(t)
			h := s.start(t, NewPolicy(b.Addr), proxyInTunables(tc.in, tc.out), "")
			c := h.dial()
			payload := []byte("payload right behind the header")
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(append(proxyHeader(t, tc.version, tc.src, tc.dst), payload...)); err != nil {
				t.Fatal(err)
			}
			back := make([]byte, len(payload))
			if _, err := io.ReadFull(c, back); err != nil || string(back) != string(payload) {
				t.Fatalf("echo of the payload after the header: %q, %v", back, err)
			}
			oh := <-got
			if oh.err != nil || oh.src != tc.src || oh.dst != tc.dst {
				t.Fatalf("outbound header %v → %v (%v), want %v → %v", oh.src, oh.dst, oh.err, tc.src, tc.dst)
			}
			c.Close()
			cl := h.waitClosed()
			peer := c.LocalAddr().(*net.TCPAddr).AddrPort()
			if cl.Conn.Client != tc.src || cl.Conn.Local != tc.dst || cl.Conn.Peer != peer {
				t.Fatalf("ConnInfo Client %v Local %v Peer %v, want %v, %v, %v", cl.Conn.Client, cl.Conn.Local, cl.Conn.Peer, tc.src, tc.dst, peer)
			}
			if cl.Info.Reason != engine.CloseDone || cl.Info.BytesIn != int64(len(payload)) {
				t.Fatalf("Closed %+v, want done with %d bytes in (the header is not payload)", cl.Info, len(payload))
			}
		})
	}
}

// testProxyInLocal: v2 LOCAL and v1 UNKNOWN keep the TCP peer as the
// client, and the outbound header says so.
func (s *suite) testProxyInLocal(t *testing.T) {
	local2, err := (&libproxy.Header{Version: 2, Command: libproxy.LOCAL, TransportProtocol: libproxy.UNSPEC}).Format()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		hdr  []byte
	}{{"v2-LOCAL", local2}, {"v1-UNKNOWN", []byte("PROXY UNKNOWN\r\n")}} {
		t.Run(tc.name, func(t *testing.T) {
			noFDLeak(t)
			b, got := headerBackend(t)
			h := s.start(t, NewPolicy(b.Addr), proxyInTunables(engine.ProxyInAny, engine.ProxyV2), "")
			c := h.dial()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(append(tc.hdr, 'x')); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Fatalf("echo after a %s header: %v", tc.name, err)
			}
			peer := c.LocalAddr().(*net.TCPAddr).AddrPort()
			if oh := <-got; oh.err != nil || oh.src != peer || oh.dst != h.eng.Addr() {
				t.Fatalf("outbound header %v → %v (%v), want the peer %v → %v", oh.src, oh.dst, oh.err, peer, h.eng.Addr())
			}
			c.Close()
			if cl := h.waitClosed(); cl.Conn.Client != peer || cl.Conn.Peer != peer || cl.Conn.Local != h.eng.Addr() {
				t.Fatalf("ConnInfo Client %v Peer %v Local %v, want the TCP peer %v and %v", cl.Conn.Client, cl.Conn.Peer, cl.Conn.Local, peer, h.eng.Addr())
			}
		})
	}
}

// expectProxyRefused checks that c is reset within within (the reset may
// also meet the connect) and that the policy counted one proxy_header
// refusal and nothing else happened.
func expectProxyRefused(t *testing.T, h *harness, c *net.TCPConn, within time.Duration, accepts *atomic.Int64) {
	t.Helper()
	if err := waitEnd(t, c, within); !isReset(err) {
		t.Fatalf("client got %v, want a reset", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for h.pol.RejectedBy(engine.RejectProxyHeader) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if r, p := h.pol.Rejected(), h.pol.RejectedBy(engine.RejectProxyHeader); r != 1 || p != 1 {
		t.Fatalf("%d refusals counted (%d proxy_header), want 1 proxy_header", r, p)
	}
	if a, d := h.pol.Admitted(), h.pol.Dials(); a != 0 || len(d) != 0 || accepts.Load() != 0 {
		t.Fatalf("refused connection: %d admitted, dials %+v, %d backend accepts; want none", a, d, accepts.Load())
	}
}

// acceptCounter is a backend that only counts its connections.
func acceptCounter(t *testing.T) (*Backend, *atomic.Int64) {
	var n atomic.Int64
	return NewBackend(t, func(c *net.TCPConn) { n.Add(1); Echo(c) }), &n
}

// testProxyInUntrusted: a peer outside Trusted is reset at once, before
// anything is read from it: it sends nothing, and the header timeout is
// far off.
func (s *suite) testProxyInUntrusted(t *testing.T) {
	noFDLeak(t)
	b, accepts := acceptCounter(t)
	tun := proxyInTunables(engine.ProxyInAny, engine.ProxyOff)
	tun.Trusted, tun.ProxyHeaderTimeout = prefixSet{netip.MustParsePrefix("10.0.0.0/8")}, time.Minute
	h := s.start(t, NewPolicy(b.Addr), tun, "")
	nc, err := net.DialTimeout("tcp", h.eng.Addr().String(), 2*time.Second)
	if err != nil {
		if !isReset(err) {
			t.Fatalf("dial: %v", err)
		}
		return
	}
	c := nc.(*net.TCPConn)
	defer c.Close()
	expectProxyRefused(t, h, c, 10*time.Second, accepts)
}

// testProxyInMalformed: a header that does not parse, is of a version the
// service does not take, or ends early is reset and counted.
func (s *suite) testProxyInMalformed(t *testing.T) {
	v2 := proxyHeader(t, 2, headerSource, headerDest)
	for _, tc := range []struct {
		name string
		in   engine.ProxyIn
		send []byte
		fin  bool // half-close after sending
	}{
		{"no-header", engine.ProxyInAny, []byte("GET / HTTP/1.1\r\n\r\n"), false},
		{"bad-v1", engine.ProxyInAny, []byte("PROXY TCP4 203.0.113.7 nonsense\r\n"), false},
		{"bad-v2-family", engine.ProxyInAny, append(append(v2[:13:13], 0x71), v2[14:]...), false},
		{"v1-on-v2-service", engine.ProxyInV2, proxyHeader(t, 1, headerSource, headerDest), false},
		{"v2-on-v1-service", engine.ProxyInV1, v2, false},
		{"eof-mid-header", engine.ProxyInAny, []byte("PROXY TCP4 203.0."), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noFDLeak(t)
			b, accepts := acceptCounter(t)
			h := s.start(t, NewPolicy(b.Addr), proxyInTunables(tc.in, engine.ProxyOff), "")
			c := h.dial()
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.fin {
				_ = c.CloseWrite()
			}
			expectProxyRefused(t, h, c, 10*time.Second, accepts)
		})
	}
}

// testProxyInSilent: a peer that sends no header, or part of one, is reset
// once the header timeout passes: not before, and within a second after.
func (s *suite) testProxyInSilent(t *testing.T) {
	const timeout = 500 * time.Millisecond
	for _, tc := range []struct {
		name string
		send []byte
	}{{"nothing", nil}, {"partial", []byte("PROXY TCP4 ")}} {
		t.Run(tc.name, func(t *testing.T) {
			noFDLeak(t)
			b, accepts := acceptCounter(t)
			tun := proxyInTunables(engine.ProxyInAny, engine.ProxyOff)
			tun.ProxyHeaderTimeout = timeout
			h := s.start(t, NewPolicy(b.Addr), tun, "")
			began := time.Now()
			c := h.dial()
			if len(tc.send) > 0 {
				if _, err := c.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			}
			expectProxyRefused(t, h, c, timeout+time.Second, accepts)
			if el := time.Since(began); el < timeout*3/4 {
				t.Fatalf("reset after %v, before the header timeout %v", el, timeout)
			}
		})
	}
}
