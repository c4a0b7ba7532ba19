package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/enginetest"
	stdengine "github.com/bal-lb/bal/engine_darwin"
)

// udpEngines is stdEngines with the portable UDP engine.
func udpEngines(name string) (Engine, error) {
	e, err := stdEngines(name)
	e.NewUDP = stdengine.NewUDP
	return e, err
}

func udpSvc(name string, port int, backends ...netip.AddrPort) config.Service {
	svc := svcCfg(name, port, backends...)
	svc.Protocol, svc.HealthCheck = config.UDP, config.HealthCheck{}
	return svc
}

func startUDPSnap(t *testing.T, snap *config.Snapshot) *Server {
	t.Helper()
	s := New(snap, Options{Engines: udpEngines, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// whoAsks answers every datagram with the address it came from: the
// flow's socket, which tells whether two datagrams shared a flow.
func whoAsks(b *enginetest.UDPBackend, from netip.AddrPort, _ []byte) {
	b.Reply(from, []byte(from.String()))
}

func udpAsk(t *testing.T, c *net.UDPConn) string {
	t.Helper()
	got, err := enginetest.Exchange(c, []byte("?"), 5*time.Second)
	if err != nil {
		t.Fatalf("no answer through the UDP service: %v", err)
	}
	return string(got)
}

func TestUDPServices(t *testing.T) {
	tests := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"SharesPortWithTCP", testUDPSharesPort},
		{"ReloadKeepsFlows", testUDPReloadKeepsFlows},
		{"PortInUse", testUDPPortInUse},
		{"RemovedServiceDrains", testUDPRemovedDrains},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.fn)
	}
}

// testUDPSharesPort: a TCP and a UDP service on the same port number each
// serve their own protocol; status counts the UDP one's datagrams.
func testUDPSharesPort(t *testing.T) {
	tcpBackend := nameBackend(t, "t")
	udpBackend := enginetest.NewUDPBackend(t, enginetest.UDPEcho)
	port := freePort(t)
	s := startUDPSnap(t, snapOf(time.Second, svcCfg("web", port, tcpBackend.Addr), udpSvc("dns", port, udpBackend.Addr)))
	if got, err := ask(t, addrOf(port)); err != nil || got != "t" {
		t.Fatalf("TCP service answered %q, %v", got, err)
	}
	c := enginetest.DialUDP(t, netip.MustParseAddrPort(addrOf(port)))
	for range 3 {
		if got, err := enginetest.Exchange(c, []byte("ping"), 5*time.Second); err != nil || string(got) != "ping" {
			t.Fatalf("UDP service: %q, %v", got, err)
		}
	}
	var ss ServiceStatus
	deadline := time.Now().Add(5 * time.Second)
	for {
		ss = serviceStatus(t, s.Status(), "dns")
		if ss.Stats.DatagramsOut == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ss.Protocol != config.UDP || ss.Stats.Accepted != 1 || ss.Stats.DatagramsIn != 3 || ss.Stats.DatagramsOut != 3 || ss.Stats.BytesIn != 12 {
		t.Fatalf("dns status %+v", ss.Stats)
	}
	if ss.Policy.Total != 1 || ss.Policy.Active != 1 {
		t.Fatalf("dns policy: %d flows, %d active; want 1, 1", ss.Policy.Total, ss.Policy.Active)
	}
}

// testUDPReloadKeepsFlows: a reload that adds a service and changes
// another keeps the UDP service's flows: the same client keeps its flow.
func testUDPReloadKeepsFlows(t *testing.T) {
	b := enginetest.NewUDPBackend(t, whoAsks)
	tb := nameBackend(t, "t")
	p1, p2 := freePort(t), freePort(t)
	s := startUDPSnap(t, snapOf(time.Second, udpSvc("dns", p1, b.Addr), svcCfg("web", p2, tb.Addr)))
	c := enginetest.DialUDP(t, netip.MustParseAddrPort(addrOf(p1)))
	before := udpAsk(t, c)
	dns := udpSvc("dns", p1, b.Addr)
	dns.Runtime.UDPIdleTimeout = 20 * time.Second // a tunable change: new flows only
	if _, err := s.Reload(context.Background(), snapOf(time.Second, dns, svcCfg("web", p2, tb.Addr, tb.Addr), svcCfg("more", freePort(t), tb.Addr))); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if after := udpAsk(t, c); after != before {
		t.Fatalf("after the reload the client's datagrams come from %s, before from %s: its flow was not kept", after, before)
	}
	if ss := serviceStatus(t, s.Status(), "dns"); ss.Stats.Accepted != 1 || ss.Draining != 0 {
		t.Fatalf("dns after the reload: %d flows, %d draining listeners", ss.Stats.Accepted, ss.Draining)
	}
}

func testUDPPortInUse(t *testing.T) {
	held, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := held.LocalAddr().(*net.UDPAddr).Port
	tcpPort := freePort(t)
	s := New(snapOf(time.Second, svcCfg("web", tcpPort, enginetest.DeadAddr(t)), udpSvc("dns", port, enginetest.DeadUDP(t))), Options{Engines: udpEngines})
	if err := s.Start(context.Background()); !errors.Is(err, engine.ErrAddrInUse) {
		t.Fatalf("Start with a UDP port another socket holds: %v", err)
	}
	if !bindable(t, tcpPort) {
		t.Error("the TCP service's port is bound after the failed Start")
	}
	_ = s.Close()
}

// testUDPRemovedDrains: a removed UDP service takes no new flow, keeps its
// open ones until drain_timeout_ms, then frees the port.
func testUDPRemovedDrains(t *testing.T) {
	b := enginetest.NewUDPBackend(t, enginetest.UDPEcho)
	tb := nameBackend(t, "t")
	p1, p2 := freePort(t), freePort(t)
	s := startUDPSnap(t, snapOf(500*time.Millisecond, udpSvc("dns", p1, b.Addr), svcCfg("web", p2, tb.Addr)))
	c := enginetest.DialUDP(t, netip.MustParseAddrPort(addrOf(p1)))
	if got := udpAsk(t, c); got != "?" {
		t.Fatalf("echo %q", got)
	}
	if _, err := s.Reload(context.Background(), snapOf(500*time.Millisecond, svcCfg("web", p2, tb.Addr))); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := udpAsk(t, c); got != "?" {
		t.Fatalf("the open flow was cut by the removal: %q", got)
	}
	late := enginetest.DialUDP(t, netip.MustParseAddrPort(addrOf(p1)))
	if got, err := enginetest.Exchange(late, []byte("?"), 300*time.Millisecond); err == nil {
		t.Fatalf("a new flow was served by a removed service: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		u, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addrOf(p1))))
		if err == nil {
			u.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the removed UDP service's port is still held 5 s after its 500 ms drain: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
