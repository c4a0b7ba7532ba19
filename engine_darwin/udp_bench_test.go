package stdengine

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/enginetest"
)

// BenchmarkUDPRelay: one flow, one datagram of 64 bytes at a time through
// the engine to an echo backend and back (allocations and time per round
// trip).
func BenchmarkUDPRelay(b *testing.B) {
	be := enginetest.NewUDPBackend(b, enginetest.UDPEcho)
	e, err := NewUDP(engine.Options{Listen: netip.MustParseAddrPort("127.0.0.1:0"),
		Tunables: engine.NewTunableStore(engine.Tunables{ConnectTimeout: time.Second, UDPIdleTimeout: time.Minute})}, enginetest.NewPolicy(be.Addr))
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(e.Addr()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg, buf := make([]byte, 64), make([]byte, 128)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}
