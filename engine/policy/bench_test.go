package policy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
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
