package enginetest

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
)

// resetter is the engine under test as an engine.Resetter: every TCP
// engine implements it.
func resetter(t *testing.T, e engine.Engine) engine.Resetter {
	t.Helper()
	r, ok := e.(engine.Resetter)
	if !ok {
		t.Fatalf("%T does not implement engine.Resetter (Reset of a backend's connections)", e)
	}
	return r
}

// testResetByBackend: Reset resets exactly the relaying connections of the
// backends it matches (clients and backends see a reset, Closed says the
// reason), leaves the others relaying, and sees only connected backends.
func (s *suite) testResetByBackend(t *testing.T) {
	var backendErrs sync.Map // backend-side connection → how it ended
	handler := func(c *net.TCPConn) {
		_, err := io.Copy(c, c)
		backendErrs.Store(c, err)
	}
	a, b := NewBackend(t, handler), NewBackend(t, handler)
	h := s.start(t, NewPolicy(a.Addr, b.Addr), defaultTunables, "")
	const perBackend = 3
	var toA, toB []*net.TCPConn
	for i := range 2 * perBackend {
		c := h.dial()
		roundTrip(t, c, []byte{byte(i)})
		// The policy alternates: even connections went to a, odd to b.
		if i%2 == 0 {
			toA = append(toA, c)
		} else {
			toB = append(toB, c)
		}
	}
	var mu sync.Mutex
	var seen []engine.Target
	match := func(tg engine.Target) bool {
		mu.Lock()
		seen = append(seen, tg)
		mu.Unlock()
		return tg.Addr == a.Addr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n := resetter(t, h.eng).Reset(ctx, match, engine.CloseBackendDown); n != perBackend {
		t.Fatalf("Reset reset %d connections, want the %d of backend %v", n, perBackend, a.Addr)
	}
	mu.Lock()
	for _, tg := range seen {
		if tg.Addr != a.Addr && tg.Addr != b.Addr {
			t.Errorf("match saw target %+v, not a connected backend", tg)
		}
	}
	if len(seen) != 2*perBackend {
		t.Errorf("match was called %d times, want once per open connection (%d)", len(seen), 2*perBackend)
	}
	mu.Unlock()
	for _, c := range toA {
		if err := waitEnd(t, c, 5*time.Second); !isReset(err) {
			t.Errorf("client of the reset backend got %v, want a reset", err)
		}
	}
	for range perBackend {
		if cl := h.waitClosed(); cl.Info.Reason != engine.CloseBackendDown || cl.Info.Backend.Addr != a.Addr {
			t.Errorf("Closed %v from %v, want %q from %v", cl.Info.Reason, cl.Info.Backend.Addr, engine.CloseBackendDown, a.Addr)
		}
	}
	for i, c := range toB {
		roundTrip(t, c, []byte{byte(100 + i)})
	}
	// The backend side of every reset connection saw a reset too.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resets := 0
		backendErrs.Range(func(_, v any) bool {
			if err, _ := v.(error); isReset(err) {
				resets++
			}
			return true
		})
		if resets == perBackend {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backend-side connections saw a reset, want %d", resets, perBackend)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := resetter(t, h.eng).Reset(ctx, func(tg engine.Target) bool { return tg.Addr == a.Addr }, engine.CloseAdminReset); n != 0 {
		t.Fatalf("a second Reset found %d connections of %v", n, a.Addr)
	}
}

// testResetStopped: an engine that is draining or closed resets nothing and
// returns at once; a Reset whose context is already done resets nothing.
func (s *suite) testResetStopped(t *testing.T) {
	b := NewBackend(t, Echo)
	h := s.start(t, NewPolicy(b.Addr), defaultTunables, "")
	c := h.dial()
	roundTrip(t, c, []byte("x"))
	all := func(engine.Target) bool { return true }

	done, cancel := context.WithCancel(context.Background())
	cancel()
	if n := resetter(t, h.eng).Reset(done, all, engine.CloseAdminReset); n != 0 {
		t.Fatalf("Reset with a done context reset %d connections", n)
	}

	drained := make(chan struct{})
	dctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		_ = h.eng.Drain(dctx)
		close(drained)
	}()
	// Wait until the engine stopped accepting: it is draining.
	deadline := time.Now().Add(5 * time.Second)
	for {
		probe, err := net.DialTimeout("tcp", h.eng.Addr().String(), time.Second)
		if err != nil {
			break
		}
		probe.Close()
		if time.Now().After(deadline) {
			t.Fatal("engine still accepting after Drain")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancelReset := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelReset()
	began := time.Now()
	if n := resetter(t, h.eng).Reset(ctx, all, engine.CloseAdminReset); n != 0 {
		t.Fatalf("a draining engine reset %d connections", n)
	}
	if el := time.Since(began); el > 3*time.Second {
		t.Fatalf("Reset on a draining engine took %v", el)
	}
	stop()
	<-drained
	if n := resetter(t, h.eng).Reset(ctx, all, engine.CloseAdminReset); n != 0 {
		t.Fatalf("a drained engine reset %d connections", n)
	}
}
