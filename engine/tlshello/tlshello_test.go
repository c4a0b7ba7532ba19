package tlshello

import (
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// checkHello parses a complete real hello and checks its fields, then the
// properties every hello must have whatever client sent it.
func checkHello(t *testing.T, b []byte, sni string, alpn []string) {
	t.Helper()
	h, st := Parse(b)
	if st != Done {
		t.Fatalf("Parse = %v (%s), want done; %d bytes", st, h.Reason, len(b))
	}
	if h.SNI != sni || !slices.Equal(h.ALPN, alpn) || h.Len != len(b) {
		t.Fatalf("got SNI %q ALPN %q Len %d, want %q %q %d", h.SNI, h.ALPN, h.Len, sni, alpn, len(b))
	}
	// Bytes after the hello (early data, the next segment) change nothing.
	more := append(slices.Clip(b), 23, 3, 3, 0, 1, 0xff)
	if h2, st2 := Parse(more); st2 != Done || h2.SNI != sni || !slices.Equal(h2.ALPN, alpn) || h2.Len != len(b) {
		t.Errorf("with trailing bytes: %v %+v", st2, h2)
	}
	// Every TCP segmentation is a sequence of prefixes.
	for i := range len(b) {
		if p, st := Parse(b[:i]); st != NeedMore {
			t.Fatalf("prefix of %d/%d bytes = %v (%s), want need_more", i, len(b), st, p.Reason)
		}
	}
	msg := handshakeMessage(t, b)
	// Re-split into records of many sizes, down to one byte each.
	for _, size := range []int{1, 2, 3, 7, 64, 500, MaxRecordPayload} {
		rb := records(msg, size)
		h, st := Parse(rb)
		want := Done
		if len(rb) > MaxHello {
			want = TooLarge
		}
		if st != want {
			t.Fatalf("records of %d bytes (%d in all): %v (%s), want %v", size, len(rb), st, h.Reason, want)
		}
		if st == Done && (h.SNI != sni || !slices.Equal(h.ALPN, alpn) || h.Len != len(rb)) {
			t.Fatalf("records of %d bytes: %+v", size, h)
		}
	}
	// Split across two records at every point.
	for cut := 1; cut < len(msg); cut++ {
		rb := append(records(msg[:cut], MaxRecordPayload), records(msg[cut:], MaxRecordPayload)...)
		if h, st := Parse(rb); st != Done || h.SNI != sni || !slices.Equal(h.ALPN, alpn) || h.Len != len(rb) {
			t.Fatalf("split at %d: %v (%s) %+v", cut, st, h.Reason, h)
		}
	}
}

// handshakeMessage joins the payloads of b's records.
func handshakeMessage(t testing.TB, b []byte) []byte {
	t.Helper()
	var msg []byte
	for len(b) > 0 {
		if len(b) < RecordHeaderLen {
			t.Fatal("truncated record header")
		}
		n := int(binary.BigEndian.Uint16(b[3:]))
		msg = append(msg, b[RecordHeaderLen:RecordHeaderLen+n]...)
		b = b[RecordHeaderLen+n:]
	}
	return msg
}

// records frames msg as handshake records of at most size payload bytes.
func records(msg []byte, size int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, RecordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func TestRealHellos(t *testing.T) {
	for _, lh := range liveHellos {
		t.Run(lh.file, func(t *testing.T) {
			checkHello(t, loadHello(t, lh.file), lh.sni, lh.alpn)
		})
	}
}

// Builders for synthetic hellos.

func u16(v int) []byte { return []byte{byte(v >> 8), byte(v)} }

func ext(typ int, data []byte) []byte {
	return slices.Concat(u16(typ), u16(len(data)), data)
}

// nameList builds a ServerNameList of host_name entries.
func nameList(names ...string) []byte {
	var l []byte
	for _, n := range names {
		l = slices.Concat(l, []byte{NameTypeHostName}, u16(len(n)), []byte(n))
	}
	return slices.Concat(u16(len(l)), l)
}

func sniExt(names ...string) []byte { return ext(ExtensionServerName, nameList(names...)) }

func alpnExt(protos ...string) []byte {
	var l []byte
	for _, p := range protos {
		l = append(append(l, byte(len(p))), p...)
	}
	return ext(ExtensionALPN, slices.Concat(u16(len(l)), l))
}

// helloBody builds a ClientHello body; exts nil omits the extensions block.
func helloBody(sessionID, suites, comp int, exts ...[]byte) []byte {
	b := []byte{3, 3}
	b = append(b, make([]byte, 32)...)
	b = append(append(b, byte(sessionID)), make([]byte, sessionID)...)
	b = append(append(b, u16(2*suites)...), make([]byte, 2*suites)...)
	b = append(append(b, byte(comp)), make([]byte, comp)...)
	if exts != nil {
		all := slices.Concat(exts...)
		b = append(append(b, u16(len(all))...), all...)
	}
	return b
}

func message(body []byte) []byte {
	n := len(body)
	return slices.Concat([]byte{HandshakeTypeClientHello, byte(n >> 16), byte(n >> 8), byte(n)}, body)
}

// hello is a whole well-formed hello in one record.
func hello(exts ...[]byte) []byte {
	return records(message(helloBody(32, 16, 1, exts...)), MaxRecordPayload)
}

func TestSynthetic(t *testing.T) {
	long := strings.Repeat("a", 63)
	name255 := strings.Join([]string{long, long, long, strings.Repeat("b", 63)}, ".") // 255 bytes
	tests := []struct {
		name string
		b    []byte
		sni  string
		alpn []string
	}{
		{"no extensions block", records(message(helloBody(0, 1, 1)), 100), "", nil},
		{"empty extensions block", hello([]byte{}), "", nil},
		{"sni only", hello(sniExt("example.com")), "example.com", nil},
		{"alpn only", hello(alpnExt("h2")), "", []string{"h2"}},
		{"sni after others", hello(ext(43, []byte{2, 3, 4}), ext(0xfe0d, make([]byte, 200)), sniExt("a.b"), alpnExt("x", "y")), "a.b", []string{"x", "y"}},
		{"trailing dot", hello(sniExt("Example.COM.")), "Example.COM.", nil},
		{"underscore and digits", hello(sniExt("_acme-1.x9.io")), "_acme-1.x9.io", nil},
		{"255-byte name", hello(sniExt(name255)), name255, nil},
		{"other name type skipped", hello(ext(0, slices.Concat(u16(12), []byte{7, 0, 1, 'z'}, []byte{0, 0, 5}, []byte("ab.cd")))), "ab.cd", nil},
		{"only other name type", hello(ext(0, slices.Concat(u16(4), []byte{7, 0, 1, 'z'}))), "", nil},
		{"empty extension of unknown type", hello(ext(0x1234, nil), sniExt("q")), "q", nil},
		{"binary alpn", hello(alpnExt("\x00\xff", strings.Repeat("p", 255))), "", []string{"\x00\xff", strings.Repeat("p", 255)}},
		{"legacy version 2.0 (left to the server)", records(message(append([]byte{2, 0}, helloBody(0, 1, 1)[2:]...)), 100), "", nil},
		{"session id 0", records(message(helloBody(0, 1, 1, sniExt("s"))), 9), "s", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, st := Parse(tt.b)
			if st != Done || h.SNI != tt.sni || !slices.Equal(h.ALPN, tt.alpn) || h.Len != len(tt.b) {
				t.Fatalf("Parse = %v (%s) %+v, want done %q %q", st, h.Reason, h, tt.sni, tt.alpn)
			}
		})
	}
}

func TestRejects(t *testing.T) {
	good := hello(sniExt("example.com"), alpnExt("h2"))
	msg := handshakeMessage(t, good)
	corrupt := func(b []byte, at int, v byte) []byte {
		b = slices.Clone(b)
		b[at] = v
		return b
	}
	withBody := func(body []byte) []byte { return records(message(body), MaxRecordPayload) }
	recordHdr := func(typ byte, n int) []byte { return []byte{typ, 3, 1, byte(n >> 8), byte(n)} }
	tests := []struct {
		name string
		b    []byte
		want Status
	}{
		// Not TLS, decided from the first bytes.
		{"http", []byte("G"), NotTLS},
		{"ssh", []byte("SSH-2.0-OpenSSH_9.2\r\n"), NotTLS},
		{"proxy header", []byte("PROXY TCP4 "), NotTLS},
		{"sslv2 hello", []byte{0x80, 0x2e, 0x01}, NotTLS},
		{"alert record", []byte{21, 3, 3, 0, 2, 2, 40}, NotTLS},
		{"record version 2", []byte{22, 2}, NotTLS},
		// Framing.
		{"zero-length record", recordHdr(22, 0), Malformed},
		{"second record not handshake", append(records(msg[:10], 10), 23), Malformed},
		{"second record bad version", append(records(msg[:10], 10), 22, 2), Malformed},
		{"second record empty", append(records(msg[:10], 10), recordHdr(22, 0)...), Malformed},
		{"not a client hello", corrupt(good, 5, 2), Malformed},
		{"hello shorter than fixed fields", records(message(make([]byte, 40)), 100), Malformed},
		{"bytes after hello in its record", records(append(slices.Clone(msg), 0), MaxRecordPayload), Malformed},
		{"bytes after hello announced", recordHdr(22, len(msg)+1), NeedMore},
		{"bytes after hello announced, header seen", append(recordHdr(22, len(msg)+1), msg[:4]...), Malformed},
		// Fixed fields.
		{"session id 33", withBody(helloBody(33, 1, 1)), Malformed},
		{"odd cipher suites", corrupt(good, 5+4+2+32+1+32+1, 3), Malformed},
		{"no cipher suites", withBody(slices.Concat([]byte{3, 3}, make([]byte, 32), []byte{0, 0, 0, 1, 0, 0, 0})), Malformed},
		{"no compression", withBody(slices.Concat(helloBody(0, 4, 0), []byte{0, 0})), Malformed},
		{"fixed fields truncated", withBody(slices.Concat([]byte{3, 3}, make([]byte, 32), []byte{20}, make([]byte, 6))), Malformed},
		{"one byte of extensions length", withBody(append(helloBody(0, 1, 1), 0)), Malformed},
		// Extensions.
		{"extensions length too long", withBody(append(helloBody(0, 1, 1), 0, 5, 0, 0, 0, 0)), Malformed},
		{"extensions length too short", withBody(append(helloBody(0, 1, 1), 0, 3, 0, 0, 0, 0)), Malformed},
		{"extension truncated", withBody(append(helloBody(0, 1, 1), 0, 4, 0, 0, 0, 9)), Malformed},
		{"extension header truncated", withBody(append(helloBody(0, 1, 1), 0, 3, 0, 0, 0)), Malformed},
		{"duplicate sni", hello(sniExt("a.com"), sniExt("a.com")), Malformed},
		{"duplicate alpn", hello(alpnExt("h2"), alpnExt("h2")), Malformed},
		{"two host names", hello(sniExt("a.com", "b.com")), Malformed},
		{"empty server_name extension", hello(ext(0, nil)), Malformed},
		{"empty server_name list", hello(ext(0, u16(0))), Malformed},
		{"server_name list too long", hello(ext(0, slices.Concat(u16(9), []byte{0, 0, 1, 'a'}))), Malformed},
		{"server_name entry truncated", hello(ext(0, slices.Concat(u16(4), []byte{0, 0, 5, 'a'}))), Malformed},
		{"empty host name", hello(sniExt("")), Malformed},
		{"host name with nul", hello(sniExt("a\x00.com")), Malformed},
		{"host name with space", hello(sniExt("a b.com")), Malformed},
		{"host name with control", hello(sniExt("a\n.com")), Malformed},
		{"host name non-ascii", hello(sniExt("bücher.de")), Malformed},
		{"host name 256 bytes", hello(sniExt(strings.Repeat("a.", 128))), Malformed},
		{"label 64 bytes", hello(sniExt(strings.Repeat("a", 64) + ".com")), Malformed},
		{"empty label", hello(sniExt("a..com")), Malformed},
		{"leading dot", hello(sniExt(".a.com")), Malformed},
		{"only a dot", hello(sniExt(".")), Malformed},
		{"two trailing dots", hello(sniExt("a.com..")), Malformed},
		{"empty alpn extension", hello(ext(16, nil)), Malformed},
		{"empty alpn list", hello(ext(16, u16(0))), Malformed},
		{"empty alpn name", hello(ext(16, slices.Concat(u16(3), []byte{0, 1, 'a'}))), Malformed},
		{"alpn name truncated", hello(ext(16, slices.Concat(u16(2), []byte{5, 'a'}))), Malformed},
		{"alpn list length wrong", hello(ext(16, slices.Concat(u16(2), []byte{2, 'h', '2'}))), Malformed},
		// Size bounds, decided from the header alone.
		{"record over 2^14", recordHdr(22, MaxRecordPayload+1), TooLarge},
		{"record ending past MaxHello", recordHdr(22, MaxHello-RecordHeaderLen+1), TooLarge},
		{"handshake over MaxHello", append(recordHdr(22, 100), 1, 0, 0x40, 0x01), TooLarge},
		{"handshake over MaxHello, split header", slices.Concat(recordHdr(22, 2), []byte{1, 0}, recordHdr(22, 200), []byte{0x40, 0x01}), TooLarge},
		{"hello cannot end within MaxHello", append(recordHdr(22, 100), 1, 0, 0x3f, 0xf8), TooLarge},
		{"hello exactly MaxHello in one record", append(recordHdr(22, MaxHello-RecordHeaderLen), 1, 0, 0x3f, 0xf7), NeedMore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, st := Parse(tt.b)
			if st != tt.want {
				t.Fatalf("Parse(% x) = %v (%s), want %v", tt.b[:min(len(tt.b), 48)], st, h.Reason, tt.want)
			}
			if st != Done && (h.SNI != "" || h.ALPN != nil || h.Len != 0) {
				t.Errorf("non-done result carries fields: %+v", h)
			}
			if (st == Malformed || st == NotTLS || st == TooLarge) != (h.Reason != "") {
				t.Errorf("reason %q for %v", h.Reason, st)
			}
			// A decision is final: more bytes do not change it.
			if st != NeedMore {
				if _, st2 := Parse(append(slices.Clip(tt.b), make([]byte, 64)...)); st2 != st {
					t.Errorf("with more bytes: %v, want %v", st2, st)
				}
			}
		})
	}
}

// TestCorruptRealHellos flips every byte of every real hello a few ways:
// never a panic, never a length past the input, and a changed byte inside
// the host name or the framing never yields the original name silently.
func TestCorruptRealHellos(t *testing.T) {
	for _, lh := range liveHellos {
		b := loadHello(t, lh.file)
		for i := range b {
			for _, v := range []byte{0, 0xff, b[i] + 1, b[i] ^ 0x80} {
				if v == b[i] {
					continue
				}
				c := slices.Clone(b)
				c[i] = v
				h, st := Parse(c)
				if h.Len > len(c) {
					t.Fatalf("%s byte %d=%#x: Len %d > %d", lh.file, i, v, h.Len, len(c))
				}
				if st == Done && h.SNI != "" && !ValidName(h.SNI) {
					t.Fatalf("%s byte %d=%#x: invalid SNI %q", lh.file, i, v, h.SNI)
				}
				if i < 3 && st != NotTLS && st != Malformed && !(i == 2 && st == Done) {
					t.Fatalf("%s record header byte %d=%#x: %v", lh.file, i, v, st)
				}
			}
			// Truncated at i, then padded with zeros.
			c := append(slices.Clone(b[:i]), make([]byte, len(b)-i)...)
			if h, st := Parse(c); h.Len > len(c) || (st == Done && h.SNI != "" && !ValidName(h.SNI)) {
				t.Fatalf("%s zeroed from %d: %v %+v", lh.file, i, st, h)
			}
		}
	}
}

func TestNeedMoreOnlyBelowMaxHello(t *testing.T) {
	// One-byte records: the bound is reached by the records' headers.
	msg := message(helloBody(32, 2000, 1, sniExt("big.example")))
	rb := records(msg, 1)
	if _, st := Parse(rb[:MaxHello]); st != TooLarge {
		t.Fatalf("MaxHello bytes of 1-byte records: %v, want too_large", st)
	}
	for i := 0; i < MaxHello; i += 997 {
		if _, st := Parse(rb[:i]); st != NeedMore && st != TooLarge {
			t.Fatalf("prefix %d: %v", i, st)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "A.b", "x-1.example.com.", "_dmarc.example", strings.Repeat("a", 63), "127.0.0.1"} {
		if !ValidName(ok) {
			t.Errorf("ValidName(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", ".", "a..b", ".a", "a b", "a\x00", "a/b", "a:443", "*.a.com", strings.Repeat("a", 64), "é.com"} {
		if ValidName(bad) {
			t.Errorf("ValidName(%q) = true", bad)
		}
	}
}

func TestNormalizeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"example.com", "example.com"},
		{"Example.COM", "example.com"},
		{"example.com.", "example.com"},
		{"API.Example.Com.", "api.example.com"},
		{"a..", "a."},
		{"_X-1", "_x-1"},
	}
	for _, tt := range tests {
		if got := NormalizeName(tt.in); got != tt.want {
			t.Errorf("NormalizeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { NormalizeName("already.lower.") }); n != 0 {
		t.Errorf("NormalizeName of a lowercase name allocates %v times", n)
	}
}

func TestStatusString(t *testing.T) {
	names := map[Status]string{NeedMore: "need_more", Done: "done", NotTLS: "not_tls", Malformed: "malformed", TooLarge: "too_large", 99: "unknown"}
	for s, want := range names {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

func TestParseAllocations(t *testing.T) {
	b := loadHello(t, "go-tls13.hex")
	if n := testing.AllocsPerRun(100, func() { Parse(b) }); n > 2 {
		t.Errorf("Parse of a hello with SNI and ALPN: %v allocations, want ≤ 2", n)
	}
	for _, i := range []int{100, len(b) - 1} {
		if n := testing.AllocsPerRun(100, func() { Parse(b[:i]) }); n != 0 {
			t.Errorf("Parse of a %d-byte prefix allocates %v times", i, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { Parse([]byte("GET / HTTP/1.1\r\n")) }); n != 0 {
		t.Errorf("Parse of plain text allocates %v times", n)
	}
}

func BenchmarkParse(b *testing.B) {
	for _, file := range []string{"go-tls13.hex", "curl.hex", "openssl.hex", "go-tls12.hex"} {
		hello := loadHello(b, file)
		b.Run(strings.TrimSuffix(file, ".hex")+"/"+strconv.Itoa(len(hello))+"B", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(hello)))
			for b.Loop() {
				if _, st := Parse(hello); st != Done {
					b.Fatal(st)
				}
			}
		})
	}
	hello := loadHello(b, "go-tls13.hex")
	b.Run("need-more-half", func(b *testing.B) {
		b.ReportAllocs()
		half := hello[:len(hello)/2]
		for b.Loop() {
			Parse(half)
		}
	})
	split := records(handshakeMessage(b, hello), 512)
	b.Run("4-records", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, st := Parse(split); st != Done {
				b.Fatal(st)
			}
		}
	})
}
