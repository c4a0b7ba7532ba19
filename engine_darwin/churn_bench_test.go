package stdengine

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/enginetest"
)

// BenchmarkChurn opens one proxied connection per op, moves one byte each
// way and closes it: the per-connection cost of the accept → connect →
// relay → close path. allocs/op counts the client and the echo backend in
// this process too, so compare it between versions of the engine, not
// against zero.
func BenchmarkChurn(b *testing.B) {
	be := enginetest.NewBackend(b, enginetest.Echo)
	e, err := newEngine(engine.Options{
		Listen:   netip.MustParseAddrPort("127.0.0.1:0"),
		Tunables: engine.NewTunableStore(engine.Tunables{ConnectTimeout: time.Second, IdleTimeout: time.Minute}),
	}, enginetest.NewPolicy(be.Addr), defaultCopier)
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	addr := e.Addr().String()
	one := []byte{'x'}
	back := make([]byte, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
