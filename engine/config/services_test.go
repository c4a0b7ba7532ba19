package config

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// doc joins lines into a file, so that a case's line numbers are the
// positions in its list (from 1).
func doc(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

// svcCase is one table case: a file, and either a check of the valid
// snapshot or the exact errors; warnings are checked for valid files.
type svcCase struct {
	name  string
	yaml  string
	check func(t *testing.T, s *Snapshot)
	errs  []wantIssue
	warns []wantIssue
}

func runSvcCases(t *testing.T, tests []svcCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.errs != nil {
				matchIssues(t, "errors", parseErr(t, tt.yaml).Issues, tt.errs)
				return
			}
			s := mustParse(t, tt.yaml)
			matchIssues(t, "warnings", s.Warnings, tt.warns)
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

// two is a valid two-service file (lines 1–11); cases append to it.
var two = []string{
	"services:", // 1
	"  - name: web",
	"    bind_address: 127.0.0.1",
	"    port: 443",
	"    backends:", // 5
	"      - {host: 10.0.0.1, port: 443}",
	"  - name: db",
	"    bind_address: 127.0.0.1",
	"    port: 5432",
	"    backends:", // 10
	"      - {host: 10.0.0.2, port: 5432}",
}

func with(base []string, more ...string) string { return doc(append(slices.Clone(base), more...)...) }

// svc is one service entry "name" on port with one backend, in 4 lines.
func svc(name, proto, bind string, port string) []string {
	return []string{
		"  - name: " + name,
		"    protocol: " + proto,
		"    bind_address: " + bind + "",
		"    port: " + port + "",
		"    backends: [{host: 10.0.0.9, port: 53}]",
	}
}

func TestParseServices(t *testing.T) {
	runSvcCases(t, []svcCase{
		{name: "two services", yaml: with(two), check: func(t *testing.T, s *Snapshot) {
			if s.Single || len(s.Services) != 2 {
				t.Fatalf("single %v, %d services", s.Single, len(s.Services))
			}
			web, db := s.Services[0], s.Services[1]
			if web.Name != "web" || web.Protocol != TCP || web.ListenAddress() != "127.0.0.1:443" || web.Line != 2 || web.Method != RoundRobin ||
				web.OnBackendDown != OnDownKeep || web.HealthCheck.Type != CheckTCP || web.Access.AcceptProxyProtocol != ProxyOff {
				t.Errorf("web = %+v", web)
			}
			if db.Name != "db" || db.Port != 5432 || len(db.Backends) != 1 || db.Backends[0].Line != 11 {
				t.Errorf("db = %+v", db)
			}
			// The compatibility fields mirror the first service.
			if s.Port != 443 || s.BindAddress != "127.0.0.1" || s.Method != RoundRobin || len(s.Backends) != 1 || s.Backends[0].Host != "10.0.0.1" {
				t.Errorf("compat fields %d %s %s %v", s.Port, s.BindAddress, s.Method, s.Backends)
			}
		}},
		{name: "services in simple mode", yaml: doc(append([]string{"mode: simple"}, two...)...)},
		{name: "every service key", yaml: with(two,
			"  - name: all-keys_1", // 12
			"    protocol: tcp",
			"    bind_address: \"::1\"",
			"    port: 8443", // 15
			"    method: source_hash",
			"    on_backend_down: close",
			"    allow: [10.0.0.0/8, \"2001:db8::/32\", 192.0.2.7]",
			"    deny: [10.9.0.0/16]",
			"    max_connections_per_source: 20", // 20
			"    connection_rate_per_source: \"50/s\"",
			"    accept_proxy_protocol: any",
			"    trusted_proxies: [192.0.2.0/24]",
			"    health_check: {type: tcp, port: 9001}",
			"    runtime: {max_concurrent_connections: 7}", // 25
			"    routes:",
			"      - name: api",
			"        match: {sni: [API.Example.com.]}",
			"        backends: [{host: 10.0.0.5, port: 443}]",
			"    backends: [{host: 10.0.0.6, port: 443}]", // 30
		), warns: []wantIssue{{"services[2].runtime is ignored in simple mode", 25}}, check: func(t *testing.T, s *Snapshot) {
			v := s.Services[2]
			a := v.Access
			if v.Name != "all-keys_1" || v.BindAddress != "::1" || v.ListenAddress() != "[::1]:8443" || v.Method != SourceHash || v.OnBackendDown != OnDownClose {
				t.Errorf("service %+v", v)
			}
			if len(a.Allow) != 3 || a.Allow[2] != netip.MustParsePrefix("192.0.2.7/32") || len(a.Deny) != 1 || a.MaxConnectionsPerSource != 20 ||
				a.ConnectionRatePerSource.String() != "50/s" || a.AcceptProxyProtocol != ProxyAny || len(a.TrustedProxies) != 1 {
				t.Errorf("access %+v", a)
			}
			if !reflect.DeepEqual(v.HealthCheck, HealthCheck{Type: CheckTCP, Port: 9001}) {
				t.Errorf("health check %+v", v.HealthCheck)
			}
			r := v.Routes[0]
			if r.Name != "api" || r.Line != 27 || !slices.Equal(r.Match.SNI, []string{"api.example.com"}) || r.Method != SourceHash || !reflect.DeepEqual(r.HealthCheck, v.HealthCheck) {
				t.Errorf("route %+v", r)
			}
			if !v.Inspects() || s.Services[0].Inspects() {
				t.Error("Inspects")
			}
			if n := v.BackendCount(); n != 2 {
				t.Errorf("BackendCount %d", n)
			}
			if ps := v.Pools(); len(ps) != 2 || ps[0].Name != "api" || ps[1].Name != DefaultServiceName {
				t.Errorf("pools %+v", ps)
			}
		}},

		// Both forms at once.
		{name: "top-level port with services", yaml: doc(append([]string{"port: 80", "bind_address: 127.0.0.1", "method: random_two", "backends: [{host: a, port: 1}]"}, two...)...),
			errs: []wantIssue{
				{"port is a key of the single-service form; with services: (line 5) set it inside each service", 1},
				{"bind_address is a key of the single-service form", 2},
				{"method is a key of the single-service form", 3},
				{"backends is a key of the single-service form", 4},
			}},
		{name: "top-level service keys with services", yaml: doc(append([]string{"routes: []", "allow: [10.0.0.0/8]", "on_backend_down: close"}, two...)...),
			errs: []wantIssue{{"routes is a key of the single-service form", 1}, {"allow is a key", 2}, {"on_backend_down is a key", 3}}},
		{name: "name at top level", yaml: "name: web\n" + one, errs: []wantIssue{{`unknown key "name": the single-service form is always one tcp service named default; write a services: list`, 1}}},
		{name: "protocol at top level", yaml: "protocol: udp\n" + one, errs: []wantIssue{{`unknown key "protocol"`, 1}}},

		// The services: list itself.
		{name: "services empty", yaml: "services: []\n", errs: []wantIssue{{"services is empty: list at least one service", 1}}},
		{name: "services null", yaml: "services:\n", errs: []wantIssue{{"services is empty", 1}}},
		{name: "services not a list", yaml: "services: {name: web}\n", errs: []wantIssue{{"services must be a list of services ({name, port, backends}), got a mapping", 1}}},
		{name: "service not a mapping", yaml: with(two, "  - web"), errs: []wantIssue{{`services[2] must be a mapping with name, port and backends, got the string "web"`, 12}}},
		{name: "unknown service key", yaml: with(two, "    methd: round_robin"), errs: []wantIssue{{`services[1]: unknown key "methd"; did you mean "method"?`, 12}}},
		{name: "service without port", yaml: doc("services:", "  - name: web", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{"services[0] (web) has no port", 2}}},
		{name: "service port out of range", yaml: doc("services:", "  - name: web", "    port: 0", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{"services[0].port must be an integer from 1 to 65535, got 0", 3}}},
		{name: "service protocol", yaml: doc("services:", "  - name: web", "    protocol: sctp", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{`services[0].protocol must be one of tcp, udp; got "sctp"`, 3}}},
		{name: "service bind address", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: \"a b\"", "    backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{`services[0].bind_address "a b" is not a valid IP address or host name`, 4}}},
		{name: "service method", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1", "    method: fastest", "    backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{"services[0].method must be one of round_robin", 5}}},
		{name: "service on all interfaces by default", yaml: doc("services:", "  - name: web", "    port: 1", "    backends: [{host: a, port: 1}]"),
			warns: []wantIssue{{"services[0].bind_address is 0.0.0.0 (listens on all interfaces, the default when bind_address is not set)", 2}}},
		{name: "service on all interfaces", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: \"::\"", "    backends: [{host: a, port: 1}]"),
			warns: []wantIssue{{"services[0].bind_address is :: (listens on all interfaces)", 4}}},

		// Names.
		{name: "no name", yaml: doc("services:", "  - port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{"services[0] has no name: every service needs one", 2}}},
		{name: "name uppercase", yaml: doc("services:", "  - name: Web", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{`services[0].name "Web" is not a valid service name: 1 to 32 lowercase letters`, 2}}},
		{name: "name starts with a dash", yaml: doc("services:", "  - name: -web", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{`services[0].name "-web" is not a valid service name`, 2}}},
		{name: "name 33 bytes", yaml: doc("services:", "  - name: "+strings.Repeat("a", 33), "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{"is not a valid service name", 2}}},
		{name: "name 32 bytes", yaml: doc("services:", "  - name: "+strings.Repeat("a", 31)+"9", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]")},
		{name: "name with a dot", yaml: doc("services:", "  - name: web.1", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{"is not a valid service name", 2}}},
		{name: "name a number", yaml: doc("services:", "  - name: 5", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{"services[0].name must be a name (1 to 32", 2}}},
		{name: "name quoted number", yaml: doc("services:", "  - name: \"5\"", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]")},
		{name: "duplicate names", yaml: with(two, "  - name: web", "    bind_address: 127.0.0.1", "    port: 8080", "    backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{`services[2].name "web" is a duplicate of the service on line 2`, 12}}},

		// Pools.
		{name: "no backends and no routes", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1"),
			errs: []wantIssue{{"services[0] (web) has no backends and no routes", 2}}},
		{name: "empty backends and no routes", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1", "    backends: []"),
			errs: []wantIssue{{"services[0].backends is empty: list at least one backend as {host, port}, or add routes", 5}}},
		{name: "empty backends and empty routes", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1", "    backends: []", "    routes: []"),
			errs: []wantIssue{{"services[0].backends is empty", 5}}},
		{name: "routes only", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1", "    routes:", "      - name: a", "        match: {source: [10.0.0.0/8]}", "        backends: [{host: a, port: 1}]"),
			check: func(t *testing.T, s *Snapshot) {
				if len(s.Backends) != 0 || s.Services[0].BackendCount() != 1 || len(s.Services[0].Pools()) != 1 || s.Services[0].Inspects() {
					t.Errorf("service %+v", s.Services[0])
				}
			}},
		{name: "routes and empty backends", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1", "    backends: []", "    routes:", "      - name: a", "        match: {source: [10.0.0.0/8]}", "        backends: [{host: a, port: 1}]")},
		{name: "same backend in two pools", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]",
			"    routes:", "      - name: a", "        match: {alpn: [h2]}", "        backends: [{host: a, port: 1}, {host: \"b\", port: 1}]"),
			check: func(t *testing.T, s *Snapshot) {
				if s.Services[0].BackendCount() != 3 {
					t.Errorf("BackendCount = %d", s.Services[0].BackendCount())
				}
			}},
		{name: "duplicate backend within a route", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1",
			"    routes:", "      - name: a", "        match: {alpn: [h2]}", "        backends:", "          - {host: \"::1\", port: 1}", "          - {host: \"[::1]\", port: 1}"),
			errs: []wantIssue{{"services[0].routes[0].backends[1] [::1]:1 is a duplicate of the backend on line 9", 10}}},
		{name: "same backend in two services", yaml: with(two, "  - name: web2", "    bind_address: 127.0.0.1", "    port: 444", "    backends: [{host: 10.0.0.1, port: 443}]")},
		{name: "backend loops into its own service", yaml: with(two, "  - name: loop", "    bind_address: 127.0.0.1", "    port: 444", "    backends: [{host: 127.0.0.1, port: 444}]"),
			warns: []wantIssue{{"services[2].backends[0] 127.0.0.1:444 is bal's own listen address 127.0.0.1:444", 15}}},
		{name: "route backend loops", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1",
			"    routes:", "      - name: a", "        match: {alpn: [h2]}", "        backends: [{host: localhost, port: 1}]"),
			warns: []wantIssue{{"services[0].routes[0].backends[0] localhost:1 is bal's own listen address", 8}}},
	})
}

// TestParseServiceOverlap: two services overlap on one port and protocol
// when their addresses are the same after normalising, or one is a
// wildcard.
func TestParseServiceOverlap(t *testing.T) {
	pair := func(proto1, bind1, port1, proto2, bind2, port2 string) string {
		return doc(append(append([]string{"services:"}, svc("a", proto1, bind1, port1)...), svc("b", proto2, bind2, port2)...)...)
	}
	overlap := func(addr string) []wantIssue {
		return []wantIssue{{"services[1] (b) listens on " + addr + ", which overlaps service a on", 10}}
	}
	tests := []svcCase{
		{name: "same address", yaml: pair("tcp", "127.0.0.1", "53", "tcp", "127.0.0.1", "53"), errs: overlap("127.0.0.1:53/tcp")},
		{name: "ipv6 spellings", yaml: pair("tcp", "\"::1\"", "53", "tcp", "\"[0:0::1]\"", "53"), errs: overlap("[0:0::1]:53/tcp")},
		{name: "mapped ipv4", yaml: pair("tcp", "127.0.0.1", "53", "tcp", "\"::ffff:127.0.0.1\"", "53"), errs: overlap("[::ffff:127.0.0.1]:53/tcp")},
		{name: "host name case", yaml: pair("udp", "LB.internal", "53", "udp", "lb.internal", "53"), errs: overlap("lb.internal:53/udp")},
		{name: "wildcard then address", yaml: pair("tcp", "0.0.0.0", "53", "tcp", "127.0.0.1", "53"), errs: overlap("127.0.0.1:53/tcp")},
		{name: "address then wildcard", yaml: pair("tcp", "127.0.0.1", "53", "tcp", "0.0.0.0", "53"), errs: overlap("0.0.0.0:53/tcp")},
		{name: "ipv6 wildcard and ipv4", yaml: pair("tcp", "\"::\"", "53", "tcp", "127.0.0.1", "53"), errs: overlap("127.0.0.1:53/tcp")},
		{name: "ipv4 wildcard and ipv6", yaml: pair("tcp", "0.0.0.0", "53", "tcp", "\"::1\"", "53"), errs: overlap("[::1]:53/tcp")},
		{name: "two wildcards", yaml: pair("udp", "0.0.0.0", "53", "udp", "\"[::]\"", "53"), errs: overlap("[::]:53/udp")},
		{name: "wildcard and host name", yaml: pair("tcp", "0.0.0.0", "53", "tcp", "localhost", "53"), errs: overlap("localhost:53/tcp")},
		{name: "other port", yaml: pair("tcp", "127.0.0.1", "53", "tcp", "127.0.0.1", "54")},
		{name: "other protocol", yaml: pair("tcp", "0.0.0.0", "53", "udp", "0.0.0.0", "53"),
			warns: []wantIssue{{"services[0].bind_address is 0.0.0.0", 4}, {"services[1].bind_address is 0.0.0.0", 9}}},
		{name: "other addresses", yaml: pair("tcp", "127.0.0.1", "53", "tcp", "127.0.0.2", "53")},
		{name: "names not resolved", yaml: pair("tcp", "localhost", "53", "tcp", "127.0.0.1", "53")},
	}
	for i := range tests {
		if tests[i].errs == nil && tests[i].warns == nil && strings.Contains(tests[i].yaml, "0.0.0.0") {
			t.Fatalf("case %s needs its warnings", tests[i].name)
		}
	}
	// Addresses in errors: the wildcard cases also warn; only errors are
	// compared for invalid files.
	runSvcCases(t, tests)

	// Three services on one port: each later one is reported once.
	y := doc(append(append(append([]string{"services:"}, svc("a", "tcp", "127.0.0.1", "80")...), svc("b", "tcp", "127.0.0.2", "80")...), svc("c", "tcp", "0.0.0.0", "80")...)...)
	matchIssues(t, "errors", parseErr(t, y).Issues, []wantIssue{{"services[2] (c) listens on 0.0.0.0:80/tcp, which overlaps service a on 127.0.0.1:80/tcp (line 5)", 15}})
}

func TestParseRoutes(t *testing.T) {
	// head is a service whose routes: list starts on line 6.
	head := []string{"services:", "  - name: web", "    port: 443", "    bind_address: 127.0.0.1", "    routes:"}
	route := func(lines ...string) string { return doc(append(slices.Clone(head), lines...)...) }
	be := "        backends: [{host: a, port: 1}]"
	tests := []svcCase{
		{name: "sni normalised", yaml: route("      - name: api", "        match:", "          sni: [API.example.COM., \"*.Example.net\", api.example.com]", be),
			check: func(t *testing.T, s *Snapshot) {
				if got := s.Services[0].Routes[0].Match.SNI; !slices.Equal(got, []string{"api.example.com", "*.example.net"}) {
					t.Errorf("sni = %q", got)
				}
			}},
		{name: "sni wildcard of a top-level domain", yaml: route("      - name: api", "        match: {sni: [\"*.internal\"]}", be)},
		{name: "sni underscore", yaml: route("      - name: api", "        match: {sni: [_svc.example.com]}", be)},
		{name: "sni wildcard inside", yaml: route("      - name: api", "        match: {sni: [\"a.*.example.com\"]}", be),
			errs: []wantIssue{{`services[0].routes[0].match.sni[0] "a.*.example.com" is not a valid pattern: '*' may only be the whole first label`, 7}}},
		{name: "sni partial wildcard", yaml: route("      - name: api", "        match: {sni: [\"*api.example.com\"]}", be),
			errs: []wantIssue{{"is not a valid pattern", 7}}},
		{name: "sni double wildcard", yaml: route("      - name: api", "        match: {sni: [\"*.*.example.com\"]}", be), errs: []wantIssue{{"is not a valid pattern", 7}}},
		{name: "sni bare star", yaml: route("      - name: api", "        match: {sni: [\"*\"]}", be), errs: []wantIssue{{`"*" matches every name: leave sni out`, 7}}},
		{name: "sni empty name", yaml: route("      - name: api", "        match: {sni: [\"\"]}", be), errs: []wantIssue{{`sni[0] "" is empty`, 7}}},
		{name: "sni bad characters", yaml: route("      - name: api", "        match:", "          sni:", "            - ok.example.com", "            - \"bad name.com\"", be),
			errs: []wantIssue{{`services[0].routes[0].match.sni[1] "bad name.com" is not a valid DNS name`, 10}}},
		{name: "sni empty label", yaml: route("      - name: api", "        match: {sni: [a..b]}", be), errs: []wantIssue{{"is not a valid DNS name", 7}}},
		{name: "sni label too long", yaml: route("      - name: api", "        match: {sni: ["+strings.Repeat("a", 64)+".com]}", be), errs: []wantIssue{{"is not a valid DNS name", 7}}},
		{name: "sni ip address", yaml: route("      - name: api", "        match: {sni: [192.0.2.1]}", be), errs: []wantIssue{{"is an IP address: clients never send one", 7}}},
		{name: "sni not a list", yaml: route("      - name: api", "        match: {sni: api.example.com}", be),
			errs: []wantIssue{{`match.sni must be a list of server names, got the string "api.example.com" (write ["api.example.com"])`, 7}}},
		{name: "sni empty list", yaml: route("      - name: api", "        match: {sni: []}", be), errs: []wantIssue{{"services[0].routes[0].match.sni is empty", 7}}},
		{name: "sni entry not a string", yaml: route("      - name: api", "        match: {sni: [5]}", be), errs: []wantIssue{{"match.sni[0] must be a string, got the integer 5", 7}}},
		{name: "alpn", yaml: route("      - name: api", "        match: {alpn: [h2, http/1.1, h2]}", be),
			check: func(t *testing.T, s *Snapshot) {
				if got := s.Services[0].Routes[0].Match.ALPN; !slices.Equal(got, []string{"h2", "http/1.1"}) || !s.Services[0].Inspects() {
					t.Errorf("alpn = %q", got)
				}
			}},
		{name: "alpn empty name", yaml: route("      - name: api", "        match: {alpn: [\"\"]}", be), errs: []wantIssue{{"match.alpn[0] must be a protocol name of 1 to 255 bytes", 7}}},
		{name: "alpn too long", yaml: route("      - name: api", "        match: {alpn: ["+strings.Repeat("x", 256)+"]}", be), errs: []wantIssue{{"1 to 255 bytes", 7}}},
		{name: "source", yaml: route("      - name: api", "        match: {source: [10.0.0.0/8, \"2001:db8::/32\", \"::ffff:10.0.0.1\"]}", be),
			check: func(t *testing.T, s *Snapshot) {
				m := s.Services[0].Routes[0].Match
				if len(m.Source) != 3 || m.Source[0] != netip.MustParsePrefix("10.0.0.0/8") || s.Services[0].Inspects() {
					t.Errorf("source = %v", m.Source)
				}
			}},
		{name: "source bad cidr", yaml: route("      - name: api", "        match:", "          source:", "            - 10.0.0.0/33", "            - 300.1.1.1", "            - fe80::1%eth0", be),
			errs: []wantIssue{{`match.source[0] "10.0.0.0/33" is not an IP address or CIDR`, 9}, {`match.source[1] "300.1.1.1" is not an IP address or CIDR`, 10}, {`source[2] "fe80::1%eth0" is not an IP address or CIDR: an address with a zone`, 11}}},
		{name: "source host bits", yaml: route("      - name: api", "        match: {source: [10.1.2.3/8]}", be),
			warns: []wantIssue{{"services[0].routes[0].match.source[0] 10.1.2.3/8 has host bits set: it means 10.0.0.0/8", 7}}},
		{name: "source empty list", yaml: route("      - name: api", "        match: {source: []}", be), errs: []wantIssue{{"match.source is empty", 7}}},
		{name: "keys anded", yaml: route("      - name: api", "        match: {sni: [a.example.com], alpn: [h2], source: [10.0.0.0/8]}", be),
			check: func(t *testing.T, s *Snapshot) {
				if m := s.Services[0].Routes[0].Match; m.String() != "sni=a.example.com alpn=h2 source=10.0.0.0/8" {
					t.Errorf("match %q", m.String())
				}
			}},
		{name: "no match", yaml: route("      - name: api", be), errs: []wantIssue{{"services[0].routes[0] has no match: set sni, alpn or source", 6}}},
		{name: "empty match", yaml: route("      - name: api", "        match: {}", be), errs: []wantIssue{{"services[0].routes[0].match has no key: set sni, alpn or source", 7}}},
		{name: "null match", yaml: route("      - name: api", "        match:", be), errs: []wantIssue{{"match has no key", 7}}},
		{name: "match not a mapping", yaml: route("      - name: api", "        match: [a]", be), errs: []wantIssue{{"match must be a mapping with sni, alpn or source, got a list", 7}}},
		{name: "unknown match key", yaml: route("      - name: api", "        match: {snii: [a.com]}", be), errs: []wantIssue{{`match: unknown key "snii"; did you mean "sni"?`, 7}}},
		{name: "route without backends", yaml: route("      - name: api", "        match: {alpn: [h2]}"), errs: []wantIssue{{"services[0].routes[0] has no backends", 6}}},
		{name: "route with empty backends", yaml: route("      - name: api", "        match: {alpn: [h2]}", "        backends: []"),
			errs: []wantIssue{{"services[0].routes[0].backends is empty: list at least one backend as {host, port}", 8}}},
		{name: "route backend broken", yaml: route("      - name: api", "        match: {alpn: [h2]}", "        backends: [{host: a, port: 0}]"),
			errs: []wantIssue{{"services[0].routes[0].backends[0].port must be an integer from 1 to 65535", 8}}},
		{name: "route without name", yaml: route("      - match: {alpn: [h2]}", be), errs: []wantIssue{{"services[0].routes[0] has no name: every route needs one", 6}}},
		{name: "route named default", yaml: route("      - name: default", "        match: {alpn: [h2]}", be), errs: []wantIssue{{`routes[0].name "default" is reserved for the service's default pool`, 6}}},
		{name: "route name invalid", yaml: route("      - name: API", "        match: {alpn: [h2]}", be), errs: []wantIssue{{`routes[0].name "API" is not a valid route name`, 6}}},
		{name: "route names unique", yaml: route("      - name: api", "        match: {alpn: [h2]}", be, "      - name: api", "        match: {alpn: [h3]}", be),
			errs: []wantIssue{{`services[0].routes[1].name "api" is a duplicate of the route on line 6`, 9}}},
		{name: "route names unique when broken", yaml: route("      - name: api", "        match: {alpn: [h2]}", be, "      - name: api", "        match: {}", be),
			errs: []wantIssue{{`routes[1].name "api" is a duplicate`, 9}, {"routes[1].match has no key", 10}}},
		{name: "same route name in two services", yaml: doc("services:",
			"  - name: a", "    port: 1", "    bind_address: 127.0.0.1", "    routes: [{name: r, match: {alpn: [h2]}, backends: [{host: a, port: 1}]}]",
			"  - name: b", "    port: 2", "    bind_address: 127.0.0.1", "    routes: [{name: r, match: {alpn: [h2]}, backends: [{host: a, port: 1}]}]")},
		{name: "route unknown key", yaml: route("      - name: api", "        match: {alpn: [h2]}", be, "        weight: 2"), errs: []wantIssue{{`services[0].routes[0]: unknown key "weight"`, 9}}},
		{name: "route method", yaml: route("      - name: api", "        match: {alpn: [h2]}", "        method: least_connections", be),
			check: func(t *testing.T, s *Snapshot) {
				if s.Services[0].Routes[0].Method != LeastConnections || s.Services[0].Method != RoundRobin {
					t.Error("route method")
				}
			}},
		{name: "route method bad", yaml: route("      - name: api", "        match: {alpn: [h2]}", "        method: fast", be), errs: []wantIssue{{"routes[0].method must be one of", 8}}},
		{name: "route health check replaces the service's", yaml: doc(append(append(slices.Clone(head[:4]), "    health_check: {type: http, http_path: /h}", "    routes:"),
			"      - name: api", "        match: {alpn: [h2]}", "        health_check: {port: 9000}", be)...),
			check: func(t *testing.T, s *Snapshot) {
				v := s.Services[0]
				if v.HealthCheck.Type != CheckHTTP || !reflect.DeepEqual(v.Routes[0].HealthCheck, HealthCheck{Type: CheckTCP, Port: 9000}) {
					t.Errorf("service %v, route %v", v.HealthCheck, v.Routes[0].HealthCheck)
				}
			}},
		{name: "routes not a list", yaml: route("        {name: a}"), errs: []wantIssue{{"services[0].routes must be a list of {name, match, backends} entries, got a mapping", 6}}},
		{name: "route not a mapping", yaml: route("      - api"), errs: []wantIssue{{`services[0].routes[0] must be a mapping with name, match and backends, got the string "api"`, 6}}},
	}
	runSvcCases(t, tests)
}

// TestParseSingleFormServiceKeys: the single-service form takes every
// service key except name and protocol at the top level.
func TestParseSingleFormServiceKeys(t *testing.T) {
	runSvcCases(t, []svcCase{
		{name: "every key", yaml: doc(
			"bind_address: 127.0.0.1",
			"port: 443",
			"on_backend_down: close",
			"allow: [10.0.0.0/8]",
			"deny: [10.0.0.1]", // 5
			"max_connections_per_source: 3",
			"connection_rate_per_source: 10/m",
			"accept_proxy_protocol: v1",
			"trusted_proxies: [127.0.0.1]",
			"health_check:", // 10
			"  type: send_expect",
			"  send: \"PING\\r\\n\"",
			"  expect: \"+PONG\"",
			"routes:",
			"  - name: api", // 15
			"    match: {sni: [api.example.com]}",
			"    backends: [{host: 10.0.0.5, port: 443}]",
			"backends: [{host: 10.0.0.6, port: 443}]",
		), check: func(t *testing.T, s *Snapshot) {
			v := s.Services[0]
			if !s.Single || v.Name != DefaultServiceName || v.OnBackendDown != OnDownClose || len(v.Access.Allow) != 1 || v.Access.Deny[0].Bits() != 32 ||
				v.Access.MaxConnectionsPerSource != 3 || v.Access.ConnectionRatePerSource.Per() != time.Minute || v.Access.AcceptProxyProtocol != ProxyV1 {
				t.Errorf("service %+v", v)
			}
			if string(v.HealthCheck.Send) != "PING\r\n" || string(v.HealthCheck.Expect) != "+PONG" || v.Routes[0].HealthCheck.Type != CheckSendExpect {
				t.Errorf("health check %+v", v.HealthCheck)
			}
			if len(s.Backends) != 1 || v.BackendCount() != 2 || s.Runtime != Profile(2) || v.Runtime != Profile(2) {
				t.Errorf("backends %v, runtime %+v", s.Backends, s.Runtime)
			}
		}},
		{name: "routes without backends", yaml: doc("bind_address: 127.0.0.1", "routes:", "  - name: api", "    match: {alpn: [h2]}", "    backends: [{host: a, port: 1}]"),
			check: func(t *testing.T, s *Snapshot) {
				if len(s.Backends) != 0 || len(s.Services[0].Routes) != 1 {
					t.Errorf("%+v", s.Services[0])
				}
			}},
		{name: "empty backends without routes", yaml: doc("bind_address: 127.0.0.1", "backends: []", "routes: []"), errs: []wantIssue{{"backends is empty: list at least one backend as {host, port}", 2}}},
		{name: "route errors name top-level keys", yaml: doc("bind_address: 127.0.0.1", "routes:", "  - name: api", "    match: {sni: [\"*\"]}", "    backends: []", "backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{`routes[0].match.sni[0] "*" matches every name`, 4}, {"routes[0].backends is empty", 5}}},
		{name: "top-level access key errors", yaml: doc("bind_address: 127.0.0.1", "allow: [nope]", "max_connections_per_source: 0", one),
			errs: []wantIssue{{`allow[0] "nope" is not an IP address or CIDR`, 2}, {"max_connections_per_source must be an integer from 1 to 10000000 (remove the key for no limit), got 0", 3}}},
		{name: "on_backend_down bad", yaml: doc("bind_address: 127.0.0.1", "on_backend_down: drain", one),
			errs: []wantIssue{{`on_backend_down must be one of keep, close; got "drain"`, 2}}},
	})
}

func TestParseAccess(t *testing.T) {
	// base: a single-service file whose access keys start on line 4.
	base := func(lines ...string) string {
		return doc(append([]string{"bind_address: 127.0.0.1", "backends:", "  - {host: 10.0.0.1, port: 80}"}, lines...)...)
	}
	runSvcCases(t, []svcCase{
		{name: "allow and deny", yaml: base("allow: [10.0.0.0/8, \"::1\"]", "deny: []"), check: func(t *testing.T, s *Snapshot) {
			a := s.Services[0].Access
			if len(a.Allow) != 2 || a.Allow[1] != netip.MustParsePrefix("::1/128") || len(a.Deny) != 0 {
				t.Errorf("%+v", a)
			}
		}},
		{name: "allow host bits", yaml: base("allow: [192.168.1.1/16]"), warns: []wantIssue{{"allow[0] 192.168.1.1/16 has host bits set: it means 192.168.0.0/16", 4}}},
		{name: "deny bad", yaml: base("deny:", "  - 10.0.0.0/8", "  - 10.0.0.0/", "  - \"\""),
			errs: []wantIssue{{`deny[1] "10.0.0.0/" is not an IP address or CIDR`, 6}, {`deny[2] "" is not an IP address or CIDR: empty`, 7}}},
		{name: "allow a string", yaml: base("allow: 10.0.0.0/8"), errs: []wantIssue{{`allow must be a list of addresses or CIDRs, got the string "10.0.0.0/8" (write ["10.0.0.0/8"])`, 4}}},
		{name: "allow null", yaml: base("allow:"), errs: []wantIssue{{"allow is empty", 4}}},
		{name: "max connections", yaml: base("max_connections_per_source: 20"), check: func(t *testing.T, s *Snapshot) {
			if s.Services[0].Access.MaxConnectionsPerSource != 20 {
				t.Error(s.Services[0].Access)
			}
		}},
		{name: "max connections string", yaml: base("max_connections_per_source: \"20\""), errs: []wantIssue{{"max_connections_per_source must be an integer", 4}}},
		{name: "rate per second", yaml: base("connection_rate_per_source: 50/s"), check: func(t *testing.T, s *Snapshot) {
			if r := s.Services[0].Access.ConnectionRatePerSource; r.Count() != 50 || r.Per() != time.Second {
				t.Error(r)
			}
		}},
		{name: "rate unit", yaml: base("connection_rate_per_source: 5/h"), errs: []wantIssue{{`connection_rate_per_source must be N/s or N/m (N from 1 to 1000000), got "5/h": unit "h"`, 4}}},
		{name: "rate zero", yaml: base("connection_rate_per_source: 0/s"), errs: []wantIssue{{"count must be at least 1", 4}}},
		{name: "rate huge", yaml: base("connection_rate_per_source: 1000001/s"), errs: []wantIssue{{"count above 1000000", 4}}},
		{name: "rate not a string", yaml: base("connection_rate_per_source: 50"), errs: []wantIssue{{`connection_rate_per_source must be a rate such as "50/s" or "600/m", got the integer 50`, 4}}},
		{name: "rate with spaces", yaml: base("connection_rate_per_source: \"50 /s\""), errs: []wantIssue{{"is not a whole number", 4}}},
		{name: "proxy in with trusted", yaml: base("accept_proxy_protocol: v2", "trusted_proxies: [10.0.0.0/8, \"fd00::/8\"]"), check: func(t *testing.T, s *Snapshot) {
			if a := s.Services[0].Access; a.AcceptProxyProtocol != ProxyV2 || len(a.TrustedProxies) != 2 {
				t.Error(a)
			}
		}},
		{name: "proxy in without trusted", yaml: base("accept_proxy_protocol: any"),
			errs: []wantIssue{{"accept_proxy_protocol any needs trusted_proxies: the addresses of the balancers allowed to send a PROXY header", 4}}},
		{name: "proxy in with empty trusted", yaml: base("accept_proxy_protocol: v1", "trusted_proxies: []"),
			errs: []wantIssue{{"trusted_proxies is empty while accept_proxy_protocol is v1", 5}}},
		{name: "proxy in bad value", yaml: base("accept_proxy_protocol: v3"), errs: []wantIssue{{`accept_proxy_protocol must be one of off, v1, v2, any; got "v3"`, 4}}},
		{name: "proxy in off", yaml: base("accept_proxy_protocol: \"off\"")},
		{name: "proxy in off unquoted", yaml: base("accept_proxy_protocol: off")}, // yaml.v3 reads off as a string
		{name: "trusted without proxy in", yaml: base("trusted_proxies: [10.0.0.1]"), warns: []wantIssue{{"trusted_proxies has no effect while accept_proxy_protocol is off", 4}}},
		{name: "trusted bad", yaml: base("accept_proxy_protocol: v2", "trusted_proxies: [10.0.0.300]"),
			errs: []wantIssue{{`trusted_proxies[0] "10.0.0.300" is not an IP address or CIDR`, 5}, {"trusted_proxies is empty while accept_proxy_protocol is v2", 5}}},
	})
}

func TestParseHealthCheck(t *testing.T) {
	// base: a single-service file whose health_check: is on line 4.
	base := func(lines ...string) string {
		return doc(append([]string{"bind_address: 127.0.0.1", "backends:", "  - {host: 10.0.0.1, port: 80}"}, lines...)...)
	}
	hc := func(t *testing.T, s *Snapshot) HealthCheck { t.Helper(); return s.Services[0].HealthCheck }
	runSvcCases(t, []svcCase{
		{name: "default tcp", yaml: base(), check: func(t *testing.T, s *Snapshot) {
			if h := hc(t, s); h.Type != CheckTCP || h.String() != "tcp" {
				t.Errorf("%+v", h)
			}
		}},
		{name: "type only", yaml: base("health_check: {type: tcp}")},
		{name: "port only", yaml: base("health_check: {port: 8081}"), check: func(t *testing.T, s *Snapshot) {
			if h := hc(t, s); !reflect.DeepEqual(h, HealthCheck{Type: CheckTCP, Port: 8081}) {
				t.Errorf("%+v", h)
			}
		}},
		{name: "type unknown", yaml: base("health_check: {type: icmp}"), errs: []wantIssue{{`health_check.type must be one of tcp, send_expect, http; got "icmp"`, 4}}},
		{name: "port 0", yaml: base("health_check: {port: 0}"), errs: []wantIssue{{"health_check.port must be an integer from 1 to 65535, got 0", 4}}},
		{name: "port 65536", yaml: base("health_check:", "  port: 65536"), errs: []wantIssue{{"health_check.port must be an integer from 1 to 65535, got 65536", 5}}},
		{name: "not a mapping", yaml: base("health_check: tcp"), errs: []wantIssue{{`health_check must be a mapping of keys (type, port, ...), got the string "tcp"`, 4}}},
		{name: "null", yaml: base("health_check:"), errs: []wantIssue{{"health_check has no value", 4}}},
		{name: "unknown key", yaml: base("health_check:", "  type: http", "  http_paht: /"), errs: []wantIssue{{`health_check: unknown key "http_paht"; did you mean "http_path"?`, 6}}},

		{name: "send_expect with escapes", yaml: base("health_check:", "  type: send_expect", `  send: "\x00\x01\xd2\r\n"`, `  expect: "\u00e9OK"`),
			check: func(t *testing.T, s *Snapshot) {
				h := hc(t, s)
				if string(h.Send) != "\x00\x01\xd2\r\n" || string(h.Expect) != "\xe9OK" {
					t.Errorf("send %q expect %q", h.Send, h.Expect)
				}
			}},
		{name: "send plain and single quoted are text", yaml: base("health_check:", "  type: send_expect", `  send: 'é\x00'`, "  expect: é"),
			check: func(t *testing.T, s *Snapshot) {
				if h := hc(t, s); string(h.Send) != `é\x00` || string(h.Expect) != "é" {
					t.Errorf("send %q expect %q", h.Send, h.Expect)
				}
			}},
		{name: "double quoted beyond latin-1 is utf-8", yaml: base("health_check:", "  type: send_expect", `  send: "\xd2 €"`, "  expect: x"),
			check: func(t *testing.T, s *Snapshot) {
				if h := hc(t, s); string(h.Send) != "Ò €" {
					t.Errorf("send %q", h.Send)
				}
			}},
		{name: "send binary", yaml: base("health_check:", "  type: send_expect", "  send: !!binary AAEC/w==", "  expect: !!binary T0s="),
			check: func(t *testing.T, s *Snapshot) {
				if h := hc(t, s); string(h.Send) != "\x00\x01\x02\xff" || string(h.Expect) != "OK" {
					t.Errorf("send %q expect %q", h.Send, h.Expect)
				}
			}},
		{name: "send binary broken", yaml: base("health_check:", "  type: send_expect", "  send: !!binary \"a\"", "  expect: x"),
			errs: []wantIssue{{"health_check.send: !!binary must be base64", 6}}},
		{name: "send bad escape", yaml: base("health_check:", "  type: send_expect", `  send: "\q"`, "  expect: x"), errs: []wantIssue{{"invalid YAML", 6}}},
		{name: "expect without send", yaml: base("health_check: {type: send_expect, expect: \"220 \"}"), check: func(t *testing.T, s *Snapshot) {
			if h := hc(t, s); h.Send != nil || string(h.Expect) != "220 " {
				t.Errorf("%+v", h)
			}
		}},
		{name: "send_expect without expect", yaml: base("health_check:", "  type: send_expect", "  send: PING"),
			errs: []wantIssue{{"health_check: type send_expect needs expect: the bytes the reply must contain", 4}}},
		{name: "expect empty", yaml: base("health_check: {type: send_expect, expect: \"\"}"), errs: []wantIssue{{"health_check.expect is empty", 4}}},
		{name: "expect too long", yaml: base("health_check: {type: send_expect, expect: " + strings.Repeat("x", MaxCheckExpect+1) + "}"),
			errs: []wantIssue{{"health_check.expect is 4097 bytes; at most 4096", 4}}},
		{name: "expect 4096", yaml: base("health_check: {type: send_expect, expect: " + strings.Repeat("x", MaxCheckExpect) + "}")},
		{name: "send a number", yaml: base("health_check: {type: send_expect, send: 5, expect: x}"), errs: []wantIssue{{"health_check.send must be a string", 4}}},
		{name: "send on tcp", yaml: base("health_check:", "  send: PING"), errs: []wantIssue{{"health_check.send is only used by type send_expect (this check is tcp)", 5}}},
		{name: "http keys on send_expect", yaml: base("health_check:", "  type: send_expect", "  expect: x", "  http_path: /", "  http_status: 200"),
			errs: []wantIssue{{"health_check.http_path is only used by type http", 7}, {"health_check.http_status is only used by type http", 8}}},

		{name: "http defaults", yaml: base("health_check: {type: http}"), check: func(t *testing.T, s *Snapshot) {
			h := hc(t, s)
			if h.HTTPPath != "/" || !slices.Equal(h.HTTPStatus, []StatusRange{{200, 399}}) || h.String() != "http GET / status 200-399" {
				t.Errorf("%+v %q", h, h.String())
			}
		}},
		{name: "http full", yaml: base("health_check:", "  type: http", "  port: 8080", "  http_path: /healthz?full=1", "  http_host: app.example.com:8080", "  http_status: [200, 204, \"301-302\"]", "  expect: ok"),
			check: func(t *testing.T, s *Snapshot) {
				h := hc(t, s)
				if h.String() != `http port 8080 GET /healthz?full=1 host app.example.com:8080 status 200,204,301-302 expect "ok"` {
					t.Errorf("%q", h.String())
				}
			}},
		{name: "http status string list", yaml: base("health_check: {type: http, http_status: \"200, 204,301-302\"}"), check: func(t *testing.T, s *Snapshot) {
			if got := hc(t, s).HTTPStatus; !slices.Equal(got, []StatusRange{{200, 200}, {204, 204}, {301, 302}}) {
				t.Errorf("%v", got)
			}
		}},
		{name: "http status one code", yaml: base("health_check: {type: http, http_status: 204}"), check: func(t *testing.T, s *Snapshot) {
			if got := hc(t, s).HTTPStatus; !slices.Equal(got, []StatusRange{{204, 204}}) {
				t.Errorf("%v", got)
			}
		}},
		{name: "http status low above high", yaml: base("health_check: {type: http, http_status: \"399-200\"}"),
			errs: []wantIssue{{`health_check.http_status "399-200" is a range whose low end 399 is above its high end 200`, 4}}},
		{name: "http status out of range", yaml: base("health_check:", "  type: http", "  http_status:", "    - 200", "    - 600", "    - \"99-200\""),
			errs: []wantIssue{{`health_check.http_status "600" is not a status code from 100 to 599`, 8}, {`health_check.http_status "99-200" is not a status code`, 9}}},
		{name: "http status garbage", yaml: base("health_check: {type: http, http_status: \"2xx\"}"), errs: []wantIssue{{`http_status "2xx" is not a status code`, 4}}},
		{name: "http status empty entry", yaml: base("health_check: {type: http, http_status: \"200,,300\"}"), errs: []wantIssue{{`http_status "" is empty`, 4}}},
		{name: "http status empty list", yaml: base("health_check: {type: http, http_status: []}"), errs: []wantIssue{{"health_check.http_status is empty", 4}}},
		{name: "http status a float", yaml: base("health_check: {type: http, http_status: [2.5]}"), errs: []wantIssue{{"http_status entries must be codes", 4}}},
		{name: "http path relative", yaml: base("health_check: {type: http, http_path: healthz}"), errs: []wantIssue{{`health_check.http_path "healthz" must start with "/"`, 4}}},
		{name: "http path with a space", yaml: base("health_check: {type: http, http_path: \"/a b\"}"), errs: []wantIssue{{"must not hold spaces or control characters", 4}}},
		{name: "http path with a newline", yaml: base("health_check: {type: http, http_path: \"/a\\r\\nX: y\"}"), errs: []wantIssue{{"must not hold spaces or control characters", 4}}},
		{name: "http host bad", yaml: base("health_check: {type: http, http_host: \"a b\"}"), errs: []wantIssue{{`health_check.http_host "a b" is not a valid IP address or host name`, 4}}},
		{name: "http host bad port", yaml: base("health_check: {type: http, http_host: \"a:0\"}"), errs: []wantIssue{{"has a port that is not a number from 1 to 65535", 4}}},
		{name: "http host ipv6", yaml: base("health_check: {type: http, http_host: \"[::1]:8080\"}")},
		{name: "http host on tcp", yaml: base("health_check: {http_host: a}"), errs: []wantIssue{{"health_check.http_host is only used by type http (this check is tcp)", 4}}},
	})
}

// TestParseUDP: what is an error on a udp service.
func TestParseUDP(t *testing.T) {
	// head: a udp service whose next key is on line 6.
	head := []string{"services:", "  - name: dns", "    protocol: udp", "    bind_address: 127.0.0.1", "    port: 53"}
	udp := func(lines ...string) string {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "    backends") || strings.HasPrefix(l, "    routes") }) {
			lines = append(lines, "    backends: [{host: 10.0.0.1, port: 53}]")
		}
		return doc(append(slices.Clone(head), lines...)...)
	}
	runSvcCases(t, []svcCase{
		{name: "passive by default", yaml: udp(), check: func(t *testing.T, s *Snapshot) {
			v := s.Services[0]
			if v.Protocol != UDP || v.HealthCheck.Type != "" || v.HealthCheck.String() != "passive" {
				t.Errorf("%+v", v)
			}
		}},
		{name: "send_expect", yaml: udp("    health_check: {type: send_expect, send: \"\\x00\", expect: x}"), check: func(t *testing.T, s *Snapshot) {
			if h := s.Services[0].HealthCheck; h.Type != CheckSendExpect || string(h.Send) != "\x00" {
				t.Errorf("%+v", h)
			}
		}},
		{name: "tcp check", yaml: udp("    health_check: {type: tcp}"), errs: []wantIssue{{"services[0].health_check.type tcp is not available on a udp service: use send_expect", 6}}},
		{name: "http check", yaml: udp("    health_check: {type: http}"), errs: []wantIssue{{"health_check.type http is not available on a udp service", 6}}},
		{name: "check without type", yaml: udp("    health_check: {port: 5353}"), errs: []wantIssue{{"services[0].health_check has no type: a udp service can only use type send_expect", 6}}},
		{name: "route check tcp", yaml: udp("    routes:", "      - name: lan", "        match: {source: [10.0.0.0/8]}", "        health_check: {type: tcp}", "        backends: [{host: a, port: 53}]"),
			errs: []wantIssue{{"services[0].routes[0].health_check.type tcp is not available on a udp service", 9}}},
		{name: "source route", yaml: udp("    routes:", "      - name: lan", "        match: {source: [10.0.0.0/8]}", "        backends: [{host: a, port: 53}]"),
			check: func(t *testing.T, s *Snapshot) {
				if v := s.Services[0]; v.Inspects() || v.Routes[0].HealthCheck.Type != "" {
					t.Errorf("%+v", v)
				}
			}},
		{name: "sni route", yaml: udp("    routes:", "      - name: lan", "        match: {sni: [a.example.com]}", "        backends: [{host: a, port: 53}]"),
			errs: []wantIssue{{"services[0].routes[0].match.sni: a udp service cannot route on sni", 8}}},
		{name: "alpn route", yaml: udp("    routes:", "      - name: lan", "        match:", "          source: [10.0.0.0/8]", "          alpn: [h3]", "        backends: [{host: a, port: 53}]"),
			errs: []wantIssue{{"match.alpn: a udp service cannot route on alpn", 10}}},
		{name: "proxy protocol in", yaml: udp("    accept_proxy_protocol: v2", "    trusted_proxies: [10.0.0.1]"),
			errs: []wantIssue{{"services[0].accept_proxy_protocol v2 is not available on a udp service", 6}}},
		{name: "proxy protocol in off", yaml: udp("    accept_proxy_protocol: \"off\"")},
		{name: "proxy protocol out", yaml: doc(append([]string{"mode: advanced"}, strings.Split(strings.TrimSuffix(udp("    runtime: {proxy_protocol: v1}"), "\n"), "\n")...)...),
			errs: []wantIssue{{"services[0].runtime.proxy_protocol v1 is not available on a udp service", 7}}},
		{name: "proxy protocol out off", yaml: udp("    runtime: {proxy_protocol: \"off\"}"), warns: []wantIssue{{"services[0].runtime is ignored in simple mode", 6}}},
		{name: "tcp key in a udp service's runtime", yaml: "mode: advanced\n" + udp("    runtime: {tls_inspect_timeout_ms: 100}"),
			warns: []wantIssue{{"services[0].runtime.tls_inspect_timeout_ms has no effect on a udp service (it is for tcp services)", 7}}},
		{name: "udp key in a tcp service's runtime", yaml: doc("mode: advanced", "services:", "  - name: web", "    bind_address: 127.0.0.1", "    port: 1", "    backends: [{host: a, port: 1}]", "    runtime:", "      max_udp_flows: 10"),
			warns: []wantIssue{{"services[0].runtime.max_udp_flows has no effect on a tcp service (it is for udp services)", 8}}},
		{name: "top-level proxy_protocol leaves udp services alone", yaml: doc(append([]string{"mode: advanced", "runtime: {proxy_protocol: v2}"}, strings.Split(strings.TrimSuffix(udp(), "\n"), "\n")...)...),
			check: func(t *testing.T, s *Snapshot) {
				if s.Services[0].Runtime.ProxyProtocol != ProxyOff || s.Runtime.ProxyProtocol != ProxyV2 {
					t.Errorf("service %q, top %q", s.Services[0].Runtime.ProxyProtocol, s.Runtime.ProxyProtocol)
				}
			}},
		{name: "udp and tcp on one port", yaml: with(two, "  - name: dns", "    protocol: udp", "    bind_address: 127.0.0.1", "    port: 443", "    backends: [{host: a, port: 53}]")},
	})
}

// TestParseServiceRuntime: process-wide keys only at the top level; the
// precedence of profile, top-level and service runtime: key by key.
func TestParseServiceRuntime(t *testing.T) {
	runSvcCases(t, []svcCase{
		{name: "engine in a service", yaml: doc("mode: advanced", "services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]", "    runtime:",
			"      engine: std", "      metrics_address: 127.0.0.1:9100", "      drain_timeout_ms: 5", "      access_log: true", "      tcp_backlog: 5"),
			errs: []wantIssue{
				{"services[0].runtime.engine is process-wide: set it in the top-level runtime: block, not in a service's", 8},
				{"services[0].runtime.metrics_address is process-wide", 9},
				{"services[0].runtime.drain_timeout_ms is process-wide", 10},
				{"services[0].runtime.access_log is process-wide", 11},
			}},
		{name: "unknown key in a service's runtime", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]", "    runtime: {tcp_backlg: 1}"),
			errs: []wantIssue{{`services[0].runtime: unknown key "tcp_backlg"; did you mean "tcp_backlog"?`, 6}}},
		{name: "bad value in a service's runtime", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]", "    runtime: {source_table_size: 16777217}"),
			errs: []wantIssue{{"services[0].runtime.source_table_size must be an integer from 1 to 16777216, got 16777217", 6}}},
		{name: "runtime not a mapping", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]", "    runtime: 5"),
			errs: []wantIssue{{"services[0].runtime must be a mapping of keys, got the integer 5", 6}}},
		{name: "service runtime in simple mode", yaml: doc("services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]", "    runtime: {tcp_backlog: 1}"),
			warns: []wantIssue{{"services[0].runtime is ignored in simple mode; set mode: advanced", 6}},
			check: func(t *testing.T, s *Snapshot) {
				if s.Services[0].Runtime != Profile(1) {
					t.Errorf("%+v", s.Services[0].Runtime)
				}
			}},
		{name: "backoff across blocks", yaml: doc("mode: advanced", "runtime: {failover_backoff_initial_ms: 1000}", "services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]",
			"    runtime: {failover_backoff_max_ms: 900}", "  - name: db", "    port: 2", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]"),
			errs: []wantIssue{{"services[0].runtime.failover_backoff_max_ms (900) must be >= failover_backoff_initial_ms (1000)", 8}}},
		{name: "top-level key names the service", yaml: doc("mode: advanced", "runtime: {failover_backoff_max_ms: 250}", "services:",
			"  - name: small", "    port: 1", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}]",
			"  - name: big", "    port: 2", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 1}, {host: b, port: 1}, {host: c, port: 1}]"),
			// 250 is above the 200 ms of the small profile, below the 300 ms of the big one.
			errs: []wantIssue{{"runtime.failover_backoff_max_ms (250) must be >= failover_backoff_initial_ms (300, auto-tuned) (service big)", 2}}},
		{name: "metrics collides with a service", yaml: doc(append([]string{"mode: advanced", "runtime: {metrics_address: \"0.0.0.0:5432\"}"}, two...)...),
			errs: []wantIssue{{"runtime.metrics_address 0.0.0.0:5432 collides with the listen address 127.0.0.1:5432 of service db (line 11)", 2}}},
		{name: "metrics beside a udp service", yaml: doc("mode: advanced", "runtime: {metrics_address: \"127.0.0.1:53\"}", "services:", "  - name: dns", "    protocol: udp", "    port: 53", "    bind_address: 127.0.0.1", "    backends: [{host: a, port: 53}]")},
		{name: "metrics ignored in simple mode", yaml: doc(append([]string{"runtime: {metrics_address: \"127.0.0.1:5432\"}"}, two...)...),
			warns: []wantIssue{{"runtime is ignored in simple mode", 1}}},
		{name: "metrics on a route backend", yaml: doc("mode: advanced", "runtime: {metrics_address: \"127.0.0.1:9100\"}", "services:", "  - name: web", "    port: 1", "    bind_address: 127.0.0.1",
			"    routes: [{name: r, match: {alpn: [h2]}, backends: [{host: 127.0.0.1, port: 9100}]}]"),
			warns: []wantIssue{{"services[0].routes[0].backends[0] 127.0.0.1:9100 is bal's own metrics_address 127.0.0.1:9100", 7}}},
	})
}

// TestServiceAutoTune: each service's runtime is its own profile (by its
// backends over all pools), then the top-level runtime:, then its own,
// key by key; Snapshot.Runtime is the top-level block over the first
// service's profile. Simple mode: the profiles alone.
func TestServiceAutoTune(t *testing.T) {
	y := func(mode string) string {
		return doc(
			"mode: "+mode,
			"runtime:",
			"  health_check_interval_ms: 900", // every service
			"  max_concurrent_connections: 100",
			"  engine: std", // 5: process-wide
			"  udp_idle_timeout_ms: 7000",
			"services:",
			"  - name: small", // 1 backend: profile ≤ 2
			"    port: 1",
			"    bind_address: 127.0.0.1", // 10
			"    backends: [{host: a, port: 1}]",
			"    runtime: {health_check_interval_ms: 1100, tls_inspect_timeout_ms: 250}",
			"  - name: routed", // 1 + 2 + 3 backends: profile ≥ 6
			"    port: 2",
			"    bind_address: 127.0.0.1", // 15
			"    backends: [{host: a, port: 1}]",
			"    routes:",
			"      - {name: r1, match: {alpn: [h2]}, backends: [{host: a, port: 1}, {host: b, port: 1}]}",
			"      - {name: r2, match: {alpn: [h3]}, backends: [{host: a, port: 1}, {host: b, port: 1}, {host: c, port: 1}]}",
			"  - name: dns", // 20
			"    protocol: udp",
			"    port: 53",
			"    bind_address: 127.0.0.1",
			"    backends: [{host: a, port: 53}, {host: b, port: 53}, {host: c, port: 53}]",
			"    runtime: {max_udp_flows: 5}", // 25
		)
	}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }

	s := mustParse(t, y("advanced"))
	small, routed, dns := s.Services[0].Runtime, s.Services[1].Runtime, s.Services[2].Runtime

	want := Profile(1)
	want.HealthCheckInterval, want.MaxConcurrentConnections, want.Engine, want.TLSInspectTimeout = ms(1100), 100, EngineStd, ms(250)
	if small != want {
		t.Errorf("small = %+v\nwant    %+v", small, want)
	}
	want = Profile(6)
	want.HealthCheckInterval, want.MaxConcurrentConnections, want.Engine = ms(900), 100, EngineStd
	if routed != want || routed.MaxUDPFlows != 12000 {
		t.Errorf("routed = %+v\nwant     %+v", routed, want)
	}
	want = Profile(3)
	want.HealthCheckInterval, want.MaxConcurrentConnections, want.Engine, want.UDPIdleTimeout, want.MaxUDPFlows = ms(900), 100, EngineStd, ms(7000), 5
	if dns != want {
		t.Errorf("dns = %+v\nwant  %+v", dns, want)
	}
	want = Profile(1)
	want.HealthCheckInterval, want.MaxConcurrentConnections, want.Engine, want.UDPIdleTimeout = ms(900), 100, EngineStd, ms(7000)
	if s.Runtime != want {
		t.Errorf("Snapshot.Runtime = %+v\nwant               %+v", s.Runtime, want)
	}
	// max_udp_flows defaults to the profile's max_concurrent_connections,
	// not to an overridden one.
	if Profile(3).MaxUDPFlows != 8000 || Profile(1).MaxUDPFlows != 4000 {
		t.Error("max_udp_flows default")
	}

	s = mustParse(t, y("simple"))
	for i, n := range []int{1, 6, 3} {
		if got := s.Services[i].Runtime; got != Profile(n) {
			t.Errorf("simple mode, %s: %+v, want Profile(%d)", s.Services[i].Name, got, n)
		}
	}
	if s.Runtime != Profile(1) {
		t.Errorf("simple mode Snapshot.Runtime %+v", s.Runtime)
	}
	matchIssues(t, "warnings", s.Warnings, []wantIssue{{"runtime is ignored in simple mode", 2}, {"services[0].runtime is ignored", 12}, {"services[2].runtime is ignored", 25}})
}

func TestRuntimeKeyTable(t *testing.T) {
	process := map[string]bool{"engine": true, "metrics_address": true, "drain_timeout_ms": true, "access_log": true}
	for _, k := range RuntimeKeys() {
		sc, ok := RuntimeKeyScope(k)
		if !ok || (sc == ScopeProcess) != process[k] {
			t.Errorf("%s: scope %v", k, sc)
		}
		if _, ok := RuntimeKeyProtocol(k); !ok {
			t.Errorf("%s: no protocol", k)
		}
	}
	for key, want := range map[string]string{"tls_inspect_timeout_ms": "5000", "proxy_header_timeout_ms": "3000", "source_table_size": "65536", "udp_idle_timeout_ms": "30000", "max_udp_flows": "4000"} {
		if got, _ := Profile(2).Value(key); got != want {
			t.Errorf("default %s = %s, want %s", key, got, want)
		}
	}
	if _, ok := RuntimeKeyScope("nope"); ok {
		t.Error("unknown key has a scope")
	}
	if ScopeProcess.String() != "process" || ScopeService.String() != "service" {
		t.Error("Scope.String")
	}
}

func TestParseServicesGnetOffLinux(t *testing.T) {
	defer func(g string) { goos = g }(goos)
	goos = "darwin"
	y := doc(append([]string{"mode: advanced", "runtime: {engine: gnet}"}, two...)...)
	matchIssues(t, "errors", parseErr(t, y).Issues, []wantIssue{{"runtime.engine gnet needs Linux (this is darwin)", 2}})
}

// TestParseAliasAmplification: a small file whose aliases repeat services,
// routes and backends inside each other (n³ entries from a few KB) stops at
// MaxEntries with an error saying so, instead of working for minutes.
func TestParseAliasAmplification(t *testing.T) {
	refs := func(n int, a string) string {
		return "[" + strings.TrimSuffix(strings.Repeat("*"+a+", ", n), ", ") + "]"
	}
	bomb := func(n int) string {
		return "x:\n  - &b {host: a, port: 1}\n  - &bs " + refs(n, "b") + "\n  - &r {name: r, match: {alpn: [h2]}, backends: *bs}\n  - &rs " +
			refs(n, "r") + "\n  - &s {name: s, port: 1, routes: *rs}\nservices: " + refs(n, "s") + "\n"
	}
	y := bomb(300) // 27 million backend entries, 3.7 KB
	if len(y) > 4096 {
		t.Fatalf("the bomb is %d bytes", len(y))
	}
	ce := parseErr(t, y)
	found := false
	for _, is := range ce.Issues {
		found = found || strings.Contains(is.Message, "the file expands to more than 500000 keys and list entries")
	}
	if !found || len(ce.Issues) > MaxEntries {
		t.Errorf("%d issues, the MaxEntries one found: %v", len(ce.Issues), found)
	}
	// Below the bound the same shape is read in full.
	ce = parseErr(t, bomb(10))
	for _, is := range ce.Issues {
		if strings.Contains(is.Message, "expands to more than") {
			t.Errorf("bomb(10) hit the bound: %v", is)
		}
	}
}
