package health

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/pool"
)

// udpServer answers every datagram with reply(datagram) (no answer when
// it returns nil) until the test ends.
func udpServer(t *testing.T, reply func(p []byte) []byte) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if r := reply(buf[:n]); r != nil {
				_, _ = c.WriteToUDPAddrPort(r, from)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// closedUDP is a UDP port nothing listens on.
func closedUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	a := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return a
}

func TestUDPSendExpect(t *testing.T) {
	pong := func(p []byte) []byte {
		if string(p) == "ping" {
			return []byte("...pong...")
		}
		return []byte("what?")
	}
	good := udpServer(t, pong)
	wrong := udpServer(t, func([]byte) []byte { return []byte("nope") })
	silent := udpServer(t, func([]byte) []byte { return nil })
	late := udpServer(t, func([]byte) []byte { // "pong" only after the first 4 KiB
		return append(bytes.Repeat([]byte{'.'}, MaxExpectRead), "pong"...)
	})
	refused := closedUDP(t)
	check := UDPSendExpect{Send: []byte("ping"), Expect: []byte("pong")}
	tests := []struct {
		name  string
		probe UDPSendExpect
		addr  netip.AddrPort
		want  func(error) bool
	}{
		{"right reply", check, good, func(err error) bool { return err == nil }},
		{"wrong reply", check, wrong, func(err error) bool { return errors.Is(err, ErrUnexpectedReply) }},
		{"expect past the bytes read", check, late, func(err error) bool { return errors.Is(err, ErrUnexpectedReply) }},
		{"wrong send", UDPSendExpect{Send: []byte("hello"), Expect: []byte("pong")}, good, func(err error) bool { return errors.Is(err, ErrUnexpectedReply) }},
		{"silence", check, silent, func(err error) bool { return engine.Classify(err) == engine.FailTimeout }},
		{"port unreachable", check, refused, func(err error) bool { return engine.Classify(err) == engine.FailRefused }},
		{"port override", UDPSendExpect{Send: []byte("ping"), Expect: []byte("pong"), Port: int(good.Port())}, refused,
			func(err error) bool { return err == nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			within := 5 * time.Second
			if tt.name == "silence" {
				within = 300 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(t.Context(), within)
			defer cancel()
			err := tt.probe.Probe(ctx, tt.addr)
			if !tt.want(err) {
				t.Fatalf("Probe(%v) = %v", tt.addr, err)
			}
		})
	}
}

// TestCheckerProbesAndResolvesPassive: a round checks a backend with its
// Prober instead of a TCP connect, and resolves the hostnames of passively
// checked backends without feeding them a health outcome.
func TestCheckerProbesAndResolvesPassive(t *testing.T) {
	addr := udpServer(t, func(p []byte) []byte { return []byte("pong") })
	probed := backendFor(t, "127.0.0.1", int(addr.Port()))
	passive := backendFor(t, "app.test", 53)
	res := &resolver{addrs: []netip.Addr{netip.MustParseAddr("10.0.0.53")}}
	src := &source{r: Round{
		Backends: []*pool.Backend{probed},
		Probes:   []Prober{UDPSendExpect{Send: []byte("ping"), Expect: []byte("pong")}},
		Resolve:  []*pool.Backend{passive},
		Interval: time.Hour, Timeout: time.Second, Rise: 1, Fall: 1,
	}}
	c := New(src, Options{Resolver: res})
	c.RunRound(t.Context())
	if h := probed.Health(); !h.Known || !h.Up {
		t.Fatalf("UDP-probed backend (no TCP listener there): %+v", h)
	}
	if got := passive.Addrs(); len(got) != 1 || got[0] != netip.MustParseAddrPort("10.0.0.53:53") {
		t.Fatalf("passive backend addresses %v", got)
	}
	if passive.Health().Known || !passive.LastCheck().IsZero() {
		t.Fatalf("passive backend got a health outcome: %+v", passive.Health())
	}
	// Resolve (start-up) covers passive backends too.
	fresh := backendFor(t, "app.test", 54)
	c2 := New(&source{r: Round{Resolve: []*pool.Backend{fresh}, Timeout: time.Second}}, Options{Resolver: res})
	_ = c2.Resolve(t.Context())
	if len(fresh.Addrs()) != 1 {
		t.Fatalf("Resolve left a passive backend without addresses")
	}
	// The same probe against a closed port fails as refused.
	probed2 := backendFor(t, "127.0.0.1", int(closedUDP(t).Port()))
	err := c.CheckWith(t.Context(), probed2, time.Second, UDPSendExpect{Send: []byte("ping"), Expect: []byte("pong")})
	var se *os.SyscallError
	if !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &se) {
		t.Fatalf("CheckWith on a closed UDP port: %v", err)
	}
}
