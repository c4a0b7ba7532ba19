package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/enginetest"
)

// Black-box tests of the PROXY protocol: the real binary, a Go backend
// that records what arrives before the client's bytes.

// seenByBackend is one proxied connection as the backend saw it.
type seenByBackend struct {
	header  []byte // the PROXY header, exactly as received
	payload []byte // everything after it
	err     error
}

// proxyBackend records every connection that carries bytes (health checks
// connect and close without any) and answers "ok".
func proxyBackend(t *testing.T, version string) (*enginetest.Backend, <-chan seenByBackend) {
	seen := make(chan seenByBackend, 16)
	b := enginetest.NewBackend(t, func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		all, err := io.ReadAll(c)
		if len(all) == 0 && err == nil {
			return // a health check
		}
		s := seenByBackend{err: err}
		if err == nil {
			n, herr := headerLen(version, all)
			s.err = herr
			if herr == nil {
				s.header, s.payload = all[:n], all[n:]
			}
		}
		_, _ = io.WriteString(c, "ok")
		seen <- s
	})
	return b, seen
}

// headerLen finds where the header ends without trusting bal: v1 at the
// first CRLF (107 bytes at most), v2 from its length field.
func headerLen(version string, b []byte) (int, error) {
	if version == "v1" {
		i := bytes.Index(b, []byte("\r\n"))
		if i < 0 || i+2 > 107 {
			return 0, fmt.Errorf("no v1 header line in %q", b)
		}
		return i + 2, nil
	}
	if len(b) < 16 {
		return 0, fmt.Errorf("%d bytes: too short for a v2 header", len(b))
	}
	n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
	if n > len(b) {
		return 0, fmt.Errorf("v2 length %d beyond the %d bytes received", n, len(b))
	}
	return n, nil
}

func TestProxyProtocolBlackBox(t *testing.T) {
	tests := []struct {
		version, bind string
	}{
		{"v1", "127.0.0.1"},
		{"v2", "127.0.0.1"},
		{"v1", "::1"},
		{"v2", "::1"},
	}
	for _, eng := range baltest.Engines() {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%s/%s", eng, tt.version, tt.bind), func(t *testing.T) {
				testProxyHeader(t, eng, tt.version, tt.bind)
			})
		}
	}
}

func testProxyHeader(t *testing.T, eng, version, bind string) {
	backend, seen := proxyBackend(t, version)
	port := baltest.FreePort(t)
	if bind == "::1" {
		port = freePort6(t)
	}
	startShortDrainOn(t, baltest.Config{Port: port, Engine: eng, Backends: []string{backend.Addr.String()}, Runtime: []string{"proxy_protocol: " + version}}, bind)
	balAddr := netip.AddrPortFrom(netip.MustParseAddr(bind), uint16(port))

	const msg = "GET / HTTP/1.0\r\n\r\nclient bytes"
	c, err := net.DialTimeout("tcp", balAddr.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := c.LocalAddr().(*net.TCPAddr).AddrPort()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if reply, err := io.ReadAll(c); err != nil || string(reply) != "ok" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	var s seenByBackend
	select {
	case s = <-seen:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend saw no proxied connection")
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	if string(s.payload) != msg {
		t.Fatalf("after the header the backend got %q, want the client's bytes %q", s.payload, msg)
	}

	// The library's reading of the header: a PROXY command with the real
	// client and bal's address.
	h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(s.header)))
	if err != nil {
		t.Fatalf("go-proxyproto rejects the header %q: %v", s.header, err)
	}
	wantProto := proxyproto.TCPv4
	if bind == "::1" {
		wantProto = proxyproto.TCPv6
	}
	src, dst, ok := h.TCPAddrs()
	if !ok || h.Command != proxyproto.PROXY || h.TransportProtocol != wantProto ||
		src.AddrPort() != client || dst.AddrPort() != balAddr {
		t.Fatalf("header %q read as version %d command %v proto %v %v -> %v; want PROXY %v %v -> %v",
			s.header, h.Version, h.Command, h.TransportProtocol, src, dst, wantProto, client, balAddr)
	}
	// And byte for byte what the spec says.
	var want []byte
	if version == "v1" {
		fam := "TCP4"
		if bind == "::1" {
			fam = "TCP6"
		}
		want = fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", fam, client.Addr(), balAddr.Addr(), client.Port(), port)
	} else {
		want, err = proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(client), net.TCPAddrFromAddrPort(balAddr)).Format()
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(s.header, want) {
		t.Fatalf("header\n%q\nwant\n%q", s.header, want)
	}
	t.Logf("backend saw %q before the client's bytes", s.header)
}
