package metricstest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Scope is what a stable family has one set of series per: the labels
// that name configured things.
type Scope uint8

// Scopes.
const (
	// PerProcess: no configured label.
	PerProcess Scope = iota
	// PerService: label service, every configured service.
	PerService
	// PerRoute: labels service and route, every route of every service.
	PerRoute
	// PerBackend: labels service, pool (a route's name or "default") and
	// backend (as configured), every backend of every pool.
	PerBackend
	// PerUDPService: label service, every service of protocol udp.
	PerUDPService
)

// labels are the label names of the scope.
func (s Scope) labels() []string {
	switch s {
	case PerService, PerUDPService:
		return []string{"service"}
	case PerRoute:
		return []string{"service", "route"}
	case PerBackend:
		return []string{"service", "pool", "backend"}
	}
	return nil
}

// StableFamily is one stable metric (docs/metrics.md#stable-metrics): its
// type, its scope, and the other labels with the values each must take.
type StableFamily struct {
	Name   string
	Type   string
	Scope  Scope
	Labels map[string][]string
}

// Stable lists the stable metrics. Their names and types must not change;
// labels may only be added.
var Stable = []StableFamily{
	{"bal_connections_active", "gauge", PerService, nil},
	{"bal_connections_total", "counter", PerService, nil},
	{"bal_connections_rejected_total", "counter", PerService, map[string][]string{"reason": {"limit", "acl", "source_limit", "source_rate", "proxy_header", "no_route"}}},
	{"bal_backend_up", "gauge", PerBackend, nil},
	{"bal_backend_connections_active", "gauge", PerBackend, nil},
	{"bal_backend_connect_failures_total", "counter", PerBackend, map[string][]string{"reason": {"timeout", "refused", "other"}}},
	{"bal_bytes_total", "counter", PerService, map[string][]string{"direction": {"client_to_backend", "backend_to_client"}}},
	{"bal_protection_mode", "gauge", PerService, nil},
	{"bal_reloads_total", "counter", PerProcess, map[string][]string{"result": {"ok", "error"}}},
	{"bal_route_matches_total", "counter", PerRoute, nil},
	{"bal_inspect_results_total", "counter", PerService, map[string][]string{"result": {"sni", "no_sni", "not_tls", "malformed", "timeout", "too_large", "closed"}}},
	{"bal_udp_flows_active", "gauge", PerUDPService, nil},
	{"bal_udp_flows_total", "counter", PerUDPService, nil},
	{"bal_udp_datagrams_total", "counter", PerUDPService, map[string][]string{"direction": {"client_to_backend", "backend_to_client"}}},
	{"bal_udp_dropped_total", "counter", PerUDPService, map[string][]string{"reason": {
		"limit", "acl", "source_limit", "source_rate", "no_route",
		"no_backend", "backend_busy", "client_busy", "draining", "local", "send_error"}}},
}

// Service is one configured service as the stable metrics name it.
type Service struct {
	Name  string
	UDP   bool // protocol udp: it has the bal_udp_* series
	Pools []Pool
}

// Pool is one pool of a service: a route's (Route true, Name the route's
// name) or the default pool (Name "default").
type Pool struct {
	Name     string
	Route    bool
	Backends []string // as configured, "host:port"
}

// Single is the one service of a config in the single-service form: named
// default, its backends the default pool.
func Single(backends []string) []Service {
	return []Service{{Name: "default", Pools: []Pool{{Name: "default", Backends: backends}}}}
}

// CheckStable is CheckServices for a config in the single-service form
// with these backends (as "host:port", config order).
func CheckStable(x *Exposition, backends []string) error {
	return CheckServices(x, Single(backends))
}

// CheckServices reports how x falls short of the stable metrics for the
// configured services: a family missing or of the wrong type, a series
// missing, a label set other than the family's, a label value outside the
// configured ones. nil means every stable metric is there with every
// series.
func CheckServices(x *Exposition, services []Service) error {
	var problems []string
	for _, sf := range Stable {
		f := x.Family(sf.Name)
		if f == nil {
			problems = append(problems, sf.Name+": missing")
			continue
		}
		if f.Type != sf.Type {
			problems = append(problems, fmt.Sprintf("%s: type %s, want %s", sf.Name, f.Type, sf.Type))
		}
		want := map[string]bool{} // every expected series, by key
		for _, scope := range scoped(sf.Scope, services) {
			for _, fixed := range combinations(sf.Labels) {
				want[key(append(slices.Clone(scope), fixed...))] = true
			}
		}
		names := slices.Sorted(slices.Values(append(sf.Scope.labels(), slices.Collect(maps.Keys(sf.Labels))...)))
		seen := map[string]bool{}
		for _, s := range f.Samples {
			if got := slices.Sorted(maps.Keys(s.Labels)); !slices.Equal(got, names) {
				problems = append(problems, fmt.Sprintf("%s: labels %v, want %v", sf.Name, got, names))
				continue
			}
			var pairs []string
			for _, l := range names {
				pairs = append(pairs, l, s.Labels[l])
			}
			k := key(pairs)
			if !want[k] {
				problems = append(problems, fmt.Sprintf("%s%s: not a configured series", sf.Name, k))
			}
			seen[k] = true
		}
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if !seen[k] {
				problems = append(problems, fmt.Sprintf("%s%s: series missing", sf.Name, k))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: missing stable metrics:\n  %s", ErrFormat, strings.Join(problems, "\n  "))
	}
	return nil
}

// scoped lists the label pairs of every configured thing of scope.
func scoped(scope Scope, services []Service) [][]string {
	switch scope {
	case PerProcess:
		return [][]string{nil}
	case PerService, PerUDPService:
		out := make([][]string, 0, len(services))
		for _, s := range services {
			if scope == PerService || s.UDP {
				out = append(out, []string{"service", s.Name})
			}
		}
		return out
	}
	var out [][]string
	for _, s := range services {
		for _, p := range s.Pools {
			switch {
			case scope == PerRoute && p.Route:
				out = append(out, []string{"service", s.Name, "route", p.Name})
			case scope == PerBackend:
				for _, b := range p.Backends {
					out = append(out, []string{"service", s.Name, "pool", p.Name, "backend", b})
				}
			}
		}
	}
	return out
}

// key is a canonical form of label pairs: sorted by name.
func key(pairs []string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	b.WriteByte('}')
	return b.String()
}

// combinations returns every label set (as name, value pairs) over allowed.
func combinations(allowed map[string][]string) [][]string {
	out := [][]string{nil}
	for _, l := range slices.Sorted(maps.Keys(allowed)) {
		var next [][]string
		for _, prefix := range out {
			for _, v := range allowed[l] {
				next = append(next, append(slices.Clone(prefix), l, v))
			}
		}
		out = next
	}
	return out
}
