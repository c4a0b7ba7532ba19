package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzParse: no input panics; Parse returns either a snapshot that keeps
// every rule, or an *Error with at least one issue; and it is deterministic.
// Seeds are in testdata/fuzz/FuzzParse (valid files, broken ones, and YAML
// oddities: anchors, aliases, merges, huge numbers, deep nesting, tabs, BOM;
// services with routes, health checks, access keys and UDP).
func FuzzParse(f *testing.F) {
	f.Add([]byte(DefaultFile))
	f.Add([]byte(one))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var ce *Error
			if s != nil || !errors.As(err, &ce) || !errors.Is(err, ErrInvalid) || len(ce.Issues) == 0 {
				t.Fatalf("Parse returned (%v, %v): want nil and an *Error with issues", s, err)
			}
			for _, is := range ce.Issues {
				if is.Message == "" || is.Line < 0 {
					t.Fatalf("bad issue %+v", is)
				}
			}
			return
		}
		if s == nil {
			t.Fatal("Parse returned nil, nil")
		}
		checkInvariants(t, s)
		s2, err2 := Parse(data, "fuzz.yaml")
		if err2 != nil || !reflect.DeepEqual(s, s2) {
			t.Fatalf("Parse is not deterministic: %v", err2)
		}
		if c := s.Changes(s2); len(c) != 0 {
			t.Fatalf("Changes of a snapshot against itself: %q", c)
		}
	})
}

func checkInvariants(t *testing.T, s *Snapshot) {
	t.Helper()
	if s.Mode != ModeSimple && s.Mode != ModeAdvanced {
		t.Fatalf("mode %q", s.Mode)
	}
	if len(s.Services) == 0 {
		t.Fatal("no services")
	}
	first := &s.Services[0]
	if s.Port != first.Port || s.BindAddress != first.BindAddress || s.Method != first.Method || !reflect.DeepEqual(s.Backends, first.Backends) {
		t.Fatalf("the compatibility fields are not the first service's: %+v", s)
	}
	if s.Single && (len(s.Services) != 1 || first.Name != DefaultServiceName || first.Protocol != TCP) {
		t.Fatalf("single-service form %+v", s.Services)
	}
	names := map[string]bool{}
	for i := range s.Services {
		v := &s.Services[i]
		if !nameRE.MatchString(v.Name) || names[v.Name] {
			t.Fatalf("service name %q", v.Name)
		}
		names[v.Name] = true
		checkService(t, v)
		if s.Mode == ModeSimple && v.Runtime != Profile(v.BackendCount()) {
			t.Fatalf("simple mode runtime of %s %+v", v.Name, v.Runtime)
		}
		for _, k := range runtimeKeys {
			a, b := v.Runtime, s.Runtime
			if k.scope == ScopeProcess && k.format(&a) != k.format(&b) {
				t.Fatalf("service %s: process-wide %s differs", v.Name, k.name)
			}
		}
		checkRuntime(t, v.Runtime)
	}
	if s.Mode == ModeSimple && s.Runtime != Profile(first.BackendCount()) {
		t.Fatalf("simple mode runtime %+v", s.Runtime)
	}
	checkRuntime(t, s.Runtime)
}

func checkService(t *testing.T, v *Service) {
	t.Helper()
	if v.Port < 1 || v.Port > 65535 || v.BindAddress == "" || checkHost(v.BindAddress) != "" {
		t.Fatalf("listener %q", v.ListenAddress())
	}
	if v.Protocol != TCP && v.Protocol != UDP {
		t.Fatalf("protocol %q", v.Protocol)
	}
	if v.OnBackendDown != OnDownKeep && v.OnBackendDown != OnDownClose {
		t.Fatalf("on_backend_down %q", v.OnBackendDown)
	}
	if len(v.Backends) == 0 && len(v.Routes) == 0 {
		t.Fatalf("service %s has no pool", v.Name)
	}
	checkMethod(t, v.Method)
	checkBackends(t, v.Backends)
	checkHealth(t, v.HealthCheck, v.Protocol)
	a := v.Access
	if a.MaxConnectionsPerSource < 0 || (a.AcceptProxyProtocol != ProxyOff && (len(a.TrustedProxies) == 0 || v.Protocol == UDP)) {
		t.Fatalf("access %+v", a)
	}
	if v.Protocol == UDP && (v.Inspects() || v.Runtime.ProxyProtocol != ProxyOff) {
		t.Fatalf("udp service %+v", v)
	}
	routes := map[string]bool{}
	for _, r := range v.Routes {
		if !nameRE.MatchString(r.Name) || r.Name == DefaultServiceName || routes[r.Name] {
			t.Fatalf("route name %q", r.Name)
		}
		routes[r.Name] = true
		if len(r.Match.SNI)+len(r.Match.ALPN)+len(r.Match.Source) == 0 || len(r.Backends) == 0 {
			t.Fatalf("route %+v", r)
		}
		for _, n := range r.Match.SNI {
			if sniIssue(n) != "" || n != strings.ToLower(n) || strings.HasSuffix(n, ".") {
				t.Fatalf("sni %q", n)
			}
		}
		checkMethod(t, r.Method)
		checkBackends(t, r.Backends)
		checkHealth(t, r.HealthCheck, v.Protocol)
	}
}

func checkMethod(t *testing.T, m Method) {
	t.Helper()
	switch m {
	case RoundRobin, LeastConnections, RandomTwo, SourceHash:
	default:
		t.Fatalf("method %q", m)
	}
}

func checkBackends(t *testing.T, bs []Backend) {
	t.Helper()
	keys := map[string]bool{}
	for _, b := range bs {
		if b.Host == "" || checkHost(b.Host) != "" || b.Port < 1 || b.Port > 65535 || b.Weight < 1 || b.Weight > MaxWeight {
			t.Fatalf("backend %+v", b)
		}
		if keys[b.Key()] {
			t.Fatalf("duplicate backend %s", b.Key())
		}
		keys[b.Key()] = true
	}
}

func checkHealth(t *testing.T, h HealthCheck, p Protocol) {
	t.Helper()
	switch {
	case p == UDP && h.Type != "" && h.Type != CheckSendExpect,
		p == TCP && h.Type != CheckTCP && h.Type != CheckSendExpect && h.Type != CheckHTTP,
		h.Type == CheckSendExpect && len(h.Expect) == 0,
		h.Type == CheckHTTP && (!strings.HasPrefix(h.HTTPPath, "/") || len(h.HTTPStatus) == 0),
		h.Port < 0 || h.Port > 65535, len(h.Expect) > MaxCheckExpect:
		t.Fatalf("health check %+v on %s", h, p)
	}
	for _, r := range h.HTTPStatus {
		if r.Low < 100 || r.High > 599 || r.Low > r.High {
			t.Fatalf("status range %+v", r)
		}
	}
}

func checkRuntime(t *testing.T, r Runtime) {
	t.Helper()
	for _, d := range []time.Duration{r.HealthCheckInterval, r.HealthCheckTimeout, r.BackendConnectTimeout, r.FailoverBackoffInitial,
		r.FailoverBackoffMax, r.ProtectionWindow, r.ConnectionIdleTimeout, r.TLSInspectTimeout, r.ProxyHeaderTimeout, r.UDPIdleTimeout} {
		if d <= 0 || d > MaxDurationMS*time.Millisecond {
			t.Fatalf("duration %v out of range in %+v", d, r)
		}
	}
	if r.BackendCooldown < 0 || r.DrainTimeout < 0 || r.FailoverBackoffMax < r.FailoverBackoffInitial {
		t.Fatalf("runtime %+v", r)
	}
	if r.HealthCheckFailThreshold < 1 || r.HealthCheckSuccessThreshold < 1 || r.ProtectionTriggerThreshold < 1 ||
		r.ProtectionStableSuccessThreshold < 1 || r.MaxConcurrentConnections < 1 || r.TCPBacklog < 0 || r.TCPBacklog > MaxTCPBacklog ||
		r.SourceTableSize < 1 || r.MaxUDPFlows < 1 {
		t.Fatalf("runtime %+v", r)
	}
	if r.OverloadPolicy != "reject" {
		t.Fatalf("overload policy %q", r.OverloadPolicy)
	}
}
