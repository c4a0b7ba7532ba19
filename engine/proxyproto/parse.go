package proxyproto

import (
	"encoding/binary"
	"net/netip"
)

// Accept says which PROXY header versions a listening service takes.
type Accept uint8

const (
	AcceptV1  Accept = 1 << iota // only the v1 text header
	AcceptV2                     // only the v2 binary header
	AcceptAny = AcceptV1 | AcceptV2
)

// Limits of the inbound headers.
const (
	// MaxV1Len is the longest v1 line, CRLF included ("PROXY UNKNOWN" with
	// two full IPv6 addresses and ports).
	MaxV1Len = 107
	// V2HeaderLen is the fixed part of a v2 header: signature, version and
	// command, family and protocol, length.
	V2HeaderLen = 16
	// MaxV2Len caps a whole v2 header. The format allows 16+65535 bytes, but
	// the address block is at most 216 bytes and the TLVs senders use (ALPN,
	// authority, SSL details, cloud endpoint ids, unique id) stay far below
	// 1 KiB, so a 4 KiB header is already generous; the cap keeps the bytes a
	// connection may hold before it is admitted small. A longer header is
	// Malformed as soon as its length field is read.
	MaxV2Len = 4096
)

// Status is what Parse decided about the bytes it was given.
type Status uint8

const (
	// NeedMore: the bytes are a valid prefix of a header; read more and call
	// Parse again with everything read so far.
	NeedMore Status = iota
	// Done: a complete header of n bytes; the client's data starts after it.
	Done
	// Malformed: not a header this service accepts.
	Malformed
)

var statusNames = [...]string{NeedMore: "need_more", Done: "done", Malformed: "malformed"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// Header is a parsed inbound PROXY header.
type Header struct {
	Version int // 1 or 2
	// Local is true when the header carries no client address to use: v2
	// LOCAL, v2 AF_UNSPEC or UNSPEC transport, v2 AF_UNIX or datagram
	// transport, v1 UNKNOWN. The connection's own addresses stay in force;
	// Source and Destination are zero.
	Local bool
	// Source is the client, Destination the address it connected to, both
	// as the upstream proxy saw them. IPv4-mapped IPv6 addresses are unmapped.
	Source, Destination netip.AddrPort
	// Reason says in a few words why the status is Malformed (for a debug
	// log); empty otherwise.
	Reason string
}

// The v2 header's fields (version and command byte, family and transport
// byte).
const (
	v2Version      = 0x20
	cmdLocal       = 0x0
	cmdProxy       = 0x1
	famUnspec      = 0x0
	famInet        = 0x1
	famInet6       = 0x2
	famUnix        = 0x3
	transUnspec    = 0x0
	transStream    = 0x1
	transDgram     = 0x2
	addrLenInet    = 2*4 + 2*2
	addrLenInet6   = 2*16 + 2*2
	addrLenUnix    = 2 * 108
	v1Prefix       = "PROXY "
	v1ProtoTCP4    = "TCP4 "
	v1ProtoTCP6    = "TCP6 "
	v1ProtoUnknown = "UNKNOWN"
)

// Parse reads the PROXY header at the start of b, every byte read from the
// connection so far. It returns Done with the header and its length n,
// NeedMore while b is a valid but incomplete prefix, or Malformed as soon as
// the bytes seen cannot start a header that accept allows. A zero accept
// allows nothing. Parse keeps no state, does no I/O, reads nothing past n and
// allocates nothing; with max(MaxV1Len, MaxV2Len) bytes it never returns
// NeedMore.
func Parse(b []byte, accept Accept) (h Header, n int, st Status) {
	if len(b) == 0 {
		return Header{}, 0, NeedMore
	}
	switch b[0] {
	case v1Prefix[0]:
		if accept&AcceptV1 == 0 {
			return malformed("a v1 header where only v2 is accepted")
		}
		return parseV1(b)
	case v2Signature[0]:
		if accept&AcceptV2 == 0 {
			return malformed("a v2 header where only v1 is accepted")
		}
		return parseV2(b)
	}
	return malformed("no PROXY header")
}

func malformed(reason string) (Header, int, Status) {
	return Header{Reason: reason}, 0, Malformed
}

// hasPrefixSoFar reports whether b and prefix agree on their common length.
func hasPrefixSoFar(b []byte, prefix string) bool {
	n := min(len(b), len(prefix))
	return string(b[:n]) == prefix[:n]
}

func parseV2(b []byte) (Header, int, Status) {
	if !hasPrefixSoFar(b, string(v2Signature[:])) {
		return malformed("v2 signature mismatch")
	}
	if len(b) > 12 {
		if b[12]&0xF0 != v2Version {
			return malformed("v2 version is not 2")
		}
		if cmd := b[12] & 0x0F; cmd != cmdLocal && cmd != cmdProxy {
			return malformed("v2 command is neither LOCAL nor PROXY")
		}
	}
	if len(b) > 13 {
		if fam, trans := b[13]>>4, b[13]&0x0F; fam > famUnix || trans > transDgram {
			return malformed("v2 address family or transport unknown")
		}
	}
	if len(b) < V2HeaderLen {
		return Header{}, 0, NeedMore
	}
	cmd, fam, trans := b[12]&0x0F, b[13]>>4, b[13]&0x0F
	size := V2HeaderLen + int(binary.BigEndian.Uint16(b[14:16]))
	if size > MaxV2Len {
		return malformed("v2 header longer than 4096 bytes")
	}
	need := 0
	if cmd == cmdProxy && trans != transUnspec {
		switch fam {
		case famInet:
			need = addrLenInet
		case famInet6:
			need = addrLenInet6
		case famUnix:
			need = addrLenUnix
		}
	}
	if size-V2HeaderLen < need {
		return malformed("v2 length shorter than its address block")
	}
	if len(b) < size {
		return Header{}, 0, NeedMore
	}
	h := Header{Version: 2}
	a := b[V2HeaderLen:size]
	switch {
	case cmd == cmdProxy && trans == transStream && fam == famInet:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:]))
	case cmd == cmdProxy && trans == transStream && fam == famInet6:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])).Unmap(), binary.BigEndian.Uint16(a[32:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])).Unmap(), binary.BigEndian.Uint16(a[34:]))
	default:
		h.Local = true // LOCAL, or a family or transport bal takes no address from
	}
	return h, size, Done
}

func parseV1(b []byte) (Header, int, Status) {
	if !hasPrefixSoFar(b, v1Prefix) {
		return malformed("v1 header does not start with \"PROXY \"")
	}
	rest := b[min(len(b), len(v1Prefix)):]
	var allowed *[256]bool // nil for UNKNOWN, whose line is ignored
	v6 := false
	switch {
	case hasPrefixSoFar(rest, v1ProtoTCP4):
		allowed = &v4Chars
	case hasPrefixSoFar(rest, v1ProtoTCP6):
		allowed, v6 = &v6Chars, true
	case hasPrefixSoFar(rest, v1ProtoUnknown):
		if len(rest) > len(v1ProtoUnknown) && rest[len(v1ProtoUnknown)] != ' ' && rest[len(v1ProtoUnknown)] != '\r' {
			return malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN")
		}
	default:
		return malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN")
	}
	// Find the CRLF within MaxV1Len bytes, rejecting a lone CR or LF and,
	// for TCP4 and TCP6, any byte that cannot be part of the line.
	end := -1
	for i := len(v1Prefix); i < min(len(b), MaxV1Len); i++ {
		c := b[i]
		if c == '\r' {
			if i+1 >= MaxV1Len {
				return malformed("v1 line has no CRLF within 107 bytes")
			}
			if i+1 < len(b) && b[i+1] != '\n' {
				return malformed("v1 line has a CR without LF")
			}
			end = i
			break
		}
		if c == '\n' {
			return malformed("v1 line ends with LF without CR")
		}
		if allowed != nil && i >= len(v1Prefix)+len(v1ProtoTCP4) && !allowed[c] {
			return malformed("v1 address or port has an unexpected character")
		}
	}
	if end < 0 || end+1 >= len(b) {
		if len(b) >= MaxV1Len {
			return malformed("v1 line has no CRLF within 107 bytes")
		}
		return Header{}, 0, NeedMore
	}
	n := end + 2
	if allowed == nil {
		return Header{Version: 1, Local: true}, n, Done
	}
	line := b[len(v1Prefix)+len(v1ProtoTCP4) : end]
	var f [4][]byte
	for k := range f {
		sp := indexByte(line, ' ')
		if k == len(f)-1 {
			if sp >= 0 {
				return malformed("v1 line has more than four fields")
			}
			sp = len(line)
		} else if sp < 0 {
			return malformed("v1 line has fewer than four fields")
		}
		f[k], line = line[:sp], line[min(sp+1, len(line)):]
	}
	var src, dst netip.Addr
	var ok1, ok2 bool
	if v6 {
		src, ok1 = parseIPv6(f[0])
		dst, ok2 = parseIPv6(f[1])
		src, dst = src.Unmap(), dst.Unmap()
	} else {
		src, ok1 = parseIPv4(f[0])
		dst, ok2 = parseIPv4(f[1])
	}
	if !ok1 {
		return malformed("v1 source address invalid for its family")
	}
	if !ok2 {
		return malformed("v1 destination address invalid for its family")
	}
	if leadingZero(f[2]) || leadingZero(f[3]) {
		return malformed("v1 port has a leading zero")
	}
	sport, ok1 := parsePort(f[2])
	dport, ok2 := parsePort(f[3])
	if !ok1 {
		return malformed("v1 source port invalid")
	}
	if !ok2 {
		return malformed("v1 destination port invalid")
	}
	return Header{Version: 1, Source: netip.AddrPortFrom(src, sport), Destination: netip.AddrPortFrom(dst, dport)}, n, Done
}

var v4Chars, v6Chars = charSet("0123456789. "), charSet("0123456789abcdefABCDEF.: ")

func charSet(s string) (t [256]bool) {
	for i := 0; i < len(s); i++ {
		t[s[i]] = true
	}
	return t
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// parseIPv4 reads exactly four decimal numbers 0..255 separated by dots,
// without leading zeros.
func parseIPv4(s []byte) (netip.Addr, bool) {
	a, ok := parseDotted(s)
	return netip.AddrFrom4(a), ok
}

func parseDotted(s []byte) (a [4]byte, ok bool) {
	pos := 0
	for k := range a {
		if k > 0 {
			if pos >= len(s) || s[pos] != '.' {
				return a, false
			}
			pos++
		}
		start, v := pos, 0
		for pos < len(s) && '0' <= s[pos] && s[pos] <= '9' {
			v = v*10 + int(s[pos]-'0')
			pos++
			if v > 255 {
				return a, false
			}
		}
		if pos == start || (pos-start > 1 && s[start] == '0') {
			return a, false
		}
		a[k] = byte(v)
	}
	return a, pos == len(s)
}

// parseIPv6 reads an IPv6 address in the text forms of RFC 4291 §2.2: eight
// groups of 1 to 4 hex digits, one "::" standing for at least one zero group,
// an optional dotted IPv4 tail; no zone.
func parseIPv6(s []byte) (netip.Addr, bool) {
	var ip [16]byte
	ellipsis := -1 // byte offset in ip where "::" stands
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis = 0
		s = s[2:]
	}
	i := 0
	for len(s) > 0 && i < 16 {
		off, acc := 0, 0
		for off < 4 && off < len(s) && hexVal(s[off]) >= 0 {
			acc = acc<<4 | hexVal(s[off])
			off++
		}
		if off == 0 {
			return netip.Addr{}, false
		}
		if off < len(s) && s[off] == '.' {
			if (ellipsis < 0 && i != 12) || i > 12 {
				return netip.Addr{}, false
			}
			v4, ok := parseDotted(s)
			if !ok {
				return netip.Addr{}, false
			}
			copy(ip[i:], v4[:])
			i += 4
			s = nil
			break
		}
		ip[i], ip[i+1] = byte(acc>>8), byte(acc)
		i += 2
		s = s[off:]
		if len(s) == 0 {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return netip.Addr{}, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false
			}
			ellipsis = i
			s = s[1:]
		}
	}
	if len(s) != 0 {
		return netip.Addr{}, false
	}
	switch {
	case i < 16 && ellipsis < 0:
		return netip.Addr{}, false
	case i < 16:
		n := 16 - i
		copy(ip[ellipsis+n:], ip[ellipsis:i])
		clear(ip[ellipsis : ellipsis+n])
	case ellipsis >= 0:
		return netip.Addr{}, false // "::" must stand for at least one group
	}
	return netip.AddrFrom16(ip), true
}

func hexVal(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func leadingZero(s []byte) bool { return len(s) > 1 && s[0] == '0' }

// parsePort reads a decimal port 0..65535 without leading zeros.
func parsePort(s []byte) (uint16, bool) {
	if len(s) == 0 || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	v := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return 0, false
	}
	return uint16(v), true
}
