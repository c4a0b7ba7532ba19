package stdengine

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/enginetest"
)

// pipeFDs counts this process's pipe descriptors.
func pipeFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

// TestSpliceHoldsNoPipeWhileWaiting: connections that moved a few bytes
// and went quiet hold no splice pipe (the runtime's splice would wait for
// the rest of its chunk with the pipe held: two per connection).
func TestSpliceHoldsNoPipeWhileWaiting(t *testing.T) {
	const conns = 40
	// A read/write echo: io.Copy here would splice and hold pipes itself.
	b := enginetest.NewBackend(t, func(c *net.TCPConn) {
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	e, err := newEngine(engine.Options{
		Listen:   netip.MustParseAddrPort("127.0.0.1:0"),
		Tunables: engine.NewTunableStore(engine.Tunables{ConnectTimeout: time.Second, IdleTimeout: time.Minute}),
	}, enginetest.NewPolicy(b.Addr), spliceCopier{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	before := pipeFDs(t)
	var cs []net.Conn
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for range conns {
		c, err := net.Dial("tcp", e.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
	}
	// Pooled pipes are not held: two collections empty the runtime's pool
	// and its cleanups close them (under -race, Put also drops pipes at
	// random, left for the collector). A direction waiting inside splice
	// keeps its pipe through all that: 2 × conns pipes, 4 × conns fds.
	for range 3 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	if held := pipeFDs(t) - before; held >= conns {
		t.Fatalf("%d pipe descriptors held by %d quiet connections", held, conns)
	}
}
