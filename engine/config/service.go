package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/bal-lb/bal/engine/access"
)

// Protocol is a service's transport.
type Protocol string

// Service protocols.
const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
)

// DefaultServiceName is the name of the one service of a config written in
// the single-service form (top-level port and backends), and the name of a
// service's default pool.
const DefaultServiceName = "default"

// Health-check types (docs/configuration.md, Health checks).
const (
	CheckTCP        = "tcp"
	CheckSendExpect = "send_expect"
	CheckHTTP       = "http"
)

// on_backend_down values.
const (
	OnDownKeep  = "keep"
	OnDownClose = "close"
)

// accept_proxy_protocol values (off is ProxyOff, v1 ProxyV1, v2 ProxyV2).
const ProxyAny = "any"

// Service is one listening address and the pools behind it. A config in the
// single-service form has exactly one, named DefaultServiceName.
type Service struct {
	Name        string
	Protocol    Protocol
	BindAddress string // as configured, IPv6 brackets removed
	Port        int
	Method      Method
	// Backends is the default pool; empty only when Routes exist (clients
	// that match no route are then refused, reason no_route).
	Backends []Backend
	// Routes are tried in order; the first that matches wins.
	Routes []Route
	// Runtime is the service's runtime, fully resolved: the auto-tuned
	// profile for the backend count over all its pools, then the keys set
	// in the top-level runtime: block, then those of the service's own
	// runtime: block. Process-wide keys (engine, metrics_address,
	// drain_timeout_ms, access_log) equal Snapshot.Runtime's.
	Runtime       Runtime
	HealthCheck   HealthCheck // the service's; a route may override it
	Access        Access
	OnBackendDown string // OnDownKeep or OnDownClose
	Line          int    // line of the service in the file; 0 in the single-service form
}

// ListenAddress is "bind_address:port" ("[::]:443" for IPv6).
func (s *Service) ListenAddress() string {
	return net.JoinHostPort(s.BindAddress, strconv.Itoa(s.Port))
}

// Inspects reports whether the service reads the TLS ClientHello before
// choosing a pool: one of its routes matches on sni or alpn.
func (s *Service) Inspects() bool {
	for i := range s.Routes {
		if m := s.Routes[i].Match; len(m.SNI) > 0 || len(m.ALPN) > 0 {
			return true
		}
	}
	return false
}

// Pool is one set of backends balanced together: a route's, or the
// service's default pool.
type Pool struct {
	Name        string // the route's name, or DefaultServiceName
	Method      Method
	Backends    []Backend
	HealthCheck HealthCheck
	Route       *Route // nil for the default pool
}

// Pools lists the service's pools: its routes' in order, then the default
// pool when it has backends.
func (s *Service) Pools() []Pool {
	out := make([]Pool, 0, len(s.Routes)+1)
	for i := range s.Routes {
		r := &s.Routes[i]
		out = append(out, Pool{Name: r.Name, Method: r.Method, Backends: r.Backends, HealthCheck: r.HealthCheck, Route: r})
	}
	if len(s.Backends) > 0 {
		out = append(out, Pool{Name: DefaultServiceName, Method: s.Method, Backends: s.Backends, HealthCheck: s.HealthCheck})
	}
	return out
}

// BackendCount is the number of backends over all the service's pools (a
// backend listed in two pools counts twice): it picks the auto-tuned profile.
func (s *Service) BackendCount() int {
	n := len(s.Backends)
	for _, r := range s.Routes {
		n += len(r.Backends)
	}
	return n
}

// Route is one entry of a service's routes: list.
type Route struct {
	Name        string // unique in the service, never DefaultServiceName
	Match       Match
	Method      Method // resolved: the service's method when the route sets none
	Backends    []Backend
	HealthCheck HealthCheck // resolved: the service's when the route sets none
	Line        int
}

// Match is what a route matches. Every key it lists must match (keys are
// ANDed); any value within a key may (values are ORed). At least one key is
// set.
type Match struct {
	// SNI names, lowercase without a trailing dot; "*.example.net" matches
	// any name ending in ".example.net" (one label or more), not the bare
	// "example.net".
	SNI []string
	// ALPN protocols; the route matches when the client offers any of them.
	ALPN []string
	// Source prefixes of the client's address (after the PROXY header).
	Source []netip.Prefix
}

// HealthCheck is how a pool's backends are probed.
type HealthCheck struct {
	// Type is CheckTCP, CheckSendExpect or CheckHTTP; "" on a UDP service
	// means passive checks only.
	Type string
	// Port, when set, is probed instead of each backend's port.
	Port int
	// Send is written after connecting (send_expect); Expect must be
	// contained in the reply (send_expect; optional for http, matched
	// against the body's first bytes).
	Send, Expect []byte
	// HTTPPath and HTTPHost build "GET path HTTP/1.1" with "Host: host".
	HTTPPath, HTTPHost string
	// HTTPStatus are the accepted status codes (http); default 200-399.
	HTTPStatus []StatusRange
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Low, High int }

// Access is who may connect to a service.
type Access struct {
	Allow, Deny             []netip.Prefix
	MaxConnectionsPerSource int         // 0: no limit
	ConnectionRatePerSource access.Rate // zero: no limit
	// AcceptProxyProtocol is ProxyOff, ProxyV1, ProxyV2 or ProxyAny.
	AcceptProxyProtocol string
	TrustedProxies      []netip.Prefix
}

// String is the match as "sni=a.example.com,*.example.net alpn=h2
// source=10.0.0.0/8" (keys that are not set are left out).
func (m Match) String() string {
	src := make([]string, len(m.Source))
	for i, p := range m.Source {
		src[i] = p.String()
	}
	return FormatMatch(m.SNI, m.ALPN, src)
}

// FormatMatch writes a route's match keys the way Match.String does, from
// their text form (what bal status receives over the control socket).
func FormatMatch(sni, alpn, source []string) string {
	var parts []string
	for _, k := range [...]struct {
		name string
		vals []string
	}{{"sni", sni}, {"alpn", alpn}, {"source", source}} {
		if len(k.vals) > 0 {
			parts = append(parts, k.name+"="+strings.Join(k.vals, ","))
		}
	}
	return strings.Join(parts, " ")
}

func joinPrefixes(ps []netip.Prefix, sep string) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, sep)
}

// String is "200" or "200-399".
func (r StatusRange) String() string {
	if r.Low == r.High {
		return strconv.Itoa(r.Low)
	}
	return strconv.Itoa(r.Low) + "-" + strconv.Itoa(r.High)
}

// String describes the check in one line: "tcp", "tcp port 9001",
// `send_expect send "PING\r\n" expect "+PONG"`, "http GET /healthz host
// example.com status 200-399", or "passive" (a UDP service without an active
// check).
func (h HealthCheck) String() string {
	if h.Type == "" {
		return "passive"
	}
	b := []string{h.Type}
	if h.Port != 0 {
		b = append(b, "port "+strconv.Itoa(h.Port))
	}
	if h.Type == CheckHTTP {
		b = append(b, "GET "+h.HTTPPath)
		if h.HTTPHost != "" {
			b = append(b, "host "+h.HTTPHost)
		}
		st := make([]string, len(h.HTTPStatus))
		for i, r := range h.HTTPStatus {
			st[i] = r.String()
		}
		b = append(b, "status "+strings.Join(st, ","))
	}
	if h.Send != nil {
		b = append(b, "send "+strconv.Quote(string(h.Send)))
	}
	if h.Expect != nil {
		b = append(b, "expect "+strconv.Quote(string(h.Expect)))
	}
	return strings.Join(b, " ")
}
