package proxyproto

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"testing"

	libproxy "github.com/pires/go-proxyproto"

	"github.com/bal-lb/bal/engine"
)

func TestAppendV1(t *testing.T) {
	tests := []struct {
		client, local string
		want          string
	}{
		{"127.0.0.1:40000", "127.0.0.1:9295", "PROXY TCP4 127.0.0.1 127.0.0.1 40000 9295\r\n"},
		{"[::1]:5", "[::1]:9295", "PROXY TCP6 ::1 ::1 5 9295\r\n"},
		{"[::ffff:10.0.0.1]:1", "10.0.0.2:2", "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n"},
		{"10.0.0.1:1", "[2001:db8::1]:2", "PROXY TCP6 ::ffff:10.0.0.1 2001:db8::1 1 2\r\n"},
	}
	for _, tt := range tests {
		got := string(Append(nil, engine.ProxyV1, netip.MustParseAddrPort(tt.client), netip.MustParseAddrPort(tt.local)))
		if got != tt.want {
			t.Errorf("v1 %s→%s = %q, want %q", tt.client, tt.local, got, tt.want)
		}
		if len(got) > MaxLen {
			t.Errorf("header longer than MaxLen: %d", len(got))
		}
	}
}

func TestOffAppendsNothing(t *testing.T) {
	if got := Append([]byte("x"), engine.ProxyOff, netip.MustParseAddrPort("1.2.3.4:5"), netip.MustParseAddrPort("1.2.3.4:6")); string(got) != "x" {
		t.Fatalf("got %q", got)
	}
}

// TestAgainstLibrary parses every header with github.com/pires/go-proxyproto,
// an independent implementation, and checks the addresses it reads back.
func TestAgainstLibrary(t *testing.T) {
	pairs := [][2]string{
		{"127.0.0.1:40000", "127.0.0.1:9295"},
		{"[::1]:41000", "[::1]:9295"},
		{"[2001:db8::7]:65535", "[2001:db8::1]:1"},
		{"192.0.2.9:1", "[2001:db8::1]:443"},
	}
	for _, v := range []engine.ProxyProtocol{engine.ProxyV1, engine.ProxyV2} {
		for _, p := range pairs {
			client, local := netip.MustParseAddrPort(p[0]), netip.MustParseAddrPort(p[1])
			hdr := Append(nil, v, client, local)
			payload := []byte("GET / HTTP/1.0\r\n\r\n")
			r := bufio.NewReader(bytes.NewReader(append(hdr, payload...)))
			h, err := libproxy.Read(r)
			if err != nil {
				t.Fatalf("v%d %v: library rejects %q: %v", v, p, hdr, err)
			}
			if int(h.Version) != int(v) {
				t.Errorf("version %d, want %d", h.Version, v)
			}
			src := h.SourceAddr.(*net.TCPAddr).AddrPort()
			dst := h.DestinationAddr.(*net.TCPAddr).AddrPort()
			if src.Addr().Unmap() != client.Addr().Unmap() || src.Port() != client.Port() {
				t.Errorf("v%d source %v, want %v", v, src, client)
			}
			if dst.Addr().Unmap() != local.Addr().Unmap() || dst.Port() != local.Port() {
				t.Errorf("v%d destination %v, want %v", v, dst, local)
			}
			rest := make([]byte, len(payload))
			if _, err := r.Read(rest); err != nil || !bytes.Equal(rest, payload) {
				t.Errorf("payload after header = %q, %v", rest, err)
			}
		}
	}
}

func BenchmarkAppendV2(b *testing.B) {
	buf := make([]byte, 0, MaxLen)
	c, l := netip.MustParseAddrPort("[2001:db8::7]:65535"), netip.MustParseAddrPort("[2001:db8::1]:1")
	b.ReportAllocs()
	for b.Loop() {
		buf = Append(buf[:0], engine.ProxyV2, c, l)
	}
}
