package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	libproxy "github.com/pires/go-proxyproto"

	"github.com/bal-lb/bal/engine"
)

// appendHeader writes a PROXY-command header of the given version with
// Append, the outbound writer.
func appendHeader(dst []byte, version int, src, dstAddr netip.AddrPort) []byte {
	v := engine.ProxyV1
	if version == 2 {
		v = engine.ProxyV2
	}
	return Append(dst, v, src, dstAddr)
}

// v2 builds a v2 header with the given command, family byte and body.
func v2(cmd, fam byte, body []byte) []byte {
	b := append(v2Signature[:0:0], v2Signature[:]...)
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func inet4(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b := slices.Concat(s[:], d[:])
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func inet6(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	b := slices.Concat(s[:], d[:])
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func tlv(typ byte, v []byte) []byte {
	return slices.Concat([]byte{typ}, binary.BigEndian.AppendUint16(nil, uint16(len(v))), v)
}

type goodCase struct {
	name     string
	in       []byte
	accept   Accept
	version  int
	local    bool
	src, dst string // AddrPort text when not local
}

func goodCases() []goodCase {
	maxV1 := "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
	return []goodCase{
		{"v1 tcp4", []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), AcceptV1, 1, false, "192.168.0.1:56324", "192.168.0.11:443"},
		{"v1 tcp4 max", []byte("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"), AcceptAny, 1, false, "255.255.255.255:65535", "255.255.255.255:65535"},
		{"v1 tcp4 zeros", []byte("PROXY TCP4 0.0.0.0 10.0.0.1 0 1\r\n"), AcceptAny, 1, false, "0.0.0.0:0", "10.0.0.1:1"},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::1 ::1 1 65535\r\n"), AcceptV1, 1, false, "[2001:db8::1]:1", "[::1]:65535"},
		{"v1 tcp6 full upper", []byte("PROXY TCP6 FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 0001:0:0:0:0:0:0:0abc 2 3\r\n"), AcceptAny, 1, false, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:2", "[1::abc]:3"},
		{"v1 tcp6 mapped", []byte("PROXY TCP6 ::ffff:10.0.0.1 ::ffff:10.0.0.2 5 6\r\n"), AcceptAny, 1, false, "10.0.0.1:5", "10.0.0.2:6"},
		{"v1 tcp6 dotted tail", []byte("PROXY TCP6 1:2:3:4:5:6:1.2.3.4 :: 5 6\r\n"), AcceptAny, 1, false, "[1:2:3:4:5:6:102:304]:5", "[::]:6"},
		{"v1 unknown short", []byte("PROXY UNKNOWN\r\n"), AcceptAny, 1, true, "", ""},
		{"v1 unknown full", []byte(maxV1), AcceptV1, 1, true, "", ""},
		{"v1 unknown anything", []byte("PROXY UNKNOWN whatever \x00 is here\r\n"), AcceptAny, 1, true, "", ""},
		{"v1 with payload", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 9 10\r\nGET / HTTP/1.1\r\n"), AcceptAny, 1, false, "1.2.3.4:9", "5.6.7.8:10"},
		{"v2 tcp4", v2(cmdProxy, 0x11, inet4("10.1.2.3", "10.0.0.1", 40000, 443)), AcceptV2, 2, false, "10.1.2.3:40000", "10.0.0.1:443"},
		{"v2 tcp6", v2(cmdProxy, 0x21, inet6("2001:db8::7", "2001:db8::1", 65535, 1)), AcceptAny, 2, false, "[2001:db8::7]:65535", "[2001:db8::1]:1"},
		{"v2 tcp6 mapped", v2(cmdProxy, 0x21, inet6("::ffff:1.2.3.4", "2001:db8::1", 7, 8)), AcceptAny, 2, false, "1.2.3.4:7", "[2001:db8::1]:8"},
		{"v2 tcp4 tlvs", v2(cmdProxy, 0x11, slices.Concat(inet4("1.1.1.1", "2.2.2.2", 3, 4), tlv(0x01, []byte("h2")), tlv(0x02, []byte("example.com")), tlv(0x04, nil), tlv(0xEA, make([]byte, 300)))), AcceptAny, 2, false, "1.1.1.1:3", "2.2.2.2:4"},
		{"v2 tcp4 padded to max", v2(cmdProxy, 0x11, append(inet4("1.1.1.1", "2.2.2.2", 3, 4), make([]byte, MaxV2Len-V2HeaderLen-12)...)), AcceptAny, 2, false, "1.1.1.1:3", "2.2.2.2:4"},
		{"v2 local empty", v2(cmdLocal, 0x00, nil), AcceptAny, 2, true, "", ""},
		{"v2 local with addresses", v2(cmdLocal, 0x11, inet4("1.1.1.1", "2.2.2.2", 3, 4)), AcceptV2, 2, true, "", ""},
		{"v2 local short block", v2(cmdLocal, 0x21, make([]byte, 5)), AcceptV2, 2, true, "", ""},
		{"v2 proxy unspec", v2(cmdProxy, 0x00, nil), AcceptAny, 2, true, "", ""},
		{"v2 proxy inet unspec transport", v2(cmdProxy, 0x10, make([]byte, 3)), AcceptAny, 2, true, "", ""},
		{"v2 proxy udp4", v2(cmdProxy, 0x12, inet4("1.1.1.1", "2.2.2.2", 3, 4)), AcceptAny, 2, true, "", ""},
		{"v2 proxy udp6", v2(cmdProxy, 0x22, inet6("::1", "::2", 3, 4)), AcceptAny, 2, true, "", ""},
		{"v2 proxy unix", v2(cmdProxy, 0x31, make([]byte, addrLenUnix)), AcceptAny, 2, true, "", ""},
		{"v2 with payload", append(v2(cmdProxy, 0x11, inet4("1.1.1.1", "2.2.2.2", 3, 4)), "SSH-2.0-x\r\n"...), AcceptAny, 2, false, "1.1.1.1:3", "2.2.2.2:4"},
	}
}

// headerLen is where the client's data starts in a good case.
func headerLen(in []byte) int {
	if in[0] == 'P' {
		return bytes.Index(in, []byte("\r\n")) + 2
	}
	return V2HeaderLen + int(binary.BigEndian.Uint16(in[14:16]))
}

func TestParseGood(t *testing.T) {
	for _, tt := range goodCases() {
		t.Run(tt.name, func(t *testing.T) {
			h, n, st := Parse(tt.in, tt.accept)
			if st != Done {
				t.Fatalf("Parse = %v (%s), want done", st, h.Reason)
			}
			if want := headerLen(tt.in); n != want {
				t.Errorf("n = %d, want %d", n, want)
			}
			if h.Version != tt.version || h.Local != tt.local || h.Reason != "" {
				t.Errorf("header %+v, want version %d local %v", h, tt.version, tt.local)
			}
			if !tt.local {
				if h.Source != netip.MustParseAddrPort(tt.src) || h.Destination != netip.MustParseAddrPort(tt.dst) {
					t.Errorf("addresses %v → %v, want %s → %s", h.Source, h.Destination, tt.src, tt.dst)
				}
			} else if h.Source.IsValid() || h.Destination.IsValid() {
				t.Errorf("local header carries addresses %v %v", h.Source, h.Destination)
			}
			// Every shorter read is a prefix to wait on.
			for i := range n {
				if p, pn, st := Parse(tt.in[:i], tt.accept); st != NeedMore || pn != 0 {
					t.Fatalf("prefix of %d/%d bytes: %v n=%d (%s)", i, n, st, pn, p.Reason)
				}
			}
			if a := testing.AllocsPerRun(50, func() { Parse(tt.in, tt.accept) }); a != 0 {
				t.Errorf("Parse allocates %v times", a)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	tcp4 := inet4("1.1.1.1", "2.2.2.2", 3, 4)
	long := "PROXY UNKNOWN " + strings.Repeat("x", MaxV1Len-len("PROXY UNKNOWN ")-1)
	tests := []struct {
		name   string
		in     string
		accept Accept
	}{
		// Which header a service takes.
		{"v1 on v2-only", "P", AcceptV2},
		{"v2 on v1-only", "\r", AcceptV1},
		{"accept nothing", "PROXY UNKNOWN\r\n", 0},
		{"plain http", "GET / HTTP/1.1\r\n", AcceptAny},
		{"tls hello", "\x16\x03\x01", AcceptAny},
		{"lowercase", "proxy TCP4", AcceptAny},
		{"no space after PROXY", "PROXYTCP4", AcceptAny},
		// v1 framing.
		{"two spaces before protocol", "PROXY  TCP4", AcceptAny},
		{"lowercase protocol", "PROXY tcp4", AcceptAny},
		{"unknown protocol", "PROXY UDP4 1.2.3.4", AcceptAny},
		{"TCP4 without space", "PROXY TCP4\r\n", AcceptAny},
		{"UNKNOWN glued", "PROXY UNKNOWNX\r\n", AcceptAny},
		{"empty protocol", "PROXY \r\n", AcceptAny},
		{"LF only", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", AcceptAny},
		{"LF only unknown", "PROXY UNKNOWN\n", AcceptAny},
		{"CR then other", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", AcceptAny},
		{"no CRLF in 107 bytes", long + "x", AcceptAny},
		{"CRLF ends at 108", long + "\r\n", AcceptAny},
		{"tab separator", "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", AcceptAny},
		{"letters in tcp4", "PROXY TCP4 a", AcceptAny},
		{"zone in tcp6", "PROXY TCP6 fe80::1%eth0", AcceptAny},
		// v1 fields.
		{"double space", "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", AcceptAny},
		{"three fields", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", AcceptAny},
		{"five fields", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", AcceptAny},
		{"trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", AcceptAny},
		{"empty line", "PROXY TCP4 \r\n", AcceptAny},
		{"octet leading zero", "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", AcceptAny},
		{"octet 256", "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", AcceptAny},
		{"three octets", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", AcceptAny},
		{"five octets", "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", AcceptAny},
		{"empty octet", "PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", AcceptAny},
		{"tcp4 with ipv6", "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", AcceptAny},
		{"tcp6 with ipv4", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", AcceptAny},
		{"tcp6 dst ipv4", "PROXY TCP6 ::1 1.2.3.4 1 2\r\n", AcceptAny},
		{"ipv6 triple colon", "PROXY TCP6 ::: ::1 1 2\r\n", AcceptAny},
		{"ipv6 two ellipses", "PROXY TCP6 1::2::3 ::1 1 2\r\n", AcceptAny},
		{"ipv6 nine groups", "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", AcceptAny},
		{"ipv6 seven groups", "PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n", AcceptAny},
		{"ipv6 ellipsis for nothing", "PROXY TCP6 1:2:3:4:5:6:7::8 ::1 1 2\r\n", AcceptAny},
		{"ipv6 five digits", "PROXY TCP6 12345:: ::1 1 2\r\n", AcceptAny},
		{"ipv6 trailing colon", "PROXY TCP6 1:: 1: 1 2\r\n", AcceptAny},
		{"ipv6 leading colon", "PROXY TCP6 :1:2:3:4:5:6:7 ::1 1 2\r\n", AcceptAny},
		{"ipv6 dotted tail misplaced", "PROXY TCP6 1:2:3:4:5:6:7:1.2.3.4 ::1 1 2\r\n", AcceptAny},
		{"ipv6 dotted tail leading zero", "PROXY TCP6 ::ffff:1.2.3.04 ::1 1 2\r\n", AcceptAny},
		{"port leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", AcceptAny},
		{"port 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", AcceptAny},
		{"port six digits", "PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n", AcceptAny},
		{"port with dot", "PROXY TCP4 1.2.3.4 5.6.7.8 1.0 2\r\n", AcceptAny},
		{"port hex in tcp6", "PROXY TCP6 ::1 ::2 ff 2\r\n", AcceptAny},
		{"port signed", "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", AcceptAny},
		// v2.
		{"v2 signature mismatch", "\r\n\r\n\x00\r\nQUIX", AcceptAny},
		{"v2 signature mismatch early", "\r\n\r\n\x01", AcceptAny},
		{"v2 version 1", string(v2Signature[:]) + "\x11", AcceptAny},
		{"v2 version 3", string(v2Signature[:]) + "\x31", AcceptAny},
		{"v2 command 2", string(v2Signature[:]) + "\x22", AcceptAny},
		{"v2 family 4", string(v2Signature[:]) + "\x21\x41", AcceptAny},
		{"v2 transport 3", string(v2Signature[:]) + "\x21\x13", AcceptAny},
		{"v2 inet short", string(v2(cmdProxy, 0x11, tcp4[:11])), AcceptAny},
		{"v2 inet6 with inet block", string(v2(cmdProxy, 0x21, tcp4)), AcceptAny},
		{"v2 unix short", string(v2(cmdProxy, 0x31, make([]byte, 215))), AcceptAny},
		{"v2 udp4 short", string(v2(cmdProxy, 0x12, tcp4[:4])), AcceptAny},
		{"v2 over max, header only", string(v2Signature[:]) + "\x21\x11\x0f\xf1", AcceptAny},
		{"v2 length 65535", string(v2Signature[:]) + "\x20\x00\xff\xff", AcceptAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			h, n, st := Parse(in, tt.accept)
			if st != Malformed || n != 0 || h.Reason == "" || h.Version != 0 || h.Source.IsValid() {
				t.Fatalf("Parse(%q) = %v n=%d %+v, want malformed with a reason", in, st, n, h)
			}
			// A rejection is final whatever follows.
			if _, _, st := Parse(append(in, "\r\n\x00 1.2.3.4"...), tt.accept); st != Malformed {
				t.Errorf("with more bytes: %v", st)
			}
			if a := testing.AllocsPerRun(50, func() { Parse(in, tt.accept) }); a != 0 {
				t.Errorf("Parse allocates %v times", a)
			}
		})
	}
}

func TestParseNeverNeedMoreAtMax(t *testing.T) {
	// A v2 header announcing the most it may, with one byte missing, waits;
	// with every byte it is done.
	full := v2(cmdProxy, 0x11, append(inet4("1.1.1.1", "2.2.2.2", 3, 4), make([]byte, MaxV2Len-V2HeaderLen-12)...))
	if _, _, st := Parse(full[:MaxV2Len-1], AcceptAny); st != NeedMore {
		t.Fatalf("one byte short: %v", st)
	}
	line := []byte("PROXY TCP4 " + strings.Repeat("1", MaxV1Len))
	if _, _, st := Parse(line[:MaxV1Len], AcceptAny); st != Malformed {
		t.Fatalf("107 bytes without CRLF: %v", st)
	}
	if _, _, st := Parse(line[:MaxV1Len-1], AcceptAny); st != NeedMore {
		t.Fatalf("106 bytes without CRLF: %v", st)
	}
}

// TestAppendRoundTrip parses what Append writes.
func TestAppendRoundTrip(t *testing.T) {
	pairs := [][2]string{
		{"127.0.0.1:40000", "127.0.0.1:9295"},
		{"[::1]:41000", "[::1]:9295"},
		{"[2001:db8::7]:65535", "[2001:db8::1]:1"},
		{"192.0.2.9:1", "[2001:db8::1]:443"},
		{"[::ffff:192.0.2.9]:0", "198.51.100.1:80"},
		{"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
	}
	for _, version := range []int{1, 2} {
		for _, p := range pairs {
			c, l := netip.MustParseAddrPort(p[0]), netip.MustParseAddrPort(p[1])
			hdr := appendHeader(nil, version, c, l)
			h, n, st := Parse(append(hdr, "data"...), AcceptAny)
			if st != Done || n != len(hdr) || h.Version != version || h.Local {
				t.Fatalf("v%d %v: %v n=%d %+v", version, p, st, n, h)
			}
			if h.Source != unmap(c) || h.Destination != unmap(l) {
				t.Errorf("v%d %v: got %v → %v", version, p, h.Source, h.Destination)
			}
		}
	}
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// TestAgainstLibraryWriter parses headers written by
// github.com/pires/go-proxyproto, an independent implementation.
func TestAgainstLibraryWriter(t *testing.T) {
	tcp := func(s string) *net.TCPAddr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	tlvs := []libproxy.TLV{
		{Type: libproxy.PP2_TYPE_ALPN, Value: []byte("h2")},
		{Type: libproxy.PP2_TYPE_AUTHORITY, Value: []byte("api.example.com")},
		{Type: libproxy.PP2_TYPE_NOOP, Value: make([]byte, 40)},
	}
	tests := []struct {
		name     string
		hdr      libproxy.Header
		tlvs     bool
		local    bool
		src, dst string
	}{
		{"v1 tcp4", libproxy.Header{Version: 1, Command: libproxy.PROXY, TransportProtocol: libproxy.TCPv4, SourceAddr: tcp("10.0.0.1:1234"), DestinationAddr: tcp("10.0.0.2:80")}, false, false, "10.0.0.1:1234", "10.0.0.2:80"},
		{"v1 tcp6", libproxy.Header{Version: 1, Command: libproxy.PROXY, TransportProtocol: libproxy.TCPv6, SourceAddr: tcp("[2001:db8::1]:1"), DestinationAddr: tcp("[2001:db8:ffff::2]:65535")}, false, false, "[2001:db8::1]:1", "[2001:db8:ffff::2]:65535"},
		{"v1 unknown", libproxy.Header{Version: 1, Command: libproxy.PROXY, TransportProtocol: libproxy.UNSPEC}, false, true, "", ""},
		{"v2 tcp4", libproxy.Header{Version: 2, Command: libproxy.PROXY, TransportProtocol: libproxy.TCPv4, SourceAddr: tcp("192.0.2.1:5"), DestinationAddr: tcp("192.0.2.2:6")}, false, false, "192.0.2.1:5", "192.0.2.2:6"},
		{"v2 tcp6", libproxy.Header{Version: 2, Command: libproxy.PROXY, TransportProtocol: libproxy.TCPv6, SourceAddr: tcp("[::1]:7"), DestinationAddr: tcp("[fe80::1]:8")}, false, false, "[::1]:7", "[fe80::1]:8"},
		{"v2 tcp4 tlvs", libproxy.Header{Version: 2, Command: libproxy.PROXY, TransportProtocol: libproxy.TCPv4, SourceAddr: tcp("192.0.2.1:5"), DestinationAddr: tcp("192.0.2.2:6")}, true, false, "192.0.2.1:5", "192.0.2.2:6"},
		{"v2 tcp6 tlvs", libproxy.Header{Version: 2, Command: libproxy.PROXY, TransportProtocol: libproxy.TCPv6, SourceAddr: tcp("[2001:db8::9]:443"), DestinationAddr: tcp("[2001:db8::a]:8443")}, true, false, "[2001:db8::9]:443", "[2001:db8::a]:8443"},
		{"v2 local", libproxy.Header{Version: 2, Command: libproxy.LOCAL, TransportProtocol: libproxy.UNSPEC}, false, true, "", ""},
		{"v2 local tlvs", libproxy.Header{Version: 2, Command: libproxy.LOCAL, TransportProtocol: libproxy.UNSPEC}, true, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.tlvs {
				if err := tt.hdr.SetTLVs(tlvs); err != nil {
					t.Fatal(err)
				}
			}
			raw, err := tt.hdr.Format()
			if err != nil {
				t.Fatal(err)
			}
			h, n, st := Parse(append(raw, 0xff), AcceptAny)
			if st != Done || n != len(raw) || h.Version != int(tt.hdr.Version) || h.Local != tt.local {
				t.Fatalf("Parse(%q) = %v n=%d/%d %+v", raw, st, n, len(raw), h)
			}
			if !tt.local && (h.Source != netip.MustParseAddrPort(tt.src) || h.Destination != netip.MustParseAddrPort(tt.dst)) {
				t.Errorf("got %v → %v, want %s → %s", h.Source, h.Destination, tt.src, tt.dst)
			}
		})
	}
}

func TestIPParsersAgainstNetip(t *testing.T) {
	for _, s := range []string{
		"0.0.0.0", "255.255.255.255", "1.2.3.4", "01.2.3.4", "1.2.3", "1.2.3.4.", "256.1.1.1", "1.2.3.-4", "",
		"::", "::1", "1::", "1::2", "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
		"1:2:3:4:5:6:7::8", "1:2:3:4:5:6:7:8:9", ":::", "1::2::3", "12345::", "fe80::1%eth0", "::1.2.3.4",
		"1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "::ffff:1.2.3.04", "0:0:0:0:0:0:0:0",
		"ABCD:EF01::", "g::", ":1::", "1:", "::1:", "1::1.2.3.4:5", "::1.2.3", "1.2.3.4::",
	} {
		want, err := netip.ParseAddr(s)
		want4 := err == nil && want.Is4()
		want6 := err == nil && want.Is6() && want.Zone() == ""
		if got, ok := parseIPv4([]byte(s)); ok != want4 || (ok && got != want) {
			t.Errorf("parseIPv4(%q) = %v %v; netip: %v %v", s, got, ok, want, err)
		}
		if got, ok := parseIPv6([]byte(s)); ok != want6 || (ok && got != want) {
			t.Errorf("parseIPv6(%q) = %v %v; netip: %v %v", s, got, ok, want, err)
		}
	}
}

func TestStatusString(t *testing.T) {
	for s, want := range map[Status]string{NeedMore: "need_more", Done: "done", Malformed: "malformed", 9: "unknown"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

// benchHeaders are the headers both parsers are measured on.
func benchHeaders() []struct {
	name string
	b    []byte
} {
	return []struct {
		name string
		b    []byte
	}{
		{"v1-tcp4", []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n")},
		{"v1-tcp6", []byte("PROXY TCP6 2001:db8:85a3::8a2e:370:7334 2001:db8::1 56324 443\r\n")},
		{"v2-tcp4", v2(cmdProxy, 0x11, inet4("10.1.2.3", "10.0.0.1", 40000, 443))},
		{"v2-tcp6-tlvs", v2(cmdProxy, 0x21, slices.Concat(inet6("2001:db8::7", "2001:db8::1", 65535, 1), tlv(0x01, []byte("h2")), tlv(0x02, []byte("example.com"))))},
	}
}

// BenchmarkParse measures Parse against github.com/pires/go-proxyproto on
// the same headers. The library reads from a bufio.Reader: "lib-reused"
// resets one reader per call (its best case), "lib-new" makes one per call
// (what a reader per connection costs).
func BenchmarkParse(b *testing.B) {
	for _, hc := range benchHeaders() {
		b.Run("bal/"+hc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, st := Parse(hc.b, AcceptAny); st != Done {
					b.Fatal(st)
				}
			}
		})
		b.Run("lib-reused/"+hc.name, func(b *testing.B) {
			b.ReportAllocs()
			src := bytes.NewReader(hc.b)
			r := bufio.NewReader(src)
			for b.Loop() {
				src.Reset(hc.b)
				r.Reset(src)
				if _, err := libproxy.Read(r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("lib-new/"+hc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := libproxy.Read(bufio.NewReader(bytes.NewReader(hc.b))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
