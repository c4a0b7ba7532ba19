package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// stripBrackets removes the brackets of "[::1]".
func stripBrackets(h string) string {
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

// checkHost validates a host as written in bind_address or a backend: an
// IPv4/IPv6 literal (brackets already removed) or a host name. It returns
// "" when valid, else what is wrong with it.
func checkHost(h string) string {
	if h == "" {
		return "must not be empty"
	}
	if strings.TrimSpace(h) != h {
		return "must not start or end with whitespace"
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	if strings.Contains(h, "://") {
		return "must be an address or host name, not a URL"
	}
	if strings.Count(h, ":") == 1 {
		if host, port, err := net.SplitHostPort(h); err == nil && port != "" {
			if _, err := strconv.Atoi(port); err == nil {
				return fmt.Sprintf("must not include a port (write host %q and the port separately)", host)
			}
		}
	}
	if strings.ContainsAny(h, ":[]") {
		return "is not a valid IPv6 address"
	}
	if !validHostname(h) {
		if allNumeric(h) {
			return "is not a valid IPv4 address"
		}
		return "is not a valid IP address or host name"
	}
	return ""
}

// validHostname accepts RFC 1123 host names (letters, digits, '-', and '_'
// which is common in internal names), one optional trailing dot, labels of
// 1–63 bytes not starting or ending with '-', a last label that is not all
// digits, 253 bytes at most.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return false
			}
		}
	}
	return !allNumeric(labels[len(labels)-1])
}

func allNumeric(s string) bool {
	digits := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits = true
		case c == '.':
		default:
			return false
		}
	}
	return digits
}

// canonicalHost is the host lowercased, IP literals in canonical form (as
// in Backend.Key).
func canonicalHost(h string) string {
	h = strings.ToLower(h)
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String()
	}
	return h
}

// isUnspecified reports 0.0.0.0, :: and their other spellings.
func isUnspecified(h string) bool {
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsUnspecified()
}

// isLoopback reports loopback literals and "localhost".
func isLoopback(h string) bool {
	if strings.EqualFold(strings.TrimSuffix(h, "."), "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// sameListener reports whether a listener on host a and one on host b (same
// port) would collide or be the same socket, as far as can be told without
// resolving names: the same host, or either one on all interfaces.
func sameListener(a, b string) bool {
	if a == "" || b == "" || isUnspecified(a) || isUnspecified(b) {
		return true
	}
	return canonicalHost(a) == canonicalHost(b)
}

// reachesListener reports whether connecting to host b reaches a listener
// bound to host a on the same port: the same host, or a loopback target
// while the listener is on all interfaces or on loopback too.
func reachesListener(listen, target string) bool {
	if canonicalHost(listen) == canonicalHost(target) {
		return true
	}
	if isUnspecified(listen) && (isLoopback(target) || isUnspecified(target)) {
		return true
	}
	return isLoopback(listen) && isLoopback(target) && strings.EqualFold(strings.TrimSuffix(target, "."), "localhost")
}
