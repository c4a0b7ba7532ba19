package enginetest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	libproxy "github.com/pires/go-proxyproto"

	"github.com/bal-lb/bal/engine"
)

// inspectTunables: a service that inspects the ClientHello.
var inspectTunables = engine.Tunables{ConnectTimeout: 2 * time.Second, IdleTimeout: time.Minute, Inspect: true, InspectTimeout: 5 * time.Second}

// namedBackend reads the first len(want) bytes of every connection, answers
// name+"\n" when they are want (name+"!\n" when not), then echoes. accepts
// counts its connections.
func namedBackend(t *testing.T, name string, want []byte, accepts *atomic.Int64) *Backend {
	t.Helper()
	return NewBackend(t, func(c *net.TCPConn) {
		if accepts != nil {
			accepts.Add(1)
		}
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		reply := name + "\n"
		if !bytes.Equal(got, want) {
			reply = name + "!\n"
		}
		if _, err := c.Write([]byte(reply)); err != nil {
			return
		}
		Echo(c)
	})
}

// sendFirst writes first to the engine and returns the backend's answer
// line (see namedBackend), "" when the connection ended first.
func sendFirst(t *testing.T, c net.Conn, first []byte) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(first); err != nil {
		t.Fatalf("write first bytes: %v", err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

// expectRouted checks the Closed record of a connection that was inspected
// and relayed to backend b.
func expectRouted(t *testing.T, cl Closed, result engine.InspectResult, sni string, b *Backend) {
	t.Helper()
	if cl.Conn.Hello.Result != result || cl.Conn.Hello.SNI != sni {
		t.Fatalf("Hello = %+v, want result %v, SNI %q", cl.Conn.Hello, result, sni)
	}
	if cl.Info.Backend.Addr != b.Addr {
		t.Fatalf("routed to %v, want %v", cl.Info.Backend.Addr, b.Addr)
	}
}

// testInspectSNI: each client lands on the backend its server name routes
// to, the hello reaching it unchanged, and Hello says what was sent.
func (s *suite) testInspectSNI(t *testing.T) {
	noFDLeak(t)
	helloA, helloB := hello(t, "a.example.com"), hello(t, "B.Example.com", "h2")
	a, b := namedBackend(t, "a", helloA, nil), namedBackend(t, "b", helloB, nil)
	pol := NewPolicy()
	pol.Routes = func(c *engine.ConnInfo) ([]netip.AddrPort, bool) {
		switch c.Hello.SNI {
		case "a.example.com":
			return []netip.AddrPort{a.Addr}, true
		case "B.Example.com":
			return []netip.AddrPort{b.Addr}, true
		}
		return nil, false
	}
	h := s.start(t, pol, inspectTunables, "")
	for i := range 4 {
		first, name, be, sni := helloA, "a", a, "a.example.com"
		if i%2 == 1 {
			first, name, be, sni = helloB, "b", b, "B.Example.com"
		}
		c := h.dial()
		if got := sendFirst(t, c, first); got != name+"\n" {
			t.Fatalf("client %d (SNI %s) got %q, want %q", i, sni, got, name+"\n")
		}
		roundTrip(t, c, []byte("after the hello"))
		c.Close()
		cl := h.waitClosed()
		expectRouted(t, cl, engine.InspectSNI, sni, be)
		if cl.Info.Reason != engine.CloseDone || cl.Info.BytesIn != int64(len(first)+15) {
			t.Fatalf("Closed = %+v, want done with %d bytes in", cl.Info, len(first)+15)
		}
		if be == b && !slices.Equal(cl.Conn.Hello.ALPN, []string{"h2"}) {
			t.Fatalf("ALPN %q, want [h2]", cl.Conn.Hello.ALPN)
		}
	}
	if n := pol.Routed(); n != 4 {
		t.Fatalf("Route called %d times for 4 connections", n)
	}
}

// testInspectALPN routes by the protocols offered.
func (s *suite) testInspectALPN(t *testing.T) {
	noFDLeak(t)
	h2, h1 := hello(t, "x.example.com", "h2", "http/1.1"), hello(t, "x.example.com", "http/1.1")
	a, b := namedBackend(t, "a", h2, nil), namedBackend(t, "b", h1, nil)
	pol := NewPolicy()
	pol.Routes = func(c *engine.ConnInfo) ([]netip.AddrPort, bool) {
		if slices.Contains(c.Hello.ALPN, "h2") {
			return []netip.AddrPort{a.Addr}, true
		}
		return []netip.AddrPort{b.Addr}, true
	}
	h := s.start(t, pol, inspectTunables, "")
	for _, tc := range []struct {
		first []byte
		name  string
		be    *Backend
		alpn  []string
	}{{h2, "a", a, []string{"h2", "http/1.1"}}, {h1, "b", b, []string{"http/1.1"}}} {
		c := h.dial()
		if got := sendFirst(t, c, tc.first); got != tc.name+"\n" {
			t.Fatalf("ALPN %q: got %q, want %q", tc.alpn, got, tc.name+"\n")
		}
		c.Close()
		cl := h.waitClosed()
		expectRouted(t, cl, engine.InspectSNI, "x.example.com", tc.be)
		if !slices.Equal(cl.Conn.Hello.ALPN, tc.alpn) {
			t.Fatalf("ALPN %q, want %q", cl.Conn.Hello.ALPN, tc.alpn)
		}
	}
}

// testInspectSource routes by the client address, with a hello that has
// no server name.
func (s *suite) testInspectSource(t *testing.T) {
	noFDLeak(t)
	first := hello(t, "")
	a, b := namedBackend(t, "a", first, nil), namedBackend(t, "b", first, nil)
	pol := NewPolicy()
	srcA, srcB := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	pol.Routes = func(c *engine.ConnInfo) ([]netip.AddrPort, bool) {
		switch c.Client.Addr() {
		case srcA:
			return []netip.AddrPort{a.Addr}, true
		case srcB:
			return []netip.AddrPort{b.Addr}, true
		}
		return nil, false
	}
	h := s.start(t, pol, inspectTunables, "")
	for _, tc := range []struct {
		src  netip.Addr
		name string
		be   *Backend
	}{{srcA, "a", a}, {srcB, "b", b}, {srcA, "a", a}} {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(tc.src, 0))}
		nc, err := d.Dial("tcp", h.eng.Addr().String())
		if err != nil {
			t.Skipf("cannot connect from %v (loopback alias missing?): %v", tc.src, err)
		}
		if got := sendFirst(t, nc, first); got != tc.name+"\n" {
			nc.Close()
			t.Fatalf("client from %v got %q, want %q", tc.src, got, tc.name+"\n")
		}
		nc.Close()
		cl := h.waitClosed()
		expectRouted(t, cl, engine.InspectNoSNI, "", tc.be)
		if cl.Conn.Client.Addr() != tc.src || cl.Conn.Peer != cl.Conn.Client {
			t.Fatalf("Client %v, Peer %v, want both from %v", cl.Conn.Client, cl.Conn.Peer, tc.src)
		}
	}
}

// testInspectNoRoute: a hello no route matches is reset, counted as
// no_route and reported Closed with reason no_route; no backend is dialled.
func (s *suite) testInspectNoRoute(t *testing.T) {
	noFDLeak(t)
	var accepts atomic.Int64
	first := hello(t, "nowhere.example.com")
	b := namedBackend(t, "a", first, &accepts)
	pol := NewPolicy(b.Addr)
	pol.Routes = func(c *engine.ConnInfo) ([]netip.AddrPort, bool) { return nil, c.Hello.SNI == "a.example.com" }
	h := s.start(t, pol, inspectTunables, "")
	c := h.dial()
	if _, err := c.Write(first); err != nil {
		t.Fatal(err)
	}
	if err := waitEnd(t, c, 5*time.Second); !isReset(err) {
		t.Fatalf("unrouted client got %v, want a reset", err)
	}
	cl := h.waitClosed()
	if cl.Info.Reason != engine.CloseNoRoute || cl.Conn.Hello.SNI != "nowhere.example.com" || cl.Info.Backend.Addr.IsValid() {
		t.Fatalf("Closed %+v with hello %+v, want no_route, no backend", cl.Info, cl.Conn.Hello)
	}
	if n := pol.RejectedBy(engine.RejectNoRoute); n != 1 {
		t.Fatalf("%d no_route refusals counted, want 1", n)
	}
	if d := pol.Dials(); len(d) != 0 || accepts.Load() != 0 {
		t.Fatalf("dials %+v, backend accepts %d, want none", d, accepts.Load())
	}
}

// routeBySNI routes every connection to a, recording nothing: tests that
// check the Hello in Closed.
func routeAll(pol *Policy, b *Backend) {
	pol.Routes = func(*engine.ConnInfo) ([]netip.AddrPort, bool) { return []netip.AddrPort{b.Addr}, true }
}

// testInspectOneBytePerSegment sends the hello one byte per TCP segment.
func (s *suite) testInspectOneBytePerSegment(t *testing.T) {
	noFDLeak(t)
	first := smallHello(t, "slow.example.com")
	b := namedBackend(t, "a", first, nil)
	pol := NewPolicy()
	routeAll(pol, b)
	h := s.start(t, pol, inspectTunables, "")
	c := h.dial()
	if err := c.SetNoDelay(true); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	for i := range first {
		if _, err := c.Write(first[i : i+1]); err != nil {
			t.Fatalf("write byte %d: %v", i, err)
		}
		time.Sleep(500 * time.Microsecond)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	if line != "a\n" {
		t.Fatalf("backend answered %q after a hello sent byte by byte", line)
	}
	c.Close()
	expectRouted(t, h.waitClosed(), engine.InspectSNI, "slow.example.com", b)
}

// testInspectTwoRecords sends the hello split over two TLS records (in two
// writes), the split falling inside the handshake header or the body.
func (s *suite) testInspectTwoRecords(t *testing.T) {
	whole := hello(t, "split.example.com", "h2")
	for _, at := range []int{2, 40, len(whole) - 5 - 1} {
		t.Run(fmt.Sprintf("at%d", at), func(t *testing.T) {
			noFDLeak(t)
			first := splitRecord(t, whole, at)
			b := namedBackend(t, "a", first, nil)
			pol := NewPolicy()
			routeAll(pol, b)
			h := s.start(t, pol, inspectTunables, "")
			c := h.dial()
			cut := 5 + at // the first record
			if _, err := c.Write(first[:cut]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			if got := sendFirst(t, c, first[cut:]); got != "a\n" {
				t.Fatalf("backend answered %q to a hello over two records", got)
			}
			c.Close()
			cl := h.waitClosed()
			expectRouted(t, cl, engine.InspectSNI, "split.example.com", b)
			if !slices.Equal(cl.Conn.Hello.ALPN, []string{"h2"}) {
				t.Fatalf("ALPN %q, want [h2]", cl.Conn.Hello.ALPN)
			}
		})
	}
}

// testInspectLargeHello: a 12 KiB hello (a long ALPN list), larger than
// a PROXY header or a common hello, is parsed whole.
func (s *suite) testInspectLargeHello(t *testing.T) {
	noFDLeak(t)
	var alpn []string
	for i := range 48 {
		alpn = append(alpn, fmt.Sprintf("proto-%02d-%s", i, bytes.Repeat([]byte{'x'}, 240)))
	}
	first := hello(t, "large.example.com", alpn...)
	if len(first) < 12<<10 {
		t.Fatalf("the hello has %d bytes, want at least 12 KiB", len(first))
	}
	b := namedBackend(t, "a", first, nil)
	pol := NewPolicy()
	routeAll(pol, b)
	h := s.start(t, pol, inspectTunables, "")
	c := h.dial()
	if got := sendFirst(t, c, first); got != "a\n" {
		t.Fatalf("backend answered %q to a %d-byte hello", got, len(first))
	}
	c.Close()
	cl := h.waitClosed()
	expectRouted(t, cl, engine.InspectSNI, "large.example.com", b)
	if !slices.Equal(cl.Conn.Hello.ALPN, alpn) {
		t.Fatalf("ALPN has %d names, want the %d offered", len(cl.Conn.Hello.ALPN), len(alpn))
	}
}

// testInspectNotTLS: first bytes that are not TLS are routed with result
// not_tls and empty SNI/ALPN, and delivered unchanged.
func (s *suite) testInspectNotTLS(t *testing.T) {
	noFDLeak(t)
	first := []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
	b := namedBackend(t, "a", first, nil)
	pol := NewPolicy()
	routeAll(pol, b)
	h := s.start(t, pol, inspectTunables, "")
	c := h.dial()
	if got := sendFirst(t, c, first); got != "a\n" {
		t.Fatalf("backend answered %q to plain text", got)
	}
	roundTrip(t, c, []byte("more plain text"))
	c.Close()
	cl := h.waitClosed()
	expectRouted(t, cl, engine.InspectNotTLS, "", b)
	if cl.Conn.Hello.ALPN != nil {
		t.Fatalf("ALPN %q for plain text", cl.Conn.Hello.ALPN)
	}
}

// testInspectSilent: a client that sends nothing (a server-speaks-first
// protocol) is routed once the inspect timeout passes, with result timeout,
// and then relayed both ways.
func (s *suite) testInspectSilent(t *testing.T) {
	noFDLeak(t)
	const timeout = 400 * time.Millisecond
	b := NewBackend(t, func(c *net.TCPConn) {
		if _, err := c.Write([]byte("220 ready\n")); err == nil {
			Echo(c)
		}
	})
	pol := NewPolicy()
	routeAll(pol, b)
	tun := inspectTunables
	tun.InspectTimeout = timeout
	h := s.start(t, pol, tun, "")
	began := time.Now()
	c := h.dial()
	_ = c.SetReadDeadline(time.Now().Add(timeout + 10*time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || line != "220 ready\n" {
		t.Fatalf("silent client got %q, %v; want the backend's greeting", line, err)
	}
	if el := time.Since(began); el < timeout*3/4 {
		t.Fatalf("greeted after %v, before the inspect timeout %v", el, timeout)
	}
	msg := []byte("HELO client\n")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(r, back); err != nil || !bytes.Equal(back, msg) {
		t.Fatalf("echo after the timeout: %q, %v", back, err)
	}
	c.Close()
	expectRouted(t, h.waitClosed(), engine.InspectTimeout, "", b)
}

// testInspectTooLarge: a record or handshake header announcing more than
// the bound is routed as too_large at once (the timeout is far off), and
// the bytes are delivered unchanged.
func (s *suite) testInspectTooLarge(t *testing.T) {
	real := hello(t, "big.example.com")
	bigRecord := slices.Clone(real)
	bigRecord[3], bigRecord[4] = 0x40, 0x01 // record of 16385 bytes
	bigMessage := slices.Clone(real)
	bigMessage[6], bigMessage[7], bigMessage[8] = 0x01, 0x00, 0x00 // ClientHello of 64 KiB
	for _, tc := range []struct {
		name  string
		first []byte
	}{{"record", bigRecord}, {"handshake", bigMessage}} {
		t.Run(tc.name, func(t *testing.T) {
			noFDLeak(t)
			b := namedBackend(t, "a", tc.first, nil)
			pol := NewPolicy()
			routeAll(pol, b)
			tun := inspectTunables
			tun.InspectTimeout = time.Minute
			h := s.start(t, pol, tun, "")
			c := h.dial()
			began := time.Now()
			if got := sendFirst(t, c, tc.first); got != "a\n" {
				t.Fatalf("backend answered %q", got)
			}
			if el := time.Since(began); el > 10*time.Second {
				t.Fatalf("routed after %v: waited for the rest of an oversized hello", el)
			}
			c.Close()
			expectRouted(t, h.waitClosed(), engine.InspectTooLarge, "", b)
		})
	}
}

// testInspectClientCloses: a client that closes (FIN) or resets in the
// middle of its hello is reported Closed with reason client_closed and
// result closed; no backend is dialled.
func (s *suite) testInspectClientCloses(t *testing.T) {
	first := hello(t, "gone.example.com")
	for _, rst := range []bool{false, true} {
		name := "fin"
		if rst {
			name = "reset"
		}
		t.Run(name, func(t *testing.T) {
			noFDLeak(t)
			var accepts atomic.Int64
			b := namedBackend(t, "a", first, &accepts)
			pol := NewPolicy(b.Addr)
			h := s.start(t, pol, inspectTunables, "")
			c := h.dial()
			if _, err := c.Write(first[:len(first)/2]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			if rst {
				_ = c.SetLinger(0)
			}
			c.Close()
			cl := h.waitClosed()
			if cl.Info.Reason != engine.CloseClientGone || cl.Conn.Hello.Result != engine.InspectClosed {
				t.Fatalf("Closed %+v with hello result %v, want %q and closed", cl.Info, cl.Conn.Hello.Result, engine.CloseClientGone)
			}
			if d := pol.Dials(); len(d) != 0 || accepts.Load() != 0 || pol.Routed() != 0 {
				t.Fatalf("dials %+v, backend accepts %d, Route calls %d; want none", d, accepts.Load(), pol.Routed())
			}
		})
	}
}

// testInspectRelay: hello + 64 MiB up and 64 MiB down arrive byte-exact.
func (s *suite) testInspectRelay(t *testing.T) {
	noFDLeak(t)
	const size = 64 << 20
	first := hello(t, "bulk.example.com")
	type upResult struct {
		helloOK bool
		sumResult
	}
	got := make(chan upResult, 1)
	b := NewBackend(t, func(c *net.TCPConn) {
		r := make(chan upResult, 1)
		go func() {
			head := make([]byte, len(first))
			_, err := io.ReadFull(c, head)
			s, n, err2 := ReadAllSum(c)
			if err == nil {
				err = err2
			}
			r <- upResult{bytes.Equal(head, first), sumResult{s, n, err}}
		}()
		if _, err := io.Copy(c, NewStream(2, size)); err != nil {
			got <- upResult{sumResult: sumResult{err: err}}
			return
		}
		_ = c.CloseWrite()
		got <- <-r
	})
	pol := NewPolicy()
	routeAll(pol, b)
	h := s.start(t, pol, inspectTunables, "")
	c := h.dial()
	go func() {
		_, _ = io.Copy(c, io.MultiReader(bytes.NewReader(first), NewStream(1, size)))
		_ = c.CloseWrite()
	}()
	sum, n, err := ReadAllSum(c)
	if err != nil || n != size || sum != StreamSum(2, size) {
		t.Fatalf("backend→client: %d bytes (sha match %v, err %v), want %d", n, sum == StreamSum(2, size), err, size)
	}
	r := <-got
	if r.err != nil || !r.helloOK || r.n != size || r.sum != StreamSum(1, size) {
		t.Fatalf("client→backend: hello intact %v, then %d bytes (sha match %v, err %v), want %d", r.helloOK, r.n, r.sum == StreamSum(1, size), r.err, size)
	}
	c.Close()
	cl := h.waitClosed()
	expectRouted(t, cl, engine.InspectSNI, "bulk.example.com", b)
	if cl.Info.Reason != engine.CloseDone || cl.Info.BytesIn != int64(len(first))+size || cl.Info.BytesOut != size {
		t.Fatalf("Closed = %+v, want done, %d in, %d out", cl.Info, int64(len(first))+size, size)
	}
}

// proxyHeader is the PROXY header an upstream balancer sends for a client
// at src that connected to dst.
func proxyHeader(t testing.TB, version byte, src, dst netip.AddrPort) []byte {
	t.Helper()
	b, err := libproxy.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(src), net.TCPAddrFromAddrPort(dst)).Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	headerSource = netip.MustParseAddrPort("203.0.113.7:40123")
	headerDest   = netip.MustParseAddrPort("198.51.100.1:443")
)

// testInspectAfterProxyHeader: a PROXY header before the hello (in the same
// write, or its own) is read first; the hello is still inspected, the
// header's client is the one routed, and the backend receives the hello
// only.
func (s *suite) testInspectAfterProxyHeader(t *testing.T) {
	first := hello(t, "behind.example.com")
	for _, tc := range []struct {
		name    string
		version byte
		apart   bool
	}{{"v1", 1, false}, {"v2", 2, false}, {"v1-apart", 1, true}, {"v2-apart", 2, true}} {
		t.Run(tc.name, func(t *testing.T) {
			noFDLeak(t)
			b := namedBackend(t, "a", first, nil)
			pol := NewPolicy()
			pol.Routes = func(c *engine.ConnInfo) ([]netip.AddrPort, bool) {
				return []netip.AddrPort{b.Addr}, c.Client == headerSource && c.Hello.SNI == "behind.example.com"
			}
			tun := inspectTunables
			tun.ProxyIn, tun.ProxyHeaderTimeout, tun.Trusted = engine.ProxyInAny, 5*time.Second, loopback
			h := s.start(t, pol, tun, "")
			c := h.dial()
			hdr := proxyHeader(t, tc.version, headerSource, headerDest)
			var line string
			if tc.apart {
				if _, err := c.Write(hdr); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
				line = sendFirst(t, c, first)
			} else {
				line = sendFirst(t, c, append(hdr, first...))
			}
			if line != "a\n" {
				t.Fatalf("backend answered %q (want the hello alone, routed by the header's client)", line)
			}
			c.Close()
			cl := h.waitClosed()
			expectRouted(t, cl, engine.InspectSNI, "behind.example.com", b)
			if cl.Conn.Client != headerSource || cl.Conn.Local != headerDest {
				t.Fatalf("Client %v, Local %v; want the header's %v → %v", cl.Conn.Client, cl.Conn.Local, headerSource, headerDest)
			}
			if cl.Info.BytesIn != int64(len(first)) {
				t.Fatalf("BytesIn %d, want the hello's %d (the header is not payload)", cl.Info.BytesIn, len(first))
			}
		})
	}
}
