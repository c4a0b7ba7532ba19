package metricstest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// StableFamily is one stable metric (docs/metrics.md#stable-metrics): its
// type and, per label, the values it must take (nil for backend, which takes
// the configured addresses).
type StableFamily struct {
	Name   string
	Type   string
	Labels map[string][]string
}

// Stable lists the stable metrics. Their names, types and labels must not
// change.
var Stable = []StableFamily{
	{"bal_connections_active", "gauge", nil},
	{"bal_connections_total", "counter", nil},
	{"bal_connections_rejected_total", "counter", nil},
	{"bal_backend_up", "gauge", map[string][]string{"backend": nil}},
	{"bal_backend_connections_active", "gauge", map[string][]string{"backend": nil}},
	{"bal_backend_connect_failures_total", "counter", map[string][]string{"backend": nil, "reason": {"timeout", "refused", "other"}}},
	{"bal_bytes_total", "counter", map[string][]string{"direction": {"client_to_backend", "backend_to_client"}}},
	{"bal_protection_mode", "gauge", nil},
	{"bal_reloads_total", "counter", map[string][]string{"result": {"ok", "error"}}},
}

// CheckStable reports how x falls short of the stable metrics for the configured
// backends (as "host:port", config order): a family missing or of the wrong
// type, a series missing, a label set other than the listed one, or a label value
// outside it. nil means every metric is there with every series.
func CheckStable(x *Exposition, backends []string) error {
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
		allowed := map[string][]string{}
		for l, vals := range sf.Labels {
			if vals == nil {
				vals = backends
			}
			allowed[l] = vals
		}
		for _, s := range f.Samples {
			if got, want := slices.Sorted(maps.Keys(s.Labels)), slices.Sorted(maps.Keys(allowed)); !slices.Equal(got, want) {
				problems = append(problems, fmt.Sprintf("%s: labels %v, want %v", sf.Name, got, want))
				continue
			}
			for l, v := range s.Labels {
				if !slices.Contains(allowed[l], v) {
					problems = append(problems, fmt.Sprintf("%s: %s=%q is not one of %q", sf.Name, l, v, allowed[l]))
				}
			}
		}
		// Every combination of the allowed values is present.
		for _, want := range combinations(allowed) {
			if _, ok := x.Value(sf.Name, want...); !ok {
				problems = append(problems, fmt.Sprintf("%s%v: series missing", sf.Name, want))
			}
		}
		if n := len(combinations(allowed)); len(f.Samples) != n {
			problems = append(problems, fmt.Sprintf("%s: %d series, want %d", sf.Name, len(f.Samples), n))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: missing stable metrics:\n  %s", ErrFormat, strings.Join(problems, "\n  "))
	}
	return nil
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
