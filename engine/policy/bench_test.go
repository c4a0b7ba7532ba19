package policy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/access"
	"github.com/bal-lb/bal/engine/config"
)

// BenchmarkConnection is the policy's whole share of one proxied
// connection: Admit, Pick, DialResult (success) and Closed.
func BenchmarkConnection(b *testing.B) {
	for _, m := range []config.Method{config.RoundRobin, config.LeastConnections, config.RandomTwo, config.SourceHash} {
		b.Run(string(m), func(b *testing.B) {
			p := New(service(m, nil, five()...), Options{})
			ci := &engine.ConnInfo{Client: netip.MustParseAddrPort("192.0.2.1:4000")}
			b.ReportAllocs()
			for b.Loop() {
				if !p.Admit(ci) {
					b.Fatal("rejected")
				}
				t, ok := p.Pick(ci, 0)
				if !ok {
					b.Fatal("no pick")
				}
				p.DialResult(ci, t, nil, time.Millisecond)
				p.Closed(ci, engine.CloseInfo{Backend: t, BytesIn: 1, BytesOut: 1, Reason: engine.CloseDone})
			}
		})
	}
}

// BenchmarkFailover is one connection whose first backend refuses.
func BenchmarkFailover(b *testing.B) {
	p := New(service(config.RoundRobin, func(r *config.Runtime) {
		r.BackendCooldown, r.FailoverBackoffInitial, r.FailoverBackoffMax = 0, 1, 1 // no cooldown to speak of
		r.HealthCheckFailThreshold = 1 << 30
		r.ProtectionTriggerThreshold = 1 << 20
	}, five()...), Options{})
	ci := &engine.ConnInfo{Client: netip.MustParseAddrPort("192.0.2.1:4000")}
	b.ReportAllocs()
	for b.Loop() {
		p.Admit(ci)
		t, _ := p.Pick(ci, 0)
		p.DialResult(ci, t, errRefused, 0)
		t, _ = p.Pick(ci, 1)
		p.DialResult(ci, t, nil, 0)
		p.Closed(ci, engine.CloseInfo{Backend: t, Reason: engine.CloseDone})
	}
}

// BenchmarkConnectionRouted is BenchmarkConnection for a service that
// inspects: Admit, Route (eight routes; the hello matches the wildcard
// route, the second, or none and goes to the default pool), Pick,
// DialResult and Closed.
func BenchmarkConnectionRouted(b *testing.B) {
	for _, h := range []struct {
		name  string
		hello engine.Hello
	}{
		{"exact", engine.Hello{Result: engine.InspectSNI, SNI: "api.example.com", ALPN: []string{"h2", "http/1.1"}}},
		{"wildcard", engine.Hello{Result: engine.InspectSNI, SNI: "www.example.net", ALPN: []string{"h2", "http/1.1"}}},
		{"default", engine.Hello{Result: engine.InspectSNI, SNI: "nothing.test", ALPN: []string{"h2", "http/1.1"}}},
	} {
		b.Run(h.name, func(b *testing.B) {
			p := New(routed(routingTable(), five()...), Options{})
			ci := &engine.ConnInfo{Client: netip.MustParseAddrPort("192.0.2.1:4000")}
			b.ReportAllocs()
			for b.Loop() {
				if !p.Admit(ci) {
					b.Fatal("rejected")
				}
				ci.Hello = h.hello
				if !p.Route(ci) {
					b.Fatal("no route")
				}
				t, ok := p.Pick(ci, 0)
				if !ok {
					b.Fatal("no pick")
				}
				p.DialResult(ci, t, nil, time.Millisecond)
				p.Closed(ci, engine.CloseInfo{Backend: t, BytesIn: 1, BytesOut: 1, Reason: engine.CloseDone})
			}
		})
	}
}

// BenchmarkConnectionGuarded is BenchmarkConnection (round_robin) with
// access control: a 1,000-prefix allow list, a per-source limit and rate
// (the clients cycle over 256 sources), or source routes.
func BenchmarkConnectionGuarded(b *testing.B) {
	allow := make([]netip.Prefix, 0, 1000)
	for i := range 999 {
		allow = append(allow, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
	}
	allow = append(allow, netip.MustParsePrefix("192.0.2.0/24"))
	r, _ := access.ParseRate("1000000/s")
	for _, v := range []struct {
		name string
		edit func(s *config.Service)
	}{
		{"allow1000", func(s *config.Service) { s.Access.Allow = allow }},
		{"per_source", func(s *config.Service) { s.Access.MaxConnectionsPerSource = 100; s.Access.ConnectionRatePerSource = r }},
		{"allow1000+per_source", func(s *config.Service) {
			s.Access.Allow = allow
			s.Access.MaxConnectionsPerSource = 100
			s.Access.ConnectionRatePerSource = r
		}},
		{"source_routes", func(s *config.Service) {
			s.Routes = []config.Route{
				rt("lan", config.Match{Source: prefixes("10.0.0.0/8")}, A),
				rt("v6", config.Match{Source: prefixes("2001:db8::/32")}, B),
			}
		}},
	} {
		b.Run(v.name, func(b *testing.B) {
			s := service(config.RoundRobin, nil, five()...)
			v.edit(s)
			p := New(s, Options{})
			var clients [256]engine.ConnInfo
			for i := range clients {
				clients[i].Client = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 4000)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				ci := &clients[i&255]
				i++
				if !p.Admit(ci) {
					b.Fatal("rejected")
				}
				t, ok := p.Pick(ci, 0)
				if !ok {
					b.Fatal("no pick")
				}
				p.DialResult(ci, t, nil, time.Millisecond)
				p.Closed(ci, engine.CloseInfo{Backend: t, BytesIn: 1, BytesOut: 1, Reason: engine.CloseDone})
			}
		})
	}
}
