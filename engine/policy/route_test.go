package policy

import (
	"net/netip"
	"testing"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/pool"
)

// rt builds a route with one backend per address ("10.0.1.1:443").
func rt(name string, m config.Match, addrs ...string) config.Route {
	r := config.Route{Name: name, Match: m, Method: config.RoundRobin, HealthCheck: config.HealthCheck{Type: config.CheckTCP}}
	for _, a := range addrs {
		ap := netip.MustParseAddrPort(a)
		r.Backends = append(r.Backends, be(ap.Addr().String(), int(ap.Port()), 1))
	}
	return r
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// routed is a service with routes; def are the default pool's backends.
func routed(routes []config.Route, def ...config.Backend) *config.Service {
	s := service(config.RoundRobin, nil, def...)
	s.Routes = routes
	s.HealthCheck = config.HealthCheck{Type: config.CheckTCP}
	return s
}

// poolOf is the pool of the backend a connection connected to.
func poolOf(c *conn) string {
	if !c.ok {
		return ""
	}
	return c.connected.Ref.(*pool.Backend).Pool()
}

func routingTable() []config.Route {
	return []config.Route{
		rt("exact", config.Match{SNI: []string{"api.example.com"}}, "10.0.1.1:443"),
		rt("wild", config.Match{SNI: []string{"*.example.net"}}, "10.0.2.1:443"),
		rt("both", config.Match{SNI: []string{"both.example.org"}, ALPN: []string{"acme-tls/1"}}, "10.0.4.1:443"),
		rt("h2", config.Match{ALPN: []string{"h2", "h3"}}, "10.0.3.1:443"),
		rt("src", config.Match{Source: prefixes("10.0.0.0/8", "2001:db8::/32")}, "10.0.5.1:443"),
		rt("first", config.Match{SNI: []string{"first.example.com"}}, "10.0.6.1:443"),
		rt("second", config.Match{SNI: []string{"first.example.com", "second.example.com"}}, "10.0.7.1:443"),
		rt("srcsni", config.Match{SNI: []string{"internal.example.com"}, Source: prefixes("192.168.0.0/16")}, "10.0.8.1:443"),
	}
}

func sni(name string, alpn ...string) engine.Hello {
	return engine.Hello{Result: engine.InspectSNI, SNI: name, ALPN: alpn}
}

// TestRouting: first matching route wins; sni exact and wildcard, case and
// a trailing dot ignored; alpn any-of; source v4, v6 and IPv4-mapped;
// keys ANDed; hellos without a name route only to routes without sni (and
// without alpn when no protocol was offered); unmatched go to the default
// pool.
func TestRouting(t *testing.T) {
	tests := []struct {
		name   string
		client string
		hello  engine.Hello
		want   string // pool name
	}{
		{"exact name", "192.0.2.1:1", sni("api.example.com"), "exact"},
		{"exact name in upper case", "192.0.2.1:1", sni("API.Example.COM"), "exact"},
		{"exact name with a trailing dot", "192.0.2.1:1", sni("api.example.com."), "exact"},
		{"another name of the domain is not exact", "192.0.2.1:1", sni("www.example.com"), "default"},
		{"wildcard, one label", "192.0.2.1:1", sni("a.example.net"), "wild"},
		{"wildcard, two labels, upper case, trailing dot", "192.0.2.1:1", sni("A.B.Example.NET."), "wild"},
		{"wildcard does not match the bare suffix", "192.0.2.1:1", sni("example.net"), "default"},
		{"wildcard does not match a longer label", "192.0.2.1:1", sni("badexample.net"), "default"},
		{"alpn: any offered protocol of the list", "192.0.2.1:1", sni("x.test", "http/1.1", "h3"), "h2"},
		{"alpn: none of the list offered", "192.0.2.1:1", sni("x.test", "http/1.1"), "default"},
		{"keys ANDed: both match", "192.0.2.1:1", sni("both.example.org", "acme-tls/1"), "both"},
		{"keys ANDed: sni without the alpn falls through to the next match", "192.0.2.1:1", sni("both.example.org", "h2"), "h2"},
		{"keys ANDed: sni without the alpn, nothing else", "192.0.2.1:1", sni("both.example.org"), "default"},
		{"source v4", "10.1.2.3:1", sni("nothing.test"), "src"},
		{"source IPv4-mapped", "[::ffff:10.1.2.3]:1", sni("nothing.test"), "src"},
		{"source v6", "[2001:db8::5]:1", sni("nothing.test"), "src"},
		{"source v6 outside", "[2001:db9::5]:1", sni("nothing.test"), "default"},
		{"an earlier route wins over source", "10.1.2.3:1", sni("api.example.com"), "exact"},
		{"first match wins", "192.0.2.1:1", sni("first.example.com"), "first"},
		{"a later route for its other name", "192.0.2.1:1", sni("second.example.com"), "second"},
		{"sni and source ANDed: both", "192.168.1.1:1", sni("internal.example.com"), "srcsni"},
		{"sni and source ANDed: wrong source", "192.0.2.1:1", sni("internal.example.com"), "default"},
		{"no_sni with alpn matches an alpn route", "192.0.2.1:1", engine.Hello{Result: engine.InspectNoSNI, ALPN: []string{"h2"}}, "h2"},
		{"no_sni without alpn: default", "192.0.2.1:1", engine.Hello{Result: engine.InspectNoSNI}, "default"},
		{"no_sni from a source route's client", "10.9.9.9:1", engine.Hello{Result: engine.InspectNoSNI}, "src"},
		{"not_tls: default", "192.0.2.1:1", engine.Hello{Result: engine.InspectNotTLS}, "default"},
		{"not_tls ignores a stray name", "192.0.2.1:1", engine.Hello{Result: engine.InspectNotTLS, SNI: "api.example.com", ALPN: []string{"h2"}}, "default"},
		{"not_tls from a source route's client", "10.9.9.9:1", engine.Hello{Result: engine.InspectNotTLS}, "src"},
		{"malformed", "192.0.2.1:1", engine.Hello{Result: engine.InspectMalformed}, "default"},
		{"timeout from a source route's client", "[::ffff:10.0.0.1]:1", engine.Hello{Result: engine.InspectTimeout}, "src"},
		{"too_large", "192.0.2.1:1", engine.Hello{Result: engine.InspectTooLarge}, "default"},
	}
	f := newFixture(t, routed(routingTable(), be("10.0.9.1", 443, 1)), Options{})
	want := map[string]uint64{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := connectHello(f.p, tt.client, tt.hello, ok)
			defer c.close(f.p)
			if got := poolOf(c); got != tt.want {
				t.Fatalf("routed to %q, want %q (tried %v)", got, tt.want, c.tried)
			}
		})
		want[tt.want]++
	}
	st := f.p.Status()
	for _, ps := range st.Pools {
		if ps.Matched != want[ps.Name] {
			t.Errorf("pool %s matched %d, want %d", ps.Name, ps.Matched, want[ps.Name])
		}
	}
	if st.Total != uint64(len(tests)) || st.Active != 0 || st.Rejected != 0 {
		t.Fatalf("total %d active %d rejected %d", st.Total, st.Active, st.Rejected)
	}
	if names := poolNames(st); len(names) != 9 || names[0] != "exact" || names[8] != "default" {
		t.Fatalf("pools %v, want the routes in order, then default", names)
	}
	if p := st.Pool("wild"); !p.Route || p.Match.SNI[0] != "*.example.net" || p.Method != config.RoundRobin || len(p.Backends) != 1 || p.Backends[0].Pool != "wild" {
		t.Fatalf("wild pool status %+v", p)
	}
	if d := st.DefaultBackends(); len(d) != 1 || d[0].Address != "10.0.9.1:443" || d[0].Pool != "default" {
		t.Fatalf("default backends %+v", d)
	}
}

func poolNames(st Status) []string {
	var out []string
	for _, p := range st.Pools {
		out = append(out, p.Name)
	}
	return out
}

// TestNoRoute: without a default pool, an unmatched connection is refused
// by Route (no_route), counted as a rejection and never in the total; the
// matched ones are served.
func TestNoRoute(t *testing.T) {
	f := newFixture(t, routed(routingTable()), Options{})
	served := connectHello(f.p, "192.0.2.1:1", sni("api.example.com"), ok)
	for _, h := range []engine.Hello{sni("unknown.test"), {Result: engine.InspectNotTLS}, {Result: engine.InspectTimeout}} {
		c := connectHello(f.p, "192.0.2.1:2", h, ok)
		if !c.admitted || !c.noRoute || len(c.tried) != 0 {
			t.Fatalf("%+v: admitted %v no route %v tried %v", h, c.admitted, c.noRoute, c.tried)
		}
		c.close(f.p)
	}
	st := f.p.Status()
	if st.Total != 1 || st.RejectedBy[engine.RejectNoRoute] != 3 || st.Rejected != 3 || st.Active != 1 || st.Pool("default") != nil || st.DefaultBackends() != nil {
		t.Fatalf("total %d no_route %d rejected %d active %d", st.Total, st.RejectedBy[engine.RejectNoRoute], st.Rejected, st.Active)
	}
	served.close(f.p)
	if lines := f.log.lines("rejecting connections"); len(lines) != 1 || lines[0]["reason"] != "no_route" || lines[0]["sample_client"] != "192.0.2.1:2" || lines[0]["service"] != "default" {
		t.Fatalf("reject log %v", lines)
	}
}

// TestSourceRoutesWithoutInspection: a service whose routes only match
// sources does not inspect; Admit routes it, and without a default pool
// refuses the unmatched (no_route) without keeping their per-source ticket.
func TestSourceRoutesWithoutInspection(t *testing.T) {
	s := routed([]config.Route{
		rt("lan", config.Match{Source: prefixes("10.0.0.0/8")}, "10.0.5.1:443"),
		rt("v6", config.Match{Source: prefixes("2001:db8::/32")}, "10.0.6.1:443"),
	})
	s.Access.MaxConnectionsPerSource = 1
	if s.Inspects() {
		t.Fatal("a source-only service inspects")
	}
	f := newFixture(t, s, Options{})
	for _, tt := range []struct{ client, want string }{
		{"10.1.1.1:1", "lan"}, {"[::ffff:10.1.1.2]:1", "lan"}, {"[2001:db8::1]:1", "v6"},
	} {
		c := connect(f.p, tt.client, ok)
		if got := poolOf(c); got != tt.want {
			t.Fatalf("%s routed to %q, want %q", tt.client, got, tt.want)
		}
		c.close(f.p)
	}
	for range 3 { // the limit of 1 is never reached: a refused client holds nothing
		if c := connect(f.p, "192.0.2.1:1", ok); c.admitted {
			t.Fatal("unmatched client admitted")
		}
	}
	st := f.p.Status()
	if st.Total != 3 || st.RejectedBy[engine.RejectNoRoute] != 3 || st.RejectedBy[engine.RejectSourceLimit] != 0 || st.Active != 0 || st.Sources.Active != 0 {
		t.Fatalf("total %d by reason %v active %d sources %+v", st.Total, st.RejectedBy, st.Active, st.Sources)
	}
	if st.Pool("lan").Matched != 2 || st.Pool("v6").Matched != 1 {
		t.Fatalf("matched %+v", st.Pools)
	}
	if st.Inspected[engine.InspectNotTLS] != 0 {
		t.Fatalf("inspection counted for a service that does not inspect: %v", st.Inspected)
	}
}

// TestInspectResultsCounted: every result Route sees is counted, and a
// connection that closed during inspection (no Route) is counted by Closed,
// never in the total.
func TestInspectResultsCounted(t *testing.T) {
	f := newFixture(t, routed(routingTable(), be("10.0.9.1", 443, 1)), Options{})
	for _, r := range engine.InspectResults() {
		if r == engine.InspectClosed {
			continue
		}
		for range int(r) { // result r counted r times
			h := engine.Hello{Result: r}
			if r == engine.InspectSNI {
				h.SNI = "api.example.com"
			}
			connectHello(f.p, "192.0.2.1:1", h, ok).close(f.p)
		}
	}
	for range 2 {
		ci := &engine.ConnInfo{Client: netip.MustParseAddrPort("192.0.2.1:9")}
		if !f.p.Admit(ci) {
			t.Fatal("refused")
		}
		ci.Hello.Result = engine.InspectClosed
		f.p.Closed(ci, engine.CloseInfo{Reason: engine.CloseClientGone})
	}
	st := f.p.Status()
	var routedN uint64
	for _, r := range engine.InspectResults() {
		want := uint64(r)
		if r == engine.InspectClosed {
			want = 2
		} else {
			routedN += want
		}
		if st.Inspected[r] != want {
			t.Errorf("Inspected[%s] = %d, want %d", r, st.Inspected[r], want)
		}
	}
	if st.Total != routedN || st.Active != 0 || st.Rejected != 0 {
		t.Fatalf("total %d (want %d) active %d rejected %d", st.Total, routedN, st.Active, st.Rejected)
	}
	if len(st.Inspected) != len(engine.InspectResults()) {
		t.Fatalf("inspected %v lacks a result", st.Inspected)
	}
}

// TestDefaultMatchedWithoutRoutes: a service without routes counts every
// connection in its default pool's matches, at no cost on the data path.
func TestDefaultMatchedWithoutRoutes(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, nil, five()[:2]...), Options{})
	for range 5 {
		connect(f.p, "192.0.2.1:1", ok).close(f.p)
	}
	if p := f.p.Status().Pool("default"); p == nil || p.Matched != 5 || p.Route {
		t.Fatalf("default pool %+v", p)
	}
}

// TestRouteWithoutAdmit: Pick on a connection of an inspecting service
// that Route never saw routes it with an empty hello rather than crash.
func TestRouteWithoutAdmit(t *testing.T) {
	f := newFixture(t, routed(routingTable(), be("10.0.9.1", 443, 1)), Options{})
	ci := &engine.ConnInfo{Client: netip.MustParseAddrPort("10.0.0.1:1")}
	tg, ok := f.p.Pick(ci, 0)
	if !ok || tg.Name != "10.0.5.1:443" {
		t.Fatalf("pick %v %v", tg, ok)
	}
	if !f.p.Route(ci) {
		t.Fatal("Route after routing")
	}
}
