package access

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ErrBadPrefix is wrapped by every error about an address rule.
var ErrBadPrefix = errors.New("bad address or CIDR")

// PrefixError names the entry of a rule list that is bad.
type PrefixError struct {
	Index int    // position in the input slice, from 0
	Input string // the entry as given
	Err   error  // wraps ErrBadPrefix
}

func (e *PrefixError) Error() string {
	return fmt.Sprintf("entry %d (%q): %v", e.Index, e.Input, e.Err)
}

func (e *PrefixError) Unwrap() error { return e.Err }

// ParsePrefix parses one rule: a CIDR ("10.0.0.0/8", "2001:db8::/32") or a
// bare address ("192.0.2.7" is a /32, "::1" a /128). The prefix is returned
// as written: host bits below the prefix length are kept (NewPrefixSet masks
// them, as HAProxy and nginx do), so a caller can warn about "10.1.2.3/8"
// with p != p.Masked(). Zones are refused: a rule names addresses, not links.
func ParsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("%w: empty", ErrBadPrefix)
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%w: %w", ErrBadPrefix, err)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: %w", ErrBadPrefix, err)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%w: an address with a zone cannot be a rule", ErrBadPrefix)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParsePrefixes parses a rule list with ParsePrefix. The error is a
// *PrefixError naming the first bad entry.
func ParsePrefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, &PrefixError{Index: i, Input: s, Err: err}
		}
		out[i] = p
	}
	return out, nil
}

// u128 is an IPv6 address as a number, for ordering.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) isMax() bool { return a.hi == ^uint64(0) && a.lo == ^uint64(0) }

func (a u128) next() u128 {
	if a.lo == ^uint64(0) {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, a.lo + 1}
}

func u128Of(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// PrefixSet is an immutable set of IPv4 and IPv6 prefixes with a lookup in
// O(log n) that does not allocate. It is safe for concurrent use. The nil
// set is empty.
//
// The prefixes are normalised when the set is built: host bits are masked,
// IPv4-mapped IPv6 prefixes of length 96 or more (::ffff:10.0.0.0/104)
// become IPv4 prefixes (10.0.0.0/8), and overlapping or adjacent prefixes
// of one family merge into disjoint ranges, kept sorted for a binary search.
// An IPv4-mapped client address (::ffff:a.b.c.d) is looked up as the IPv4
// address, so it matches IPv4 rules and only those; an IPv6 prefix shorter
// than /96 that happens to cover ::ffff:0:0/96 (::/0, say) matches native
// IPv6 clients only, so that a client is judged the same whether the
// listener is dual-stack or IPv4-only.
type PrefixSet struct {
	n          int // prefixes the set was built from
	v4lo, v4hi []uint32
	v6lo, v6hi []u128
}

// NewPrefixSet builds a set from ps. A zero or otherwise invalid prefix is
// reported as a *PrefixError with its index.
func NewPrefixSet(ps []netip.Prefix) (*PrefixSet, error) {
	type r4 struct{ lo, hi uint32 }
	type r6 struct{ lo, hi u128 }
	var v4 []r4
	var v6 []r6
	for i, p := range ps {
		if !p.IsValid() {
			return nil, &PrefixError{Index: i, Input: p.String(), Err: fmt.Errorf("%w: invalid prefix", ErrBadPrefix)}
		}
		a, bits := p.Addr(), p.Bits()
		if a.Is4In6() && bits >= 96 {
			a, bits = a.Unmap(), bits-96
		}
		if a.Is4() {
			mask := ^uint32(0) << (32 - bits) // bits 0: shift by 32 gives 0
			b := a.As4()
			lo := binary.BigEndian.Uint32(b[:]) & mask
			v4 = append(v4, r4{lo, lo | ^mask})
			continue
		}
		x := u128Of(a)
		var mhi, mlo uint64 // network mask
		switch {
		case bits >= 64:
			mhi, mlo = ^uint64(0), ^uint64(0)<<(128-bits)
		default:
			mhi = ^uint64(0) << (64 - bits)
		}
		lo := u128{x.hi & mhi, x.lo & mlo}
		v6 = append(v6, r6{lo, u128{lo.hi | ^mhi, lo.lo | ^mlo}})
	}

	s := &PrefixSet{n: len(ps)}
	slices.SortFunc(v4, func(a, b r4) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	for _, r := range v4 {
		if k := len(s.v4lo) - 1; k >= 0 && (s.v4hi[k] == ^uint32(0) || r.lo <= s.v4hi[k]+1) {
			s.v4hi[k] = max(s.v4hi[k], r.hi)
			continue
		}
		s.v4lo, s.v4hi = append(s.v4lo, r.lo), append(s.v4hi, r.hi)
	}
	slices.SortFunc(v6, func(a, b r6) int {
		switch {
		case a.lo.less(b.lo):
			return -1
		case b.lo.less(a.lo):
			return 1
		}
		return 0
	})
	for _, r := range v6 {
		if k := len(s.v6lo) - 1; k >= 0 && (s.v6hi[k].isMax() || !s.v6hi[k].next().less(r.lo)) {
			if s.v6hi[k].less(r.hi) {
				s.v6hi[k] = r.hi
			}
			continue
		}
		s.v6lo, s.v6hi = append(s.v6lo, r.lo), append(s.v6hi, r.hi)
	}
	s.v4lo, s.v4hi = slices.Clip(s.v4lo), slices.Clip(s.v4hi)
	s.v6lo, s.v6hi = slices.Clip(s.v6lo), slices.Clip(s.v6hi)
	return s, nil
}

// Len is the number of prefixes the set was built from (before merging).
func (s *PrefixSet) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Ranges is the number of disjoint address ranges the prefixes merged into.
func (s *PrefixSet) Ranges() int {
	if s == nil {
		return 0
	}
	return len(s.v4lo) + len(s.v6lo)
}

// Contains reports whether a is in one of the set's prefixes. An
// IPv4-mapped IPv6 address is looked up as IPv4; a zone is ignored; the
// zero Addr is in no set.
func (s *PrefixSet) Contains(a netip.Addr) bool {
	if s == nil {
		return false
	}
	if a.Is4() || a.Is4In6() {
		b := a.Unmap().As4()
		x := binary.BigEndian.Uint32(b[:])
		lo := s.v4lo
		i, j := 0, len(lo) // find the number of ranges starting at or below x
		for i < j {
			h := int(uint(i+j) >> 1)
			if lo[h] <= x {
				i = h + 1
			} else {
				j = h
			}
		}
		return i > 0 && x <= s.v4hi[i-1]
	}
	if !a.Is6() {
		return false
	}
	x := u128Of(a)
	lo := s.v6lo
	i, j := 0, len(lo)
	for i < j {
		h := int(uint(i+j) >> 1)
		if !x.less(lo[h]) {
			i = h + 1
		} else {
			j = h
		}
	}
	return i > 0 && !s.v6hi[i-1].less(x)
}
