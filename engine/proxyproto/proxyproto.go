// Package proxyproto reads and writes PROXY protocol headers (v1 text, v2
// binary). Append builds the header bal sends to a backend before any client
// byte, so the backend learns the real client address; Parse reads the header
// an upstream balancer sends to bal, so bal learns it. See
// https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt.
package proxyproto

import (
	"encoding/binary"
	"net/netip"
	"strconv"

	"github.com/bal-lb/bal/engine"
)

// v2Signature starts every v2 header.
var v2Signature = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// MaxLen is the longest header Append writes (v1 TCP6 is 104 bytes at most).
const MaxLen = 108

// Append appends the header for a connection from client to local (bal's
// accepting address) and returns the extended slice. ProxyOff appends nothing.
// IPv4-mapped IPv6 addresses are sent as IPv4; when the two families still
// differ the IPv4 one is mapped into IPv6.
func Append(dst []byte, v engine.ProxyProtocol, client, local netip.AddrPort) []byte {
	if v == engine.ProxyOff {
		return dst
	}
	src, dstAddr := client.Addr().Unmap(), local.Addr().Unmap()
	if src.Is4() != dstAddr.Is4() {
		src, dstAddr = as16(src), as16(dstAddr)
	}
	v4 := src.Is4()
	if v == engine.ProxyV1 {
		if v4 {
			dst = append(dst, "PROXY TCP4 "...)
		} else {
			dst = append(dst, "PROXY TCP6 "...)
		}
		dst = src.AppendTo(dst)
		dst = append(dst, ' ')
		dst = dstAddr.AppendTo(dst)
		dst = append(dst, ' ')
		dst = strconv.AppendUint(dst, uint64(client.Port()), 10)
		dst = append(dst, ' ')
		dst = strconv.AppendUint(dst, uint64(local.Port()), 10)
		return append(dst, '\r', '\n')
	}
	dst = append(dst, v2Signature[:]...)
	dst = append(dst, 0x21) // version 2, command PROXY
	if v4 {
		dst = append(dst, 0x11) // AF_INET, STREAM
		dst = binary.BigEndian.AppendUint16(dst, 12)
		a, b := src.As4(), dstAddr.As4()
		dst = append(dst, a[:]...)
		dst = append(dst, b[:]...)
	} else {
		dst = append(dst, 0x21) // AF_INET6, STREAM
		dst = binary.BigEndian.AppendUint16(dst, 36)
		a, b := src.As16(), dstAddr.As16()
		dst = append(dst, a[:]...)
		dst = append(dst, b[:]...)
	}
	dst = binary.BigEndian.AppendUint16(dst, client.Port())
	return binary.BigEndian.AppendUint16(dst, local.Port())
}

func as16(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom16(a.As16())
	}
	return a
}
