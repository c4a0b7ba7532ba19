package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Changes lists what differs from old to s, one human-readable line per
// change, in a stable order. It returns nil when nothing differs or old is
// nil. bal graceful prints it after a reload.
//
// Two files in the single-service form keep the wording of a one-service
// bal: mode, listener, method, log level, the service's other keys,
// backends (removed, added, reweighted), routes, then runtime keys:
//
//	port: 9295 -> 9300
//	backend added: 10.0.0.3:80 (weight 2)
//	runtime.health_check_interval_ms: 500 -> 700
//
// Otherwise: mode, log level, the process-wide runtime keys, then per
// service, removed ones first, then in the new file's order:
//
//	service db: removed
//	service web: added
//	service web: port: 443 -> 8443
//	service web: route api: backend added: 10.0.0.3:443 (weight 1)
//	service web: runtime.max_concurrent_connections: 4000 -> 8000
func (s *Snapshot) Changes(old *Snapshot) []string {
	if s == nil || old == nil {
		return nil
	}
	var out []string
	diff := func(name, a, b string) {
		if a != b {
			out = append(out, fmt.Sprintf("%s: %s -> %s", name, show(a), show(b)))
		}
	}
	level := func(x *Snapshot) string { return strings.ToLower(x.LogLevel.String()) }
	diff("mode", string(old.Mode), string(s.Mode))

	if s.Single && old.Single && len(s.Services) == 1 && len(old.Services) == 1 {
		a, b := &old.Services[0], &s.Services[0]
		diff("port", strconv.Itoa(a.Port), strconv.Itoa(b.Port))
		diff("bind_address", a.BindAddress, b.BindAddress)
		diff("method", string(a.Method), string(b.Method))
		diff("log_level", level(old), level(s))
		out = append(out, serviceChanges(a, b, false)...)
		for _, k := range runtimeKeys {
			if k.appliesTo(TCP) {
				ra, rb := old.Runtime, s.Runtime
				diff("runtime."+k.name, k.format(&ra), k.format(&rb))
			}
		}
		return out
	}

	diff("log_level", level(old), level(s))
	for _, k := range runtimeKeys {
		if k.scope == ScopeProcess {
			ra, rb := old.Runtime, s.Runtime
			diff("runtime."+k.name, k.format(&ra), k.format(&rb))
		}
	}
	oldBy := make(map[string]*Service, len(old.Services))
	for i := range old.Services {
		oldBy[old.Services[i].Name] = &old.Services[i]
	}
	newBy := make(map[string]bool, len(s.Services))
	for i := range s.Services {
		newBy[s.Services[i].Name] = true
	}
	for i := range old.Services {
		if !newBy[old.Services[i].Name] {
			out = append(out, "service "+old.Services[i].Name+": removed")
		}
	}
	for i := range s.Services {
		b := &s.Services[i]
		a, ok := oldBy[b.Name]
		if !ok {
			out = append(out, "service "+b.Name+": added")
			continue
		}
		for _, c := range serviceChanges(a, b, true) {
			out = append(out, "service "+b.Name+": "+c)
		}
	}
	return out
}

// serviceChanges lists what differs between two versions of one service.
// full adds the listener, method and per-service runtime keys, which the
// single-service wording prints on its own.
func serviceChanges(a, b *Service, full bool) []string {
	var out []string
	diff := func(name, x, y string) {
		if x != y {
			out = append(out, fmt.Sprintf("%s: %s -> %s", name, show(x), show(y)))
		}
	}
	if full {
		diff("protocol", string(a.Protocol), string(b.Protocol))
		diff("port", strconv.Itoa(a.Port), strconv.Itoa(b.Port))
		diff("bind_address", a.BindAddress, b.BindAddress)
		diff("method", string(a.Method), string(b.Method))
	}
	diff("on_backend_down", a.OnBackendDown, b.OnBackendDown)
	diff("health_check", a.HealthCheck.String(), b.HealthCheck.String())
	diff("allow", joinPrefixes(a.Access.Allow, ", "), joinPrefixes(b.Access.Allow, ", "))
	diff("deny", joinPrefixes(a.Access.Deny, ", "), joinPrefixes(b.Access.Deny, ", "))
	diff("max_connections_per_source", countOrNone(a.Access.MaxConnectionsPerSource), countOrNone(b.Access.MaxConnectionsPerSource))
	diff("connection_rate_per_source", a.Access.ConnectionRatePerSource.String(), b.Access.ConnectionRatePerSource.String())
	diff("accept_proxy_protocol", a.Access.AcceptProxyProtocol, b.Access.AcceptProxyProtocol)
	diff("trusted_proxies", joinPrefixes(a.Access.TrustedProxies, ", "), joinPrefixes(b.Access.TrustedProxies, ", "))
	out = append(out, backendChanges("", a.Backends, b.Backends)...)
	out = append(out, routeChanges(a.Routes, b.Routes)...)
	if full {
		for _, k := range runtimeKeys {
			if k.scope == ScopeService && k.appliesTo(b.Protocol) {
				ra, rb := a.Runtime, b.Runtime
				diff("runtime."+k.name, k.format(&ra), k.format(&rb))
			}
		}
	}
	return out
}

// routeChanges lists removed routes, then added and changed ones in the
// new order, then a change of order among the routes kept (the first match
// wins, so the order matters).
func routeChanges(a, b []Route) []string {
	var out []string
	oldBy := make(map[string]*Route, len(a))
	for i := range a {
		oldBy[a[i].Name] = &a[i]
	}
	newBy := make(map[string]bool, len(b))
	for i := range b {
		newBy[b[i].Name] = true
	}
	var keptOld, keptNew []string
	for i := range a {
		if !newBy[a[i].Name] {
			out = append(out, "route "+a[i].Name+": removed")
		} else {
			keptOld = append(keptOld, a[i].Name)
		}
	}
	for i := range b {
		r := &b[i]
		o, ok := oldBy[r.Name]
		if !ok {
			out = append(out, fmt.Sprintf("route %s: added (%s, %d backends)", r.Name, r.Match, len(r.Backends)))
			continue
		}
		keptNew = append(keptNew, r.Name)
		pre := "route " + r.Name + ": "
		diff := func(name, x, y string) {
			if x != y {
				out = append(out, fmt.Sprintf("%s%s: %s -> %s", pre, name, show(x), show(y)))
			}
		}
		diff("match", o.Match.String(), r.Match.String())
		diff("method", string(o.Method), string(r.Method))
		diff("health_check", o.HealthCheck.String(), r.HealthCheck.String())
		out = append(out, backendChanges(pre, o.Backends, r.Backends)...)
	}
	if !slices.Equal(keptOld, keptNew) {
		out = append(out, fmt.Sprintf("routes order: %s -> %s", strings.Join(keptOld, ", "), strings.Join(keptNew, ", ")))
	}
	return out
}

// backendChanges lists one pool's removed, added and reweighted backends,
// each line starting with prefix.
func backendChanges(prefix string, a, b []Backend) []string {
	var out []string
	oldBy := make(map[string]Backend, len(a))
	for _, x := range a {
		oldBy[x.Key()] = x
	}
	newBy := make(map[string]Backend, len(b))
	for _, x := range b {
		newBy[x.Key()] = x
	}
	for _, x := range a {
		if _, ok := newBy[x.Key()]; !ok {
			out = append(out, prefix+"backend removed: "+x.Address())
		}
	}
	for _, x := range b {
		ox, ok := oldBy[x.Key()]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%sbackend added: %s (weight %d)", prefix, x.Address(), x.Weight))
		case ox.Weight != x.Weight:
			out = append(out, fmt.Sprintf("%sbackend %s weight: %d -> %d", prefix, x.Address(), ox.Weight, x.Weight))
		}
	}
	return out
}

func countOrNone(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// show prints an empty value as "(none)".
func show(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}
