package policy

import (
	"context"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/pool"
)

const (
	A = "127.0.0.1:9001"
	B = "127.0.0.1:9002"
	C = "127.0.0.1:9003"
	D = "127.0.0.1:9004"
	E = "127.0.0.1:9005"
)

func five() []config.Backend {
	return []config.Backend{be("127.0.0.1", 9001, 1), be("127.0.0.1", 9002, 1), be("127.0.0.1", 9003, 1), be("127.0.0.1", 9004, 1), be("127.0.0.1", 9005, 1)}
}

func TestAdmitLimitAndCounts(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, func(r *config.Runtime) { r.MaxConcurrentConnections = 3 }, five()[:2]...), Options{})
	var cs []*conn
	for range 3 {
		c := connect(f.p, "192.0.2.1:5000", ok)
		if !c.admitted || !c.ok {
			t.Fatal("connection under the limit refused")
		}
		cs = append(cs, c)
	}
	if c := connect(f.p, "192.0.2.1:5001", ok); c.admitted {
		t.Fatal("4th connection admitted with max 3")
	}
	st := f.p.Status()
	if st.Active != 3 || st.Total != 3 || st.Rejected != 1 {
		t.Fatalf("active %d total %d rejected %d", st.Active, st.Total, st.Rejected)
	}
	if st.DefaultBackends()[0].Active+st.DefaultBackends()[1].Active != 3 || st.DefaultBackends()[0].Total+st.DefaultBackends()[1].Total != 3 {
		t.Fatalf("per-backend counts %+v", st.DefaultBackends())
	}
	cs[0].close(f.p)
	if c := connect(f.p, "192.0.2.1:5002", ok); !c.admitted {
		t.Fatal("connection refused after one closed")
	} else {
		c.close(f.p)
	}
	for _, c := range cs[1:] {
		c.close(f.p)
	}
	st = f.p.Status()
	if st.Active != 0 || st.Total != 4 || st.DefaultBackends()[0].Active != 0 || st.DefaultBackends()[1].Active != 0 || st.BytesIn != 40 || st.BytesOut != 80 {
		t.Fatalf("after closing: %+v", st)
	}
}

// TestAdmitSharedAcrossEngines runs admissions from several goroutines, as
// two engines (an old listener draining and a new one) would.
func TestAdmitSharedAcrossEngines(t *testing.T) {
	const limit = 5
	f := newFixture(t, service(config.RoundRobin, func(r *config.Runtime) { r.MaxConcurrentConnections = limit }, five()[:2]...), Options{})
	var live, peak atomic.Int64
	var admitted, rejected atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				ci := &engine.ConnInfo{Client: netip.MustParseAddrPort("192.0.2.9:1")}
				if !f.p.Admit(ci) {
					rejected.Add(1)
					continue
				}
				admitted.Add(1)
				n := live.Add(1)
				for m := peak.Load(); n > m && !peak.CompareAndSwap(m, n); m = peak.Load() {
				}
				live.Add(-1)
				f.p.Closed(ci, engine.CloseInfo{Reason: engine.CloseNoBackend})
			}
		})
	}
	wg.Wait()
	st := f.p.Status()
	if peak.Load() > limit || st.Active != 0 || st.Total != uint64(admitted.Load()) || st.Rejected != uint64(rejected.Load()) || admitted.Load()+rejected.Load() != 8000 {
		t.Fatalf("peak %d status %+v admitted %d rejected %d", peak.Load(), st, admitted.Load(), rejected.Load())
	}
}

func TestFailoverAndCooldownBackoff(t *testing.T) {
	// 3 backends: initial 300 ms, max 7000 ms, cooldown 700 ms. Passive
	// health is kept out of the way (fall 100) to watch the cooldown alone.
	f := newFixture(t, service(config.RoundRobin, func(r *config.Runtime) { r.HealthCheckFailThreshold = 100 }, five()[:3]...), Options{})
	warm(f, 3)
	refuseA := failing(map[string]error{A: errRefused})
	ms := time.Millisecond
	for i, want := range []time.Duration{700 * ms, 700 * ms, 1200 * ms, 2400 * ms, 4800 * ms, 7000 * ms, 7000 * ms} {
		// Go round until A is picked (it is next in turn at most 3 picks on).
		var c *conn
		for range 3 {
			c = connect(f.p, "192.0.2.1:1000", refuseA)
			c.close(f.p)
			if c.tried[0] == A {
				break
			}
		}
		if c.tried[0] != A || len(c.tried) != 2 || !c.ok {
			t.Fatalf("failure %d: tried %v ok %v", i+1, c.tried, c.ok)
		}
		st := f.backend(t, A)
		if got := st.Cooldown.Sub(f.clk.Now()); got != want || st.Streak != uint32(i+1) {
			t.Fatalf("failure %d: cooldown %v streak %d, want %v", i+1, got, st.Streak, want)
		}
		// While cooling down A is skipped by every connection.
		for range 6 {
			c := connect(f.p, "192.0.2.1:1001", refuseA)
			c.close(f.p)
			if slices.Contains(c.tried, A) {
				t.Fatalf("failure %d: A tried during its cooldown", i+1)
			}
		}
		f.clk.Advance(want - time.Millisecond)
		if f.backend(t, A).Cooldown.IsZero() {
			t.Fatalf("failure %d: cooldown over early", i+1)
		}
		f.clk.Advance(time.Millisecond)
	}
	// A works again: streak and cooldown reset.
	for range 3 {
		connect(f.p, "192.0.2.1:1002", ok).close(f.p)
	}
	if st := f.backend(t, A); st.Streak != 0 || !st.Cooldown.IsZero() || st.Counters.Refused != 7 || st.Total != 2 {
		t.Fatalf("after recovery %+v", st)
	}
}

func TestPassiveHealthAndPhaseTwo(t *testing.T) {
	// 2 backends: fall 2, rise 1, cooldown 500 ms.
	f := newFixture(t, service(config.RoundRobin, nil, five()[:2]...), Options{})
	warm(f, 2)
	down := map[string]error{B: errRefused}
	for i := range 2 {
		f.clk.Advance(time.Second)
		for range 2 {
			connect(f.p, "192.0.2.1:1", failing(down)).close(f.p)
		}
		if i == 0 && !f.backend(t, B).Reachable {
			t.Fatal("B down after 1 failed connect (fall 2)")
		}
	}
	if f.backend(t, B).Reachable {
		t.Fatal("B still reachable after 2 failed connects (fall 2)")
	}
	logs := f.log.lines("backend down")
	if len(logs) != 1 || logs[0]["backend"] != B || logs[0]["via"] != "proxy" || logs[0]["level"] != "WARN" {
		t.Fatalf("down log %v", logs)
	}
	// B is unhealthy: phase 1 never picks it.
	f.clk.Advance(time.Minute)
	for range 4 {
		c := connect(f.p, "192.0.2.1:2", ok)
		c.close(f.p)
		if c.tried[0] != A || len(c.tried) != 1 {
			t.Fatalf("tried %v with B down", c.tried)
		}
	}
	// A fails: B is tried once in phase 2, connects, and is healthy again.
	c := connect(f.p, "192.0.2.1:3", failing(map[string]error{A: errTimeout}))
	c.close(f.p)
	if !slices.Equal(c.tried, []string{A, B}) || !c.ok {
		t.Fatalf("phase 2: tried %v ok %v", c.tried, c.ok)
	}
	if st := f.backend(t, B); !st.Reachable || st.Streak != 0 {
		t.Fatalf("B after a phase-2 success: %+v", st)
	}
	if ups := f.log.lines("backend up"); len(ups) != 1 || ups[0]["via"] != "proxy" {
		t.Fatalf("up log %v", ups)
	}
	if st := f.backend(t, A); st.Counters.Timeout != 1 || st.Cooldown.IsZero() {
		t.Fatalf("A after timeout %+v", st)
	}
}

// warm makes every backend's health known (up) with n successful
// connections, as the start-up health round would.
func warm(f *fixture, n int) {
	for range n {
		connect(f.p, "192.0.2.1:9", ok).close(f.p)
	}
}

func TestUnknownBackendDecidedByFirstOutcome(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, nil, five()[:2]...), Options{})
	for _, b := range f.p.Status().DefaultBackends() {
		if !b.Reachable || b.Checked {
			t.Fatalf("new backend %+v", b)
		}
	}
	c := connect(f.p, "192.0.2.1:1", failing(map[string]error{A: errRefused}))
	c.close(f.p)
	if a, b := f.backend(t, A), f.backend(t, B); a.Reachable || !a.Checked || !b.Reachable || !b.Checked {
		t.Fatalf("after the first outcomes: A %+v B %+v", a, b)
	}
}

func TestAllBackendsUnavailable(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, nil, five()[:2]...), Options{})
	all := failing(map[string]error{A: errRefused, B: errRefused})
	c := connect(f.p, "192.0.2.1:1", all)
	c.close(f.p)
	if c.ok || len(c.tried) != 2 {
		t.Fatalf("tried %v ok %v", c.tried, c.ok)
	}
	st := f.p.Status()
	if st.NoBackend != 1 || !st.Protection.Enabled || st.Protection.Reason != "all_backends_unavailable" || st.Active != 0 {
		t.Fatalf("status %+v", st)
	}
	if on := f.log.lines("protection mode on"); len(on) != 1 || on[0]["reason"] != "all_backends_unavailable" {
		t.Fatalf("protection log %v", on)
	}
	// Everything is cooling down: the next client still gets one attempt,
	// at the backend whose cooldown ends first, then gives up.
	c = connect(f.p, "192.0.2.1:2", all)
	c.close(f.p)
	if len(c.tried) != 1 || c.ok || f.p.Status().NoBackend != 2 {
		t.Fatalf("tried %v during the cooldowns, want one last-resort attempt", c.tried)
	}
	// A answered the last resort with another refusal, so B's cooldown ends
	// first now; once B answers again it serves a client at once, cooldown
	// or not.
	c = connect(f.p, "192.0.2.1:4", failing(map[string]error{A: errRefused}))
	c.close(f.p)
	if !c.ok {
		t.Fatalf("tried %v: a recovered backend in cooldown was never tried", c.tried)
	}
	// Unhealthy and out of cooldown: phase 2 tries both once more.
	f.clk.Advance(10 * time.Second)
	c = connect(f.p, "192.0.2.1:3", all)
	c.close(f.p)
	if len(c.tried) != 2 {
		t.Fatalf("phase 2 tried %v", c.tried)
	}
}

func TestProtectionThroughPolicy(t *testing.T) {
	tune := func(r *config.Runtime) {
		r.HealthCheckFailThreshold = 100
		r.ProtectionTriggerThreshold = 2
		r.ProtectionWindow = 10 * time.Second
		r.ProtectionStableSuccessThreshold = 3
	}
	f := newFixture(t, service(config.RoundRobin, tune, five()...), Options{})
	warm(f, 5)
	// 5 backends: initial 300 ms, max 7000 ms, cooldown 700 ms.
	bad := failing(map[string]error{A: errRefused, B: errRefused, C: errRefused, D: errRefused})
	c := connect(f.p, "192.0.2.1:1", bad)
	c.close(f.p)
	// A refused (1 failure), B refused (2: storm → on). With protection on
	// the connection may not try a third backend.
	if !slices.Equal(c.tried, []string{A, B}) || c.ok {
		t.Fatalf("tried %v ok %v", c.tried, c.ok)
	}
	st := f.p.Status()
	if !st.Protection.Enabled || st.Protection.Reason != "timeout_or_refused_storm" || !st.Protection.Since.Equal(f.clk.Now()) {
		t.Fatalf("protection %+v", st.Protection)
	}
	// A's cooldown was set before protection was on, B's after: doubled.
	if a, b := f.backend(t, A).Cooldown.Sub(f.clk.Now()), f.backend(t, B).Cooldown.Sub(f.clk.Now()); a != 700*time.Millisecond || b != 1400*time.Millisecond {
		t.Fatalf("cooldowns A %v B %v, want 700ms and 1.4s", a, b)
	}
	// The next client tries C and D, then stops although E is untried; that
	// is the cap, not an exhausted backend list, so the reason stays.
	c = connect(f.p, "192.0.2.1:2", bad)
	c.close(f.p)
	if !slices.Equal(c.tried, []string{C, D}) || c.ok {
		t.Fatalf("tried %v ok %v", c.tried, c.ok)
	}
	if st := f.p.Status(); st.Protection.Reason != "timeout_or_refused_storm" || st.NoBackend != 2 {
		t.Fatalf("status %+v", st)
	}
	// Three successes in a row (E serves) turn it off.
	for i := range 3 {
		c = connect(f.p, "192.0.2.1:3", bad)
		c.close(f.p)
		if !c.ok || c.tried[0] != E {
			t.Fatalf("success %d: tried %v", i, c.tried)
		}
	}
	if st := f.p.Status(); st.Protection.Enabled || st.Protection.Transitions != 2 {
		t.Fatalf("after stable successes %+v", st.Protection)
	}
	if off := f.log.lines("protection mode off"); len(off) != 1 || off[0]["cause"] != "stable_successes" || off[0]["level"] != "INFO" {
		t.Fatalf("off log %v", off)
	}

	// On again by exhaustion; off after a quiet window, by Tick alone.
	f.clk.Advance(time.Minute)
	down := failing(map[string]error{A: errOther, B: errOther, C: errOther, D: errOther, E: errOther})
	c = connect(f.p, "192.0.2.1:4", down)
	c.close(f.p)
	if st := f.p.Status(); !st.Protection.Enabled || st.Protection.Reason != "all_backends_unavailable" {
		t.Fatalf("after exhaustion %+v (tried %v)", st.Protection, c.tried)
	}
	f.clk.Advance(9 * time.Second)
	f.p.Tick()
	if !f.p.Status().Protection.Enabled {
		t.Fatal("off before a full quiet window")
	}
	f.clk.Advance(time.Second)
	f.p.Tick()
	if f.p.Status().Protection.Enabled {
		t.Fatal("still on after a full quiet window")
	}
	if off := f.log.lines("protection mode off"); len(off) != 2 || off[1]["cause"] != "quiet_window" || off[1]["previous_reason"] != "all_backends_unavailable" {
		t.Fatalf("off log %v", off)
	}
}

func TestProtectionTickerEndsQuietProtection(t *testing.T) {
	// Real clock: the runtime's ticker ends protection without any traffic.
	s := service(config.RoundRobin, func(r *config.Runtime) { r.ProtectionWindow = 100 * time.Millisecond }, five()[:1]...)
	p := New(s, Options{})
	connect(p, "192.0.2.1:1", failing(map[string]error{A: errRefused})).close(p)
	if !p.Status().Protection.Enabled {
		t.Fatal("protection not on after exhaustion")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { p.RunTicker(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(2 * time.Second)
	for p.Status().Protection.Enabled {
		if time.Now().After(deadline) {
			t.Fatal("protection still on 2 s after a 100 ms quiet window")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHostnameBackendTriesEveryAddress(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, func(r *config.Runtime) { r.HealthCheckFailThreshold = 100 },
		be("app.test", 9000, 1), be("127.0.0.1", 9002, 1)), Options{})
	f.p.st.Load().def.pool.At(0).Observe(true, 1, 100) // known up, as after a health check
	// Not resolved yet: never picked.
	for range 3 {
		c := connect(f.p, "192.0.2.1:1", ok)
		c.close(f.p)
		if c.tried[0] != B {
			t.Fatalf("unresolved hostname picked: %v", c.tried)
		}
	}
	a1, a2, a3 := netip.MustParseAddrPort("[::1]:9000"), netip.MustParseAddrPort("127.0.0.1:9000"), netip.MustParseAddrPort("127.0.0.2:9000")
	f.p.st.Load().def.pool.At(0).SetAddrs([]netip.AddrPort{a1, a2, a3})
	// First address refused, second times out, third connects: one backend
	// tried, no cooldown.
	c := connect(f.p, "192.0.2.1:2", failing(map[string]error{a1.String(): errRefused, a2.String(): errTimeout}))
	c.close(f.p)
	if !slices.Equal(c.tried, []string{a1.String(), a2.String(), a3.String()}) || !c.ok {
		t.Fatalf("tried %v ok %v", c.tried, c.ok)
	}
	st := f.backend(t, "app.test:9000")
	if st.Streak != 0 || !st.Cooldown.IsZero() || st.Counters.Refused != 1 || st.Counters.Timeout != 1 || st.Total != 1 || len(st.Addrs) != 3 {
		t.Fatalf("after partial failure %+v", st)
	}
	// All three fail: the backend fails once (streak 1), then B serves.
	connect(f.p, "192.0.2.1:3", ok).close(f.p) // B's turn
	c = connect(f.p, "192.0.2.1:4", failing(map[string]error{a1.String(): errRefused, a2.String(): errRefused, a3.String(): errRefused}))
	c.close(f.p)
	if !slices.Equal(c.tried, []string{a1.String(), a2.String(), a3.String(), B}) || !c.ok {
		t.Fatalf("tried %v", c.tried)
	}
	if st := f.backend(t, "app.test:9000"); st.Streak != 1 || st.Cooldown.IsZero() || st.Counters.Refused != 4 {
		t.Fatalf("after total failure %+v", st)
	}
}

func TestNilAndEmptyServices(t *testing.T) {
	p := New(nil, Options{})
	p.Apply(nil)
	c := connect(p, "192.0.2.1:1", ok)
	c.close(p)
	if c.ok || !c.admitted || p.Status().NoBackend != 1 || len(p.Status().DefaultBackends()) != 0 {
		t.Fatalf("empty policy: %+v", p.Status())
	}
	p.Apply(service(config.RoundRobin, nil, five()[:1]...))
	if c := connect(p, "192.0.2.1:2", ok); !c.ok {
		t.Fatal("no pick after applying a backend")
	} else {
		c.close(p)
	}
}

func TestResolveThroughPolicy(t *testing.T) {
	res := resolverFunc(func(_ context.Context, _, host string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	})
	p := New(service(config.RoundRobin, nil, be("app.test", 9000, 1)), Options{Resolver: res})
	if c := connect(p, "192.0.2.1:1", ok); c.ok {
		t.Fatal("unresolved hostname picked")
	} else {
		c.close(p)
	}
	if err := p.Resolve(t.Context()); err != nil {
		t.Fatal(err)
	}
	c := connect(p, "192.0.2.1:2", ok)
	c.close(p)
	if !c.ok || c.connected.Addr != netip.MustParseAddrPort("127.0.0.1:9000") || c.connected.Name != "app.test:9000" {
		t.Fatalf("after Resolve: %+v", c.connected)
	}
}

type resolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f resolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

func TestPickWithoutAdmitDoesNotCrash(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, nil, five()[:1]...), Options{})
	ci := &engine.ConnInfo{Client: netip.MustParseAddrPort("192.0.2.1:1")}
	tg, ok := f.p.Pick(ci, 0)
	if !ok || tg.Name != A {
		t.Fatalf("pick %v %v", tg, ok)
	}
	f.p.DialResult(ci, engine.Target{}, errRefused, 0) // no Ref: ignored
	f.p.DialResult(ci, tg, nil, 0)
	if _, ok := f.p.Pick(ci, 1); ok {
		t.Fatal("Pick after a successful connect")
	}
}

func TestDistributionThroughPolicy(t *testing.T) {
	s := service(config.RoundRobin, nil, be("127.0.0.1", 9001, 3), be("127.0.0.1", 9002, 1))
	f := newFixture(t, s, Options{})
	for range 4000 {
		connect(f.p, "192.0.2.1:1", ok).close(f.p)
	}
	if a, b := f.backend(t, A).Total, f.backend(t, B).Total; a != 3000 || b != 1000 {
		t.Fatalf("round robin 3:1 gave %d:%d", a, b)
	}
}

func TestLeastConnectionsFollowsHeldConnections(t *testing.T) {
	f := newFixture(t, service(config.LeastConnections, nil, five()[:3]...), Options{})
	var held []*conn
	for range 9 {
		held = append(held, connect(f.p, "192.0.2.1:1", ok))
	}
	for _, a := range []string{A, B, C} {
		if n := f.backend(t, a).Active; n != 3 {
			t.Fatalf("%s holds %d of 9", a, n)
		}
	}
	// Close B's connections: the next three all go to B.
	for _, c := range held {
		if c.connected.Name == B {
			c.close(f.p)
		}
	}
	for range 3 {
		if c := connect(f.p, "192.0.2.1:2", ok); c.connected.Name != B {
			t.Fatalf("went to %s, B has the fewest connections", c.connected.Name)
		}
	}
}

func TestSourceHashThroughPolicy(t *testing.T) {
	bs := []config.Backend{be("10.0.0.1", 80, 1), be("10.0.0.2", 80, 1), be("app.test", 80, 2), be("10.0.0.4", 80, 1)}
	f1 := newFixture(t, service(config.SourceHash, nil, bs...), Options{})
	f2 := newFixture(t, service(config.SourceHash, nil, slices.Clone(bs)...), Options{})
	for _, f := range []*fixture{f1, f2} {
		f.p.st.Load().def.pool.At(2).SetAddrs([]netip.AddrPort{netip.MustParseAddrPort("10.0.0.3:80")})
	}
	for k := range 1000 {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(k >> 8), byte(k)}), uint16(1000+k)).String()
		c1, c2 := connect(f1.p, client, ok), connect(f2.p, client, ok)
		again := connect(f1.p, netip.MustParseAddrPort(client).Addr().String()+":9", ok) // same IP, other port
		if c1.connected.Name != c2.connected.Name || again.connected.Name != c1.connected.Name {
			t.Fatalf("client %s: %s, %s, %s", client, c1.connected.Name, c2.connected.Name, again.connected.Name)
		}
		c1.close(f1.p)
		c2.close(f2.p)
		again.close(f1.p)
	}
}

func TestApplyKeepsStateOfKeptBackends(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, func(r *config.Runtime) { r.HealthCheckFailThreshold = 1 }, five()[:3]...), Options{})
	// A holds a connection; B has failed once (cooldown); C holds one too.
	var onA, onC *conn
	for onA == nil || onC == nil {
		c := connect(f.p, "192.0.2.1:1", failing(map[string]error{B: errRefused}))
		switch c.connected.Name {
		case A:
			onA = c
		case C:
			onC = c
		default:
			c.close(f.p)
		}
	}
	bBefore := f.backend(t, B)
	if bBefore.Counters.Refused != 1 || bBefore.Reachable || bBefore.Cooldown.IsZero() {
		t.Fatalf("B before reload %+v", bBefore)
	}

	// Reload: C removed, B reweighted and listed first, D added, method and
	// limits changed.
	f.p.Apply(service(config.LeastConnections, func(r *config.Runtime) {
		r.HealthCheckFailThreshold = 1
		r.MaxConcurrentConnections = 2
	}, be("127.0.0.1", 9002, 5), be("127.0.0.1", 9001, 1), be("127.0.0.1", 9004, 1)))

	st := f.p.Status()
	var order []string
	for _, b := range st.DefaultBackends() {
		order = append(order, b.Address)
	}
	if !slices.Equal(order, []string{B, A, D}) || st.Method != config.LeastConnections {
		t.Fatalf("after reload: %v %s", order, st.Method)
	}
	if b := st.DefaultBackends()[0]; b.Weight != 5 || b.Counters != bBefore.Counters || b.Reachable || !b.Cooldown.Equal(bBefore.Cooldown) {
		t.Fatalf("B lost its state: %+v", b)
	}
	if a := st.DefaultBackends()[1]; a.Active != 1 || a.Total != 1 {
		t.Fatalf("A lost its connection: %+v", a)
	}
	if d := st.DefaultBackends()[2]; d.Checked || !d.Reachable || d.Total != 0 {
		t.Fatalf("new backend D: %+v", d)
	}
	if on := f.log.lines("backend added"); len(on) != 1 || on[0]["backend"] != D {
		t.Fatalf("added log %v", on)
	}
	if off := f.log.lines("backend removed"); len(off) != 1 || off[0]["backend"] != C || off[0]["active_connections"] != 1.0 {
		t.Fatalf("removed log %v", off)
	}
	// The removed backend gets nothing new; its open connection closes fine.
	// Admission follows the new limit (2 open: A's and C's).
	if c := connect(f.p, "192.0.2.1:2", ok); c.admitted {
		t.Fatal("admitted above the reloaded limit")
	}
	onC.close(f.p)
	if onC.connected.Ref.(interface{ Active() int64 }).Active() != 0 {
		t.Fatal("removed backend's connection not released")
	}
	c := connect(f.p, "192.0.2.1:3", ok)
	if c.connected.Name != D { // least connections: A holds one, B is cooling down
		t.Fatalf("picked %s", c.connected.Name)
	}
	c.close(f.p)
	onA.close(f.p)
	if st := f.p.Status(); st.Active != 0 {
		t.Fatalf("active %d after closing everything", st.Active)
	}
	if f.p.Service().Method != config.LeastConnections {
		t.Fatal("Service is not the applied one")
	}
}

// TestHealthRunsAtStartAndAfterReload drives the real checker through the
// policy with an injected dialer.
func TestHealthRunsAtStartAndAfterReload(t *testing.T) {
	var mu sync.Mutex
	dialed := map[string]int{}
	dial := func(_ context.Context, _, addr string) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		dialed[addr]++
		if addr == B {
			return nil, errRefused
		}
		c1, c2 := net.Pipe()
		c2.Close()
		return c1, nil
	}
	count := func(a string) int { mu.Lock(); defer mu.Unlock(); return dialed[a] }
	s := service(config.RoundRobin, func(r *config.Runtime) { r.HealthCheckInterval = time.Hour }, five()[:2]...)
	p := New(s, Options{HealthDial: dial})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitUntil(t, func() bool { return p.Status().HealthRounds >= 1 })
	st := p.Status()
	if !st.DefaultBackends()[0].Reachable || !st.DefaultBackends()[0].Checked || st.DefaultBackends()[1].Reachable || st.LastCheck.IsZero() || st.DefaultBackends()[0].LastCheck.IsZero() {
		t.Fatalf("after the first round: %+v", st)
	}
	p.Apply(service(config.RoundRobin, func(r *config.Runtime) { r.HealthCheckInterval = time.Hour }, five()[:3]...))
	waitUntil(t, func() bool { return count(C) >= 1 })
	waitUntil(t, func() bool { return p.Status().HealthRounds >= 2 })
	if count(A) != 2 {
		t.Fatalf("A dialed %d times, want 2 (start-up and the reload's round)", count(A))
	}
	p.CheckNow(t.Context())
	if count(C) != 2 || p.Status().HealthRounds != 3 {
		t.Fatalf("CheckNow: C dialed %d times, %d rounds", count(C), p.Status().HealthRounds)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestAccessLog(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, func(r *config.Runtime) { r.AccessLog = true }, five()[:1]...), Options{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { f.p.RunAccessLog(ctx); close(done) }()
	connect(f.p, "192.0.2.7:4321", ok).close(f.p)
	connect(f.p, "[2001:db8::1]:5555", failing(map[string]error{A: errRefused})).close(f.p)
	cancel()
	<-done // the writer flushes the queue before returning
	lines := f.log.lines("connection closed")
	if len(lines) != 2 {
		t.Fatalf("%d access log lines", len(lines))
	}
	l := lines[0]
	want := map[string]any{"client": "192.0.2.7:4321", "backend": A, "bytes_in": 10.0, "bytes_out": 20.0, "duration_ms": 1500.0, "reason": "done", "level": "INFO"}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("key %s = %v, want %v", k, l[k], v)
		}
	}
	if lines[1]["client"] != "[2001:db8::1]:5555" || lines[1]["reason"] != "all_backends_unavailable" || lines[1]["backend"] != "" {
		t.Fatalf("failed connection line %v", lines[1])
	}
}

func TestAccessLogNeverBlocks(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, func(r *config.Runtime) { r.AccessLog = true }, five()[:1]...), Options{AccessLogBuffer: 2})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for range 10 { // no writer running
			connect(f.p, "192.0.2.7:1", ok).close(f.p)
		}
	}()
	select {
	case <-finished:
	case <-time.After(2 * time.Second):
		t.Fatal("Closed blocked on a full access log queue")
	}
	if d := f.p.Status().AccessLogDropped; d != 8 {
		t.Fatalf("dropped %d, want 8", d)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f.p.RunAccessLog(ctx)
	if n := len(f.log.lines("connection closed")); n != 2 {
		t.Fatalf("%d lines written, want the 2 queued", n)
	}
}

func TestAccessLogOff(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, nil, five()[:1]...), Options{})
	connect(f.p, "192.0.2.7:1", ok).close(f.p)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f.p.RunAccessLog(ctx)
	if n := len(f.log.lines("connection closed")); n != 0 || f.p.Status().AccessLogDropped != 0 {
		t.Fatalf("%d access lines with access_log off", n)
	}
}

// TestConcurrentTrafficWithReloads hammers the hot path from several
// goroutines while reloads, status reads and ticks run, then checks that
// every count came back to zero (run with -race).
func TestConcurrentTrafficWithReloads(t *testing.T) {
	s1 := service(config.RoundRobin, nil, five()[:3]...)
	s2 := service(config.SourceHash, nil, five()[1:]...)
	s3 := service(config.LeastConnections, func(r *config.Runtime) { r.AccessLog = true }, five()...)
	p := New(s1, Options{AccessLogBuffer: 16})
	backends := map[any]bool{}
	var bmu sync.Mutex
	errs := []error{nil, nil, nil, errRefused, errTimeout, errOther}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { p.RunAccessLog(ctx) })
	for w := range 4 {
		wg.Go(func() {
			for i := range 1500 {
				c := connect(p, netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), uint16(w)).String(), func(t engine.Target) error {
					return errs[(i+int(t.Addr.Port()))%len(errs)]
				})
				if c.ok {
					bmu.Lock()
					backends[c.connected.Ref] = true
					bmu.Unlock()
				}
				c.close(p)
			}
		})
	}
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			p.Apply([]*config.Service{s1, s2, s3}[i%3])
			_ = p.Status()
			p.Tick()
			time.Sleep(time.Millisecond)
		}
	})
	// Wait for the traffic goroutines (all but the two loops) by polling.
	deadline := time.Now().Add(30 * time.Second)
	for p.Status().Total+p.Status().Rejected < 6000 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	for p.Status().Active != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	st := p.Status()
	if st.Active != 0 || st.Total+st.Rejected != 6000 {
		t.Fatalf("after traffic: %+v", st)
	}
	for ref := range backends {
		if n := ref.(interface{ Active() int64 }).Active(); n != 0 {
			t.Fatalf("a backend still counts %d active connections", n)
		}
	}
}

// TestLargePool exercises the tried-set of pools above 128 backends: one
// client walks through every failing backend exactly once, and pooled
// connection state moves between large and small pools safely.
func TestLargePool(t *testing.T) {
	var bs []config.Backend
	for i := range 200 {
		bs = append(bs, be("10.1."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250), 8000, 1))
	}
	tune := func(r *config.Runtime) { r.ProtectionTriggerThreshold = 1 << 20 }
	f := newFixture(t, service(config.RandomTwo, tune, bs...), Options{})
	warm(f, 400)
	var last string
	attempts := 0
	c := connect(f.p, "192.0.2.1:1", func(tg engine.Target) error {
		if attempts++; attempts == 200 {
			last = tg.Name
			return nil
		}
		return errRefused
	})
	c.close(f.p)
	seen := map[string]bool{}
	for _, a := range c.tried {
		if seen[a] {
			t.Fatalf("%s tried twice", a)
		}
		seen[a] = true
	}
	if !c.ok || c.connected.Name != last || len(c.tried) != 200 {
		t.Fatalf("tried %d backends, connected %v to %s", len(c.tried), c.ok, c.connected.Name)
	}
	f.p.Apply(service(config.RoundRobin, nil, five()[:2]...))
	for range 4 {
		c := connect(f.p, "192.0.2.1:2", failing(map[string]error{A: errRefused}))
		c.close(f.p)
		if !c.ok {
			t.Fatalf("small pool after large: tried %v", c.tried)
		}
	}
}

func TestProtectionReasonChangeLogged(t *testing.T) {
	tune := func(r *config.Runtime) { r.ProtectionTriggerThreshold = 2; r.HealthCheckFailThreshold = 100 }
	f := newFixture(t, service(config.RoundRobin, tune, five()[:2]...), Options{})
	warm(f, 2)
	c := connect(f.p, "192.0.2.1:1", failing(map[string]error{A: errRefused, B: errRefused}))
	c.close(f.p)
	// Two refusals made a storm, then the client had nothing left.
	if st := f.p.Status().Protection; st.Reason != "all_backends_unavailable" || st.Transitions != 2 {
		t.Fatalf("protection %+v", st)
	}
	ch := f.log.lines("protection mode reason changed")
	if len(ch) != 1 || ch[0]["reason"] != "all_backends_unavailable" || ch[0]["previous_reason"] != "timeout_or_refused_storm" || ch[0]["level"] != "WARN" {
		t.Fatalf("reason change log %v", ch)
	}
}

func TestLocalFailureDoesNotBlameBackend(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.ENOBUFS, syscall.ENOMEM} {
		t.Run(errno.Error(), func(t *testing.T) {
			f := newFixture(t, service(config.RoundRobin, func(r *config.Runtime) { r.ProtectionTriggerThreshold = 1 }, five()[:2]...), Options{})
			warm(f, 2)
			local := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
			c := connect(f.p, "192.0.2.1:1", failing(map[string]error{A: local}))
			c.close(f.p)
			if !slices.Equal(c.tried, []string{A, B}) || !c.ok {
				t.Fatalf("tried %v", c.tried)
			}
			a := f.backend(t, A)
			if a.Counters != (pool.Counters{}) || !a.Cooldown.IsZero() || !a.Reachable || a.Streak != 0 {
				t.Fatalf("A blamed for a local failure: %+v", a)
			}
			if st := f.p.Status(); st.Protection.Enabled || st.LocalFailures != 1 {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

// TestApplyShorterIntervalStartsNow: a reload that shortens the health
// interval takes effect at once, not after the old interval runs out.
func TestApplyShorterIntervalStartsNow(t *testing.T) {
	var dials atomic.Int64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return nil, errRefused
	}
	slow := service(config.RoundRobin, func(r *config.Runtime) { r.HealthCheckInterval = time.Hour }, be("127.0.0.1", 9, 1))
	p := New(slow, Options{HealthDial: dial})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.RunHealth(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitUntil(t, func() bool { return p.Status().HealthRounds == 1 })
	p.Apply(service(config.RoundRobin, func(r *config.Runtime) { r.HealthCheckInterval = 20 * time.Millisecond }, be("127.0.0.1", 9, 1)))
	waitUntil(t, func() bool { return p.Status().HealthRounds >= 3 })
}
