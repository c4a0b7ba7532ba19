package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Changes lists what differs from old to s, one human-readable line per
// change, in a stable order: mode, listener, method, log level, backends
// (removed, added, reweighted), then runtime keys. It returns nil when
// nothing differs or old is nil. bal graceful prints it after a reload.
//
//	port: 9295 -> 9300
//	backend added: 10.0.0.3:80 (weight 2)
//	runtime.health_check_interval_ms: 500 -> 700
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
	diff("mode", string(old.Mode), string(s.Mode))
	diff("port", strconv.Itoa(old.Port), strconv.Itoa(s.Port))
	diff("bind_address", old.BindAddress, s.BindAddress)
	diff("method", string(old.Method), string(s.Method))
	diff("log_level", strings.ToLower(old.LogLevel.String()), strings.ToLower(s.LogLevel.String()))

	oldBy := make(map[string]Backend, len(old.Backends))
	for _, b := range old.Backends {
		oldBy[b.Key()] = b
	}
	newBy := make(map[string]Backend, len(s.Backends))
	for _, b := range s.Backends {
		newBy[b.Key()] = b
	}
	for _, b := range old.Backends {
		if _, ok := newBy[b.Key()]; !ok {
			out = append(out, "backend removed: "+b.Address())
		}
	}
	for _, b := range s.Backends {
		ob, ok := oldBy[b.Key()]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("backend added: %s (weight %d)", b.Address(), b.Weight))
		case ob.Weight != b.Weight:
			out = append(out, fmt.Sprintf("backend %s weight: %d -> %d", b.Address(), ob.Weight, b.Weight))
		}
	}

	for _, k := range runtimeKeys {
		a, b := old.Runtime, s.Runtime
		diff("runtime."+k.name, k.format(&a), k.format(&b))
	}
	return out
}

// show prints an empty value as "(none)".
func show(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}
