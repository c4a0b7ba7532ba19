package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/enginetest"
)

// svcCfg is one service of a hand-built snapshot on 127.0.0.1:port.
func svcCfg(name string, port int, backends ...netip.AddrPort) config.Service {
	rt := config.Profile(len(backends))
	rt.Engine = engineName
	rt.HealthCheckInterval = 200 * time.Millisecond
	svc := config.Service{
		Name: name, Protocol: config.TCP, BindAddress: "127.0.0.1", Port: port, Method: config.RoundRobin,
		Runtime: rt, HealthCheck: config.HealthCheck{Type: config.CheckTCP},
		Access: config.Access{AcceptProxyProtocol: config.ProxyOff}, OnBackendDown: config.OnDownKeep,
	}
	for _, a := range backends {
		svc.Backends = append(svc.Backends, config.Backend{Host: a.Addr().String(), Port: int(a.Port()), Weight: 1})
	}
	return svc
}

// snapOf is a snapshot of services, written in the services: form; its
// process-wide runtime is the first service's with drain.
func snapOf(drain time.Duration, svcs ...config.Service) *config.Snapshot {
	rt := svcs[0].Runtime
	rt.DrainTimeout = drain
	for i := range svcs {
		svcs[i].Runtime.DrainTimeout = drain
	}
	return &config.Snapshot{Mode: config.ModeAdvanced, LogLevel: slog.LevelDebug, Runtime: rt, Services: svcs}
}

func startSnap(t *testing.T, snap *config.Snapshot) *Server {
	t.Helper()
	s := New(snap, Options{Engines: stdEngines, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func addrOf(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// heldPort is a port another socket listens on.
func heldPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// bindable reports whether nothing listens on 127.0.0.1:port.
func bindable(t *testing.T, port int) bool {
	t.Helper()
	ln, err := net.Listen("tcp", addrOf(port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// refuses reports whether a connect to port fails.
func refuses(port int) bool {
	c, err := net.DialTimeout("tcp", addrOf(port), time.Second)
	if err == nil {
		c.Close()
	}
	return err != nil
}

func serviceStatus(t *testing.T, st Status, name string) ServiceStatus {
	t.Helper()
	for _, ss := range st.Services {
		if ss.Name == name {
			return ss
		}
	}
	t.Fatalf("no service %q in status %+v", name, st.Services)
	return ServiceStatus{}
}

func names(st Status) []string {
	var out []string
	for _, ss := range st.Services {
		out = append(out, ss.Name)
	}
	return out
}

func TestServices(t *testing.T) {
	tests := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"TwoServicesStartAndStatus", testTwoServices},
		{"BindFailureLeavesNothing", testBindFailureLeavesNothing},
		{"UDPRefused", testUDPRefused},
		{"ReloadAddRemoveRenameMove", testReloadServices},
		{"RemovedServiceDrains", testRemovedServiceDrains},
		{"ReloadBindFailureRejectsWhole", testReloadBindFailureRejectsWhole},
		{"ReloadOntoOwnAddressExplained", testReloadOntoOwnAddress},
		{"ReloadEngineChange", testReloadEngineChange},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.fn)
	}
}

func testTwoServices(t *testing.T) {
	a, b := nameBackend(t, "a"), nameBackend(t, "b")
	pa, pb := freePort(t), freePort(t)
	s := startSnap(t, snapOf(time.Second, svcCfg("web", pa, a.Addr), svcCfg("db", pb, b.Addr)))
	for range 3 {
		if got, err := ask(t, addrOf(pa)); err != nil || got != "a" {
			t.Fatalf("web: %q, %v", got, err)
		}
	}
	if got, err := ask(t, addrOf(pb)); err != nil || got != "b" {
		t.Fatalf("db: %q, %v", got, err)
	}
	st := s.Status()
	if got := names(st); strings.Join(got, ",") != "web,db" {
		t.Fatalf("services %v, want web,db in config order", got)
	}
	web, db := st.Services[0], st.Services[1]
	for _, tt := range []struct {
		ss       ServiceStatus
		port     int
		accepted uint64
	}{{web, pa, 3}, {db, pb, 1}} {
		if tt.ss.Listen != netip.MustParseAddrPort(addrOf(tt.port)) || tt.ss.Engine != engineName || tt.ss.Protocol != config.TCP ||
			tt.ss.Stats.Accepted != tt.accepted || tt.ss.Policy.Total != tt.accepted || tt.ss.Policy.Service != tt.ss.Name {
			t.Errorf("service %s: %+v", tt.ss.Name, tt.ss)
		}
	}
	// The top-level fields are the first service's.
	if st.Listen != web.Listen || st.Accepted != 3 || st.Policy.Total != 3 || st.Port != pa || st.Engine != engineName {
		t.Errorf("top level %+v, want the first service's", st)
	}
	if s.Addr() != web.Listen {
		t.Errorf("Addr %v, want the first service's %v", s.Addr(), web.Listen)
	}
}

// testBindFailureLeavesNothing: three services, the second's port is held
// by another socket: Start fails naming it, and nothing stays bound.
func testBindFailureLeavesNothing(t *testing.T) {
	dead := enginetest.DeadAddr(t)
	p1, p2, p3 := freePort(t), heldPort(t), freePort(t)
	s := New(snapOf(time.Second, svcCfg("one", p1, dead), svcCfg("two", p2, dead), svcCfg("three", p3, dead)), Options{Engines: stdEngines})
	err := s.Start(context.Background())
	if !errors.Is(err, engine.ErrAddrInUse) || !strings.Contains(err.Error(), "service two") || !strings.Contains(err.Error(), addrOf(p2)) {
		t.Fatalf("Start = %v, want ErrAddrInUse naming service two and %s", err, addrOf(p2))
	}
	for _, p := range []int{p1, p3} {
		if !bindable(t, p) {
			t.Errorf("port %d is still bound after the failed Start", p)
		}
	}
	if st := s.Status(); st.Listen.IsValid() || st.Services[0].Listen.IsValid() {
		t.Errorf("status after the failed Start: %+v", st)
	}
	_ = s.Close()
}

func testUDPRefused(t *testing.T) {
	dead := enginetest.DeadAddr(t)
	p1, p2 := freePort(t), freePort(t)
	udp := svcCfg("dns", p2, dead)
	udp.Protocol = config.UDP
	s := New(snapOf(time.Second, svcCfg("web", p1, dead), udp), Options{Engines: stdEngines})
	if err := s.Start(context.Background()); !errors.Is(err, ErrUDPUnsupported) || !strings.Contains(err.Error(), "service dns") {
		t.Fatalf("Start with a UDP service = %v, want ErrUDPUnsupported naming it", err)
	}
	if !bindable(t, p1) {
		t.Error("the TCP service's port is bound after the refused Start")
	}
	_ = s.Close()

	// A reload that adds one is rejected the same way.
	s = startSnap(t, snapOf(time.Second, svcCfg("web", p1, dead)))
	_, err := s.Reload(context.Background(), snapOf(time.Second, svcCfg("web", p1, dead), udp))
	if !errors.Is(err, ErrReloadRejected) || !errors.Is(err, ErrUDPUnsupported) || !strings.Contains(err.Error(), "service dns") {
		t.Fatalf("reload adding a UDP service = %v", err)
	}
	if got := names(s.Status()); len(got) != 1 {
		t.Fatalf("services after the rejected reload: %v", got)
	}
}

// transfer streams n bytes through an echo service in pieces, a step
// between pieces, and checks every byte that comes back.
type transfer struct {
	c    net.Conn
	sum  chan error
	src  *enginetest.Stream
	n    int64
	seed uint64
}

func startTransfer(t *testing.T, addr string, n int64, seed uint64) *transfer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tr := &transfer{c: c, sum: make(chan error, 1), src: enginetest.NewStream(seed, n), n: n, seed: seed}
	go func() {
		got, m, err := enginetest.ReadAllSum(io.LimitReader(c, n))
		switch {
		case err != nil:
			tr.sum <- err
		case m != n || got != enginetest.StreamSum(seed, n):
			tr.sum <- fmt.Errorf("echoed %d bytes of %d, checksum match %v", m, n, got == enginetest.StreamSum(seed, n))
		default:
			tr.sum <- nil
		}
	}()
	return tr
}

// send writes the next m bytes of the stream.
func (tr *transfer) send(t *testing.T, m int64) {
	t.Helper()
	_ = tr.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.CopyN(tr.c, tr.src, m); err != nil {
		t.Fatalf("transfer write: %v", err)
	}
}

func (tr *transfer) finish(t *testing.T) {
	t.Helper()
	select {
	case err := <-tr.sum:
		if err != nil {
			t.Fatalf("transfer across the reloads: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("transfer did not complete within 30 s")
	}
}

// testReloadServices: add, remove, rename and move services by reload while
// a transfer on another service runs, byte-exact, across all of them.
func testReloadServices(t *testing.T) {
	echo := enginetest.NewBackend(t, enginetest.Echo)
	ba, bb := nameBackend(t, "a"), nameBackend(t, "b")
	pMain, pOld, pGone, pNew, pMoved := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	main := svcCfg("main", pMain, echo.Addr)
	old := svcCfg("old", pOld, echo.Addr)
	gone := svcCfg("gone", pGone, ba.Addr)
	s := startSnap(t, snapOf(time.Hour, main, old, gone))

	const piece = 1 << 20
	tr := startTransfer(t, addrOf(pMain), 5*piece, 7)
	tr.send(t, piece)
	held := dialEcho(t, addrOf(pOld))
	echoOnce(t, held, "before the rename")

	steps := []struct {
		name  string
		svcs  []config.Service
		check func(t *testing.T)
	}{
		{"add", []config.Service{main, old, gone, svcCfg("new", pNew, bb.Addr)}, func(t *testing.T) {
			if got, err := ask(t, addrOf(pNew)); err != nil || got != "b" {
				t.Fatalf("added service: %q, %v", got, err)
			}
		}},
		{"remove", []config.Service{main, old, svcCfg("new", pNew, bb.Addr)}, func(t *testing.T) {
			waitFor(t, func() bool { return refuses(pGone) })
			if st := s.Status(); strings.Join(names(st), ",") != "main,old,new" {
				t.Fatalf("services %v", names(st))
			}
		}},
		{"rename", []config.Service{main, svcCfg("renamed", pOld, echo.Addr), svcCfg("new", pNew, bb.Addr)}, func(t *testing.T) {
			echoOnce(t, held, "after the rename") // the listener and its connection stayed
			ss := serviceStatus(t, s.Status(), "renamed")
			if ss.Listen.Port() != uint16(pOld) || ss.Draining != 0 || ss.Policy.Total != 1 || ss.Policy.Active != 1 {
				t.Fatalf("renamed service %+v: want the old listener and the old policy's counters", ss)
			}
			c := dialEcho(t, addrOf(pOld))
			echoOnce(t, c, "new connection after the rename")
			c.Close()
		}},
		{"move", []config.Service{main, svcCfg("renamed", pOld, echo.Addr), svcCfg("new", pMoved, bb.Addr)}, func(t *testing.T) {
			if got, err := ask(t, addrOf(pMoved)); err != nil || got != "b" {
				t.Fatalf("moved service: %q, %v", got, err)
			}
			waitFor(t, func() bool { return refuses(pNew) })
		}},
	}
	for _, step := range steps {
		r, err := s.Reload(context.Background(), snapOf(time.Hour, step.svcs...))
		if err != nil || !r.OK {
			t.Fatalf("%s: %+v, %v", step.name, r, err)
		}
		step.check(t)
		tr.send(t, piece) // the transfer on main goes on between the reloads
	}
	tr.finish(t)
	echoOnce(t, held, "at the end")
	ms := serviceStatus(t, s.Status(), "main")
	if ms.Policy.Total != 1 || ms.Draining != 0 || ms.Listen.Port() != uint16(pMain) {
		t.Fatalf("main after the reloads: %+v", ms)
	}
	if st := s.Status(); st.Reloads != 4 || strings.Join(names(st), ",") != "main,renamed,new" {
		t.Fatalf("status after the reloads: reloads %d services %v", st.Reloads, names(st))
	}
}

func dialEcho(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testRemovedServiceDrains: a removed service stops accepting at once; its
// connections finish on their own within drain_timeout_ms, and are closed
// when it runs out.
func testRemovedServiceDrains(t *testing.T) {
	for _, tt := range []struct {
		name  string
		drain time.Duration
	}{{"within the drain timeout", time.Hour}, {"closed at the drain timeout", 0}} {
		t.Run(tt.name, func(t *testing.T) {
			echo := enginetest.NewBackend(t, enginetest.Echo)
			pKeep, pGone := freePort(t), freePort(t)
			keep, gone := svcCfg("keep", pKeep, echo.Addr), svcCfg("gone", pGone, echo.Addr)
			s := startSnap(t, snapOf(tt.drain, keep, gone))
			held := dialEcho(t, addrOf(pGone))
			echoOnce(t, held, "before")
			if _, err := s.Reload(context.Background(), snapOf(tt.drain, keep)); err != nil {
				t.Fatal(err)
			}
			// It stops accepting as its drain starts (the gnet engine's
			// front stops asynchronously).
			waitFor(t, func() bool { return refuses(pGone) })
			if tt.drain > 0 {
				if st := s.Status(); st.Draining != 1 || len(st.Services) != 1 {
					t.Fatalf("status while draining: draining %d services %v", st.Draining, names(st))
				}
				echoOnce(t, held, "while draining")
				held.Close()
			} else {
				_ = held.SetReadDeadline(time.Now().Add(10 * time.Second))
				if n, err := held.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
					t.Fatalf("connection of a removed service with drain_timeout_ms 0: read %d, %v; want it closed", n, err)
				}
			}
			waitFor(t, func() bool { return s.Status().Draining == 0 })
			c := dialEcho(t, addrOf(pKeep))
			echoOnce(t, c, "the kept service")
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// testReloadBindFailureRejectsWhole: one new address of several cannot be
// bound: nothing changes, the fresh listeners are closed again.
func testReloadBindFailureRejectsWhole(t *testing.T) {
	a, b := nameBackend(t, "a"), nameBackend(t, "b")
	pa, pb, pc, pd := freePort(t), freePort(t), freePort(t), heldPort(t)
	s := startSnap(t, snapOf(time.Second, svcCfg("a", pa, a.Addr), svcCfg("b", pb, a.Addr)))
	next := snapOf(time.Second,
		svcCfg("a", pa, b.Addr),          // backends change
		svcCfg("b", pc, a.Addr),          // moves to a free port
		svcCfg("c", freePort(t), a.Addr), // added on a free port
		svcCfg("d", pd, a.Addr),          // added on a held port
	)
	cPort := next.Services[2].Port
	_, err := s.Reload(context.Background(), next)
	if !errors.Is(err, ErrReloadRejected) || !errors.Is(err, engine.ErrAddrInUse) || !strings.Contains(err.Error(), "service d") {
		t.Fatalf("reload = %v, want rejected with ErrAddrInUse naming service d", err)
	}
	for _, p := range []int{pc, cPort} {
		if !bindable(t, p) {
			t.Errorf("port %d bound by the rejected reload is still held", p)
		}
	}
	if got, err := ask(t, addrOf(pa)); err != nil || got != "a" {
		t.Fatalf("service a after the rejected reload: %q, %v (want the old backend)", got, err)
	}
	if got, err := ask(t, addrOf(pb)); err != nil || got != "a" {
		t.Fatalf("service b after the rejected reload: %q, %v (want its old address)", got, err)
	}
	st := s.Status()
	if strings.Join(names(st), ",") != "a,b" || st.ReloadFailures != 1 || st.Reloads != 0 || st.LastReload.OK || s.Snapshot().Services[0].Backends[0].Port != int(a.Addr.Port()) {
		t.Fatalf("status after the rejected reload: %v %+v", names(st), st.LastReload)
	}
}

// testReloadOntoOwnAddress: a service added on the address a kept service
// moves away from cannot be bound in one reload; the error says why.
func testReloadOntoOwnAddress(t *testing.T) {
	a := nameBackend(t, "a")
	p1, p2 := freePort(t), freePort(t)
	s := startSnap(t, snapOf(time.Second, svcCfg("a", p1, a.Addr)))
	_, err := s.Reload(context.Background(), snapOf(time.Second, svcCfg("a", p2, a.Addr), svcCfg("b", p1, a.Addr)))
	if !errors.Is(err, engine.ErrAddrInUse) || !strings.Contains(err.Error(), "bal's own listener (service a on "+addrOf(p1)+")") {
		t.Fatalf("reload = %v", err)
	}
	if !bindable(t, p2) {
		t.Error("the moved service's new port is still bound after the rejected reload")
	}
}

// testReloadEngineChange: runtime.engine is process-wide; a service that
// keeps its address cannot switch engines live, one that moves can.
func testReloadEngineChange(t *testing.T) {
	engines := func(name string) (Engine, error) {
		if name == "other" {
			e, err := stdEngines(config.EngineStd)
			e.Name = "other"
			return e, err
		}
		return stdEngines(name)
	}
	a := nameBackend(t, "a")
	p1, p2, p3 := freePort(t), freePort(t), freePort(t)
	s := New(snapOf(time.Second, svcCfg("one", p1, a.Addr), svcCfg("two", p2, a.Addr)), Options{Engines: engines})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	withEngine := func(snap *config.Snapshot) *config.Snapshot {
		snap.Runtime.Engine = "other"
		return snap
	}
	// one moves, two stays: two cannot change engine.
	_, err := s.Reload(context.Background(), withEngine(snapOf(time.Second, svcCfg("one", p3, a.Addr), svcCfg("two", p2, a.Addr))))
	if !errors.Is(err, ErrReloadRejected) || !strings.Contains(err.Error(), "service two: runtime.engine std -> other on the same address needs a restart") {
		t.Fatalf("reload = %v", err)
	}
	if !bindable(t, p3) {
		t.Error("the moved service's new port is still bound after the rejected reload")
	}
	// Both move: the new listeners run the new engine.
	p4 := freePort(t)
	if _, err := s.Reload(context.Background(), withEngine(snapOf(time.Second, svcCfg("one", p3, a.Addr), svcCfg("two", p4, a.Addr)))); err != nil {
		t.Fatal(err)
	}
	for _, ss := range s.Status().Services {
		if ss.Engine != "other" {
			t.Errorf("service %s runs %s after the move, want other", ss.Name, ss.Engine)
		}
	}
	if got, err := ask(t, addrOf(p4)); err != nil || got != "a" {
		t.Fatalf("moved service: %q, %v", got, err)
	}
}
