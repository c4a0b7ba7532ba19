package proxyproto

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	libproxy "github.com/pires/go-proxyproto"
)

var update = flag.Bool("update", false, "rewrite the seed corpus under testdata/fuzz")

// libAddrs parses b with github.com/pires/go-proxyproto and returns the TCP
// addresses it read, ok false when it rejects b or reads no TCP addresses.
func libAddrs(b []byte) (src, dst netip.AddrPort, ok bool) {
	h, err := libproxy.Read(bufio.NewReader(bytes.NewReader(b)))
	if err != nil || h.Command != libproxy.PROXY {
		return src, dst, false
	}
	s, d, ok := h.TCPAddrs()
	if !ok {
		return src, dst, false
	}
	return unmap(s.AddrPort()), unmap(d.AddrPort()), true
}

// libAcceptsMore lists the reasons for which go-proxyproto accepts a
// header that Parse rejects on purpose.
var libAcceptsMore = []string{
	// Each is against the spec's text; the library splits the line on
	// spaces, checks only "PROXY" of the first, ignores fields past the sixth
	// (even one holding a lone CR), reads ports with strconv.Atoi
	// (signs, leading zeros) and addresses with netip.ParseAddr (zones).
	"v1 header does not start with \"PROXY \"",
	"v1 port has a leading zero",
	"v1 line has more than four fields",
	"v1 line has a CR without LF",
	"v1 address or port has an unexpected character",
}

func FuzzParse(f *testing.F) {
	for _, c := range goodCases() {
		f.Add(c.in, byte(AcceptAny))
	}
	f.Fuzz(func(t *testing.T, b []byte, acc byte) {
		accept := Accept(acc) & AcceptAny
		h, n, st := Parse(b, accept)
		if n < 0 || n > len(b) || (n > 0) != (st == Done) {
			t.Fatalf("%v with n=%d of %d", st, n, len(b))
		}
		if st == NeedMore && len(b) >= MaxV2Len {
			t.Fatalf("need_more with %d bytes", len(b))
		}
		if (st == Malformed) != (h.Reason != "") {
			t.Fatalf("%v with reason %q", st, h.Reason)
		}
		switch st {
		case Malformed:
			if accept == AcceptAny && !slices.Contains(libAcceptsMore, h.Reason) {
				if ls, ld, ok := libAddrs(b); ok {
					t.Fatalf("go-proxyproto reads %v → %v, Parse rejects: %s", ls, ld, h.Reason)
				}
			}
			if _, _, st2 := Parse(append(slices.Clip(b), 0, '\r', '\n'), accept); st2 != Malformed {
				t.Fatalf("more bytes after a rejection gave %v", st2)
			}
			return
		case NeedMore:
			return
		}
		// Done: the header alone gives the same, every shorter read waits.
		if h2, n2, st2 := Parse(b[:n], accept); st2 != Done || n2 != n || h2 != h {
			t.Fatalf("header alone: %v %d %+v, with the rest: %d %+v", st2, n2, h2, n, h)
		}
		if _, _, st2 := Parse(b[:n-1], accept); st2 != NeedMore {
			t.Fatalf("one byte short: %v", st2)
		}
		if want := 1 + btoi(b[0] == v2Signature[0]); h.Version != want {
			t.Fatalf("version %d for a header starting %q", h.Version, b[0])
		}
		if h.Local {
			if h.Source.IsValid() || h.Destination.IsValid() {
				t.Fatalf("local with addresses: %+v", h)
			}
			return
		}
		if h.Source.Addr().Is4In6() || h.Destination.Addr().Is4In6() || h.Source.Addr().Zone() != "" {
			t.Fatalf("addresses not unmapped or zoned: %+v", h)
		}
		// Re-encoded by Append, both versions parse to the same addresses.
		for _, v := range []int{1, 2} {
			re := appendHeader(nil, v, h.Source, h.Destination)
			hr, nr, sr := Parse(re, AcceptAny)
			if sr != Done || nr != len(re) || hr.Source != h.Source || hr.Destination != h.Destination {
				t.Fatalf("v%d re-encoding %q parses to %v %+v, want %+v", v, re, sr, hr, h)
			}
		}
		// The library reads the same addresses from what Parse accepts.
		ls, ld, ok := libAddrs(b[:n])
		if !ok || ls != h.Source || ld != h.Destination {
			t.Fatalf("go-proxyproto reads %v → %v (ok %v), Parse %v → %v", ls, ld, ok, h.Source, h.Destination)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FuzzAddr checks the address parsers against net/netip.
func FuzzAddr(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::", "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8", "fe80::1%eth0", "01.2.3.4", "1::2::3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := netip.ParseAddr(s)
		if got, ok := parseIPv4([]byte(s)); ok != (err == nil && want.Is4()) || ok && got != want {
			t.Fatalf("parseIPv4(%q) = %v %v; netip %v %v", s, got, ok, want, err)
		}
		if got, ok := parseIPv6([]byte(s)); ok != (err == nil && want.Is6() && want.Zone() == "") || ok && got != want {
			t.Fatalf("parseIPv6(%q) = %v %v; netip %v %v", s, got, ok, want, err)
		}
	})
}

// TestWriteFuzzSeeds rewrites testdata/fuzz from the test cases (run with
// -update).
func TestWriteFuzzSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite the seed corpus")
	}
	write := func(target, name, body string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	seed := func(name string, b []byte, accept Accept) {
		write("FuzzParse", name, fmt.Sprintf("[]byte(%q)\nbyte(%d)\n", b, accept))
	}
	for i, c := range goodCases() {
		seed(fmt.Sprintf("good-%02d", i), c.in, c.accept)
	}
	seed("v1-on-v2", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), AcceptV2)
	seed("v2-on-v1", v2(cmdProxy, 0x11, inet4("1.1.1.1", "2.2.2.2", 3, 4)), AcceptV1)
	seed("v1-port-leading-zero", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), AcceptAny)
	seed("v1-ipv6-two-ellipses", []byte("PROXY TCP6 1::2::3 ::1 1 2\r\n"), AcceptAny)
	seed("v1-no-crlf", []byte("PROXY UNKNOWN "+string(make([]byte, 100))), AcceptAny)
	seed("v2-over-max", []byte(string(v2Signature[:])+"\x21\x11\x0f\xf1"), AcceptAny)
	seed("v2-unix", v2(cmdProxy, 0x31, make([]byte, addrLenUnix)), AcceptAny)
	for i, s := range []string{"1.2.3.4", "::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7::8", "fe80::1%eth0", "01.2.3.4"} {
		write("FuzzAddr", fmt.Sprintf("addr-%02d", i), fmt.Sprintf("string(%q)\n", s))
	}
}
