package access

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func mustPrefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	ps, err := ParsePrefixes(ss)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func mustSet(t testing.TB, ss ...string) *PrefixSet {
	t.Helper()
	s, err := NewPrefixSet(mustPrefixes(t, ss...))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPrefixSetContains(t *testing.T) {
	tests := []struct {
		name   string
		rules  []string
		ranges int // disjoint ranges after merging
		in     []string
		out    []string
	}{
		{
			name: "empty", rules: nil, ranges: 0,
			out: []string{"0.0.0.0", "10.0.0.1", "::", "::1", "::ffff:10.0.0.1", "255.255.255.255"},
		},
		{
			name: "v4", rules: []string{"10.0.0.0/8", "192.168.1.0/24"}, ranges: 2,
			in:  []string{"10.0.0.0", "10.255.255.255", "10.1.2.3", "192.168.1.0", "192.168.1.255", "::ffff:10.9.9.9", "::ffff:192.168.1.7"},
			out: []string{"9.255.255.255", "11.0.0.0", "192.168.0.255", "192.168.2.0", "::a00:1", "2001:db8::1", "::"},
		},
		{
			name: "v6", rules: []string{"2001:db8::/32", "fe80::/10"}, ranges: 2,
			in:  []string{"2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8:1::1", "fe80::1", "fe80::1%eth0", "febf::ffff"},
			out: []string{"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::", "fec0::", "32.1.13.184", "::ffff:32.1.13.184"},
		},
		{
			name: "mapped rule is an IPv4 rule", rules: []string{"::ffff:10.0.0.0/104", "::ffff:192.0.2.7"}, ranges: 2,
			in:  []string{"10.0.0.1", "10.255.255.255", "::ffff:10.1.1.1", "192.0.2.7", "::ffff:192.0.2.7"},
			out: []string{"11.0.0.0", "192.0.2.8", "::a00:1", "::ffff:11.0.0.0"},
		},
		{
			name: "mapped /96 is every IPv4 address", rules: []string{"::ffff:0:0/96"}, ranges: 1,
			in:  []string{"0.0.0.0", "255.255.255.255", "::ffff:1.2.3.4"},
			out: []string{"::1", "::", "::1:0:0", "2001:db8::1"},
		},
		{
			name: "short v6 prefix covering the mapped block matches native IPv6 only", rules: []string{"::/64"}, ranges: 1,
			in:  []string{"::", "::1", "::fffe:1:1"},
			out: []string{"1.2.3.4", "::ffff:1.2.3.4", "0:0:0:1::"},
		},
		{
			name: "a mapped address with a short length is an IPv6 rule", rules: []string{"::ffff:0.0.0.0/0"}, ranges: 1,
			in:  []string{"::", "::1", "2001:db8::1"},
			out: []string{"1.2.3.4", "::ffff:1.2.3.4"},
		},
		{
			name: "overlapping", rules: []string{"10.0.0.0/16", "10.0.128.0/17", "10.0.255.0/24", "10.0.200.0/20", "10.0.0.0/16"}, ranges: 1,
			in:  []string{"10.0.0.0", "10.0.255.255", "10.0.127.255", "10.0.128.0"},
			out: []string{"10.1.0.0", "9.255.255.255"},
		},
		{
			name: "nested", rules: []string{"10.1.2.0/24", "10.0.0.0/8", "10.1.2.3/32", "2001:db8:1::/48", "2001:db8::/32"}, ranges: 2,
			in:  []string{"10.1.2.3", "10.200.0.0", "2001:db8:1::1", "2001:db8:ffff::"},
			out: []string{"11.0.0.0", "2001:db9::"},
		},
		{
			name: "adjacent merge", rules: []string{"10.0.1.0/24", "10.0.0.0/24", "10.0.2.0/23", "2001:db8::/33", "2001:db8:8000::/33"}, ranges: 2,
			in:  []string{"10.0.0.0", "10.0.1.128", "10.0.3.255", "2001:db8::", "2001:db8:ffff::"},
			out: []string{"10.0.4.0", "9.255.255.255", "2001:db9::", "2001:db7::"},
		},
		{
			name: "gaps stay gaps", rules: []string{"10.0.0.0/24", "10.0.2.0/24", "10.0.4.0/24"}, ranges: 3,
			in:  []string{"10.0.0.255", "10.0.2.0", "10.0.4.255"},
			out: []string{"10.0.1.0", "10.0.1.255", "10.0.3.7", "10.0.5.0"},
		},
		{
			name: "host bits masked", rules: []string{"10.1.2.3/8", "2001:db8::1/32"}, ranges: 2,
			in:  []string{"10.0.0.0", "10.255.0.1", "2001:db8::", "2001:db8:ffff::"},
			out: []string{"11.0.0.0", "2001:db9::"},
		},
		{
			name: "v4 /0", rules: []string{"0.0.0.0/0"}, ranges: 1,
			in:  []string{"0.0.0.0", "255.255.255.255", "127.0.0.1", "::ffff:8.8.8.8"},
			out: []string{"::", "::1", "2001:db8::1"},
		},
		{
			name: "v6 /0", rules: []string{"::/0"}, ranges: 1,
			in:  []string{"::", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::1"},
			out: []string{"0.0.0.0", "8.8.8.8", "::ffff:8.8.8.8"},
		},
		{
			name: "/0 and more", rules: []string{"0.0.0.0/0", "10.0.0.0/8", "255.255.255.255", "::/0", "::1"}, ranges: 2,
			in: []string{"0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		},
		{
			name: "/32 and /128", rules: []string{"192.0.2.7/32", "2001:db8::7/128", "255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "0.0.0.0/32", "::/128"}, ranges: 6,
			in:  []string{"192.0.2.7", "2001:db8::7", "255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "0.0.0.0", "::"},
			out: []string{"192.0.2.6", "192.0.2.8", "2001:db8::6", "2001:db8::8", "255.255.255.254", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "0.0.0.1", "::1"},
		},
		{
			name: "top of the space merges", rules: []string{"255.255.255.0/24", "255.255.255.255", "ffff::/16", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"}, ranges: 2,
			in:  []string{"255.255.255.255", "255.255.255.0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
			out: []string{"255.255.254.255", "fffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		},
		{
			name: "v6 ranges crossing the 64-bit halves", rules: []string{"2001:db8:0:0:8000::/65", "2001:db8:0:1::/65"}, ranges: 1,
			in:  []string{"2001:db8:0:0:8000::", "2001:db8::ffff:ffff:ffff:ffff", "2001:db8:0:1::", "2001:db8:0:1:7fff:ffff:ffff:ffff"},
			out: []string{"2001:db8::7fff:ffff:ffff:ffff", "2001:db8:0:1:8000::"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSet(t, tt.rules...)
			if s.Len() != len(tt.rules) {
				t.Errorf("Len = %d, want %d", s.Len(), len(tt.rules))
			}
			if s.Ranges() != tt.ranges {
				t.Errorf("Ranges = %d, want %d", s.Ranges(), tt.ranges)
			}
			for _, a := range tt.in {
				if !s.Contains(netip.MustParseAddr(a)) {
					t.Errorf("Contains(%s) = false, want true", a)
				}
			}
			for _, a := range tt.out {
				if s.Contains(netip.MustParseAddr(a)) {
					t.Errorf("Contains(%s) = true, want false", a)
				}
			}
			if s.Contains(netip.Addr{}) {
				t.Error("Contains(zero Addr) = true")
			}
		})
	}
}

func TestPrefixSetNil(t *testing.T) {
	var s *PrefixSet
	if s.Contains(netip.MustParseAddr("10.0.0.1")) || s.Len() != 0 || s.Ranges() != 0 {
		t.Fatal("nil set is not empty")
	}
}

func TestNewPrefixSetRejectsInvalid(t *testing.T) {
	ps := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}, netip.MustParsePrefix("::/0")}
	_, err := NewPrefixSet(ps)
	var pe *PrefixError
	if !errors.As(err, &pe) || pe.Index != 1 || !errors.Is(err, ErrBadPrefix) {
		t.Fatalf("err = %v, want a PrefixError at index 1 wrapping ErrBadPrefix", err)
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = error
	}{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"192.0.2.7", "192.0.2.7/32"},
		{"::1", "::1/128"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"::/0", "::/0"},
		{"10.1.2.3/8", "10.1.2.3/8"}, // kept as written; the set masks it
		{"::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104"},
		{"", ""},
		{" 10.0.0.0/8", ""},
		{"10.0.0.0/33", ""},
		{"10.0.0.0/-1", ""},
		{"::/129", ""},
		{"10.0.0.256", ""},
		{"010.0.0.1", ""},
		{"10/8", ""},
		{"10.0.0.0/8/8", ""},
		{"fe80::1%eth0", ""},
		{"fe80::%eth0/64", ""},
		{"example.com", ""},
		{"10.0.0.0/", ""},
		{"/8", ""},
	}
	for _, tt := range tests {
		p, err := ParsePrefix(tt.in)
		if tt.want == "" {
			if err == nil || !errors.Is(err, ErrBadPrefix) {
				t.Errorf("ParsePrefix(%q) = %v, %v; want an ErrBadPrefix error", tt.in, p, err)
			}
			continue
		}
		if err != nil || p.String() != tt.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
}

func TestParsePrefixesNamesTheBadEntry(t *testing.T) {
	_, err := ParsePrefixes([]string{"10.0.0.0/8", "::1", "10.0.0.0/99", "bad"})
	var pe *PrefixError
	if !errors.As(err, &pe) || pe.Index != 2 || pe.Input != "10.0.0.0/99" || !errors.Is(err, ErrBadPrefix) {
		t.Fatalf("err = %v, want entry 2 named", err)
	}
	t.Log(err)
	ps, err := ParsePrefixes([]string{"10.1.2.3/8", "10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	if ps[0] == ps[0].Masked() || ps[1] != ps[1].Masked() {
		t.Fatalf("host bits not visible to the caller: %v", ps)
	}
}

// naive is the reference: a linear scan over the prefixes in their
// canonical form (mapped /96+ prefixes as IPv4), the address unmapped.
type naive []netip.Prefix

func newNaive(ps []netip.Prefix) naive {
	out := make(naive, len(ps))
	for i, p := range ps {
		a, bits := p.Addr(), p.Bits()
		if a.Is4In6() && bits >= 96 {
			a, bits = a.Unmap(), bits-96
		}
		out[i] = netip.PrefixFrom(a, bits).Masked()
	}
	return out
}

func (n naive) contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range n {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// randomPrefixes draws n prefixes: IPv4, IPv6 and mapped, lengths mostly
// long, a few down to half the address (the table covers shorter ones),
// clustered in a few blocks so that
// they overlap, nest and touch.
func randomPrefixes(r *rand.Rand, n int) []netip.Prefix {
	ps := make([]netip.Prefix, n)
	for i := range ps {
		var a netip.Addr
		var bits int
		switch r.IntN(10) {
		case 0, 1, 2, 3, 4:
			b := [4]byte{byte(10 + r.IntN(4)), byte(r.IntN(4)), byte(r.Uint32()), byte(r.Uint32())}
			a, bits = netip.AddrFrom4(b), randBits(r, 32)
		case 5:
			b := [16]byte{10: 0xff, 11: 0xff, 12: byte(10 + r.IntN(4)), 13: byte(r.IntN(4)), 14: byte(r.Uint32()), 15: byte(r.Uint32())}
			a, bits = netip.AddrFrom16(b), 96+randBits(r, 32)
		default:
			var b [16]byte
			b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, byte(0xb8+r.IntN(2))
			for j := 4; j < 16; j++ {
				if r.IntN(3) > 0 {
					b[j] = byte(r.Uint32())
				}
			}
			a, bits = netip.AddrFrom16(b), randBits(r, 128)
		}
		ps[i] = netip.PrefixFrom(a, bits)
	}
	return ps
}

func randBits(r *rand.Rand, max int) int {
	if r.IntN(20) == 0 {
		return max/2 + r.IntN(max/2+1)
	}
	return max - r.IntN(max/4+1)
}

// randomAddr draws an address near the prefixes: inside one of them, one
// past its end, or anywhere in the blocks; sometimes mapped or zoned.
func randomAddr(r *rand.Rand, ps []netip.Prefix) netip.Addr {
	p := ps[r.IntN(len(ps))].Masked()
	a := p.Addr()
	switch r.IntN(4) {
	case 0: // the first address
	case 1: // inside: random host bits
		b := a.As16()
		host := a.BitLen() - p.Bits()
		for bit := 0; bit < host; bit++ {
			if r.IntN(2) == 1 {
				pos := 127 - bit
				b[pos/8] |= 1 << (7 - pos%8)
			}
		}
		a = netip.AddrFrom16(b)
		if p.Addr().Is4() {
			a = a.Unmap()
		}
	case 2: // just past the last address
		b := a.As16()
		host := a.BitLen() - p.Bits()
		for bit := 0; bit < host; bit++ {
			pos := 127 - bit
			b[pos/8] |= 1 << (7 - pos%8)
		}
		n := netip.AddrFrom16(b).Next()
		if !n.IsValid() {
			n = netip.IPv6Unspecified()
		}
		a = n
		if p.Addr().Is4() && a.Is4In6() {
			a = a.Unmap()
		}
	default:
		a = randomPrefixes(r, 1)[0].Addr()
	}
	switch r.IntN(8) {
	case 0:
		if a.Is4() {
			a = netip.AddrFrom16(a.As16())
		}
	case 1:
		if a.Is6() && !a.Is4In6() {
			a = a.WithZone("eth0")
		}
	}
	return a
}

func TestPrefixSetMatchesLinearScan(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for _, c := range []struct{ prefixes, rounds, addrs int }{
		{1, 50, 200}, {2, 50, 200}, {10, 50, 500}, {100, 20, 2000}, {1000, 2, 3000}, {3000, 1, 3000},
	} {
		for range c.rounds {
			ps := randomPrefixes(r, c.prefixes)
			s, err := NewPrefixSet(ps)
			if err != nil {
				t.Fatal(err)
			}
			ref := newNaive(ps)
			hits := 0
			for range c.addrs {
				a := randomAddr(r, ps)
				got, want := s.Contains(a), ref.contains(a)
				if got != want {
					t.Fatalf("%d prefixes: Contains(%s) = %v, linear scan says %v", c.prefixes, a, got, want)
				}
				if want {
					hits++
				}
			}
			if c.prefixes >= 100 && (hits < c.addrs/10 || hits > c.addrs*9/10) {
				t.Fatalf("%d prefixes: %d of %d addresses hit, the draw tests mostly one side", c.prefixes, hits, c.addrs)
			}
		}
	}
}

func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "::ffff:10.0.0.0/104", "192.0.2.7", "::1", "fe80::1%eth0", "10.1.2.3/8", "0.0.0.0/0", "::/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			if !errors.Is(err, ErrBadPrefix) {
				t.Fatalf("error %v does not wrap ErrBadPrefix", err)
			}
			return
		}
		set, err := NewPrefixSet([]netip.Prefix{p})
		if err != nil {
			t.Fatalf("parsed %q to %v, which the set refuses: %v", s, p, err)
		}
		// A prefix shorter than /96 is IPv6 even when written with a mapped
		// address (::ffff:0.0.0.0/0 is ::/0), and mapped clients match only
		// IPv4 rules.
		if p.Addr().Is4In6() && p.Bits() < 96 {
			return
		}
		if !set.Contains(p.Addr()) || !set.Contains(p.Masked().Addr()) {
			t.Fatalf("set of %v does not hold its own address", p)
		}
	})
}

func benchPrefixes(n int) ([]netip.Prefix, []netip.Addr) {
	r := rand.New(rand.NewPCG(uint64(n), 2))
	ps := make([]netip.Prefix, n)
	for i := range ps { // disjoint-ish, as a real allow list: /16 to /32
		if i%2 == 0 {
			b := [4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
			ps[i] = netip.PrefixFrom(netip.AddrFrom4(b), 16+r.IntN(17))
		} else {
			var b [16]byte
			b[0], b[1] = 0x20, 0x01
			for j := 2; j < 16; j++ {
				b[j] = byte(r.Uint32())
			}
			ps[i] = netip.PrefixFrom(netip.AddrFrom16(b), 32+r.IntN(97))
		}
	}
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = randomAddr(r, ps)
	}
	return ps, addrs
}

func BenchmarkPrefixSetContains(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		ps, addrs := benchPrefixes(n)
		s, err := NewPrefixSet(ps)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			hits := 0
			for i := 0; b.Loop(); i++ {
				if s.Contains(addrs[i&1023]) {
					hits++
				}
			}
			if hits == 0 {
				b.Fatal("no hit")
			}
		})
		b.Run(fmt.Sprintf("prefixes=%d/linear", n), func(b *testing.B) {
			ref := newNaive(ps)
			for i := 0; b.Loop(); i++ {
				ref.contains(addrs[i&1023])
			}
		})
	}
}
