package policy

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
)

// twoPools: route "lan" (clients from 10.0.0.0/8) over A and B, the
// default pool over C, D and the shared A.
func twoPools(tune func(*config.Runtime)) *config.Service {
	s := routed([]config.Route{rt("lan", config.Match{Source: prefixes("10.0.0.0/8")}, A, B)}, be("127.0.0.1", 9003, 1), be("127.0.0.1", 9004, 1), be("127.0.0.1", 9001, 1))
	if tune != nil {
		tune(&s.Runtime)
	}
	return s
}

// TestFailoverStaysInPool: a connection only ever tries its own pool's
// backends, and one pool's failures (cooldowns, health) do not touch
// another pool's backends, a server listed in both included.
func TestFailoverStaysInPool(t *testing.T) {
	f := newFixture(t, twoPools(func(r *config.Runtime) { r.ProtectionTriggerThreshold = 1000 }), Options{})

	// The default pool fails over from C and D to its A, never to lan's B.
	def := connect(f.p, "192.0.2.1:1", failing(map[string]error{C: errRefused, D: errRefused}))
	if !def.ok || def.connected.Name != A || !sameSet(def.tried, []string{C, D, A}) {
		t.Fatalf("default pool tried %v, connected %v", def.tried, def.connected)
	}
	def.close(f.p)

	// Every lan backend refuses: lan tries exactly its own A and B. Its A
	// is a backend of its own, untouched by the default pool's success.
	dead := failing(map[string]error{A: errRefused, B: errRefused, C: errRefused, D: errRefused})
	lan := connect(f.p, "10.0.0.1:1", dead)
	if lan.ok || !sameSet(lan.tried, []string{A, B}) {
		t.Fatalf("lan tried %v, want exactly A and B", lan.tried)
	}
	lan.close(f.p)
	st := f.p.Status()
	if a := st.Pool("default").Backends[2]; a.Address != A || a.Counters.Refused != 0 || !a.Cooldown.IsZero() || a.Streak != 0 || a.Active != 0 || a.Total != 1 {
		t.Fatalf("default pool's A touched by the lan pool's failures: %+v", a)
	}
	if a := st.Pool("lan").Backends[0]; a.Address != A || a.Streak != 1 || a.Reachable || a.Counters.Refused != 1 || a.Total != 0 {
		t.Fatalf("lan's A after failing %+v", a)
	}

	// Every lan backend cooling down: the last-resort attempt stays in lan.
	last := connect(f.p, "10.0.0.2:1", ok)
	if !last.ok || len(last.tried) != 1 || (last.tried[0] != A && last.tried[0] != B) {
		t.Fatalf("last resort tried %v", last.tried)
	}
	last.close(f.p)
	if st := f.p.Status(); st.Active != 0 || st.NoBackend != 1 {
		t.Fatalf("active %d no backend %d", st.Active, st.NoBackend)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestSharedProber: a server listed in two pools checked the same way is
// probed once a round and both pools get the outcome; a pool that checks
// it differently probes it on its own.
func TestSharedProber(t *testing.T) {
	var mu sync.Mutex
	dialed := map[string]int{}
	dial := func(_ context.Context, _, addr string) (net.Conn, error) {
		mu.Lock()
		dialed[addr]++
		mu.Unlock()
		if addr == A {
			return nil, errRefused
		}
		c1, c2 := net.Pipe()
		c2.Close()
		return c1, nil
	}
	count := func() map[string]int { mu.Lock(); defer mu.Unlock(); return maps(dialed) }
	s := twoPools(nil)
	p := New(s, Options{HealthDial: dial})
	p.CheckNow(t.Context())
	if got := count(); got[A] != 1 || got[B] != 1 || got[C] != 1 || got[D] != 1 {
		t.Fatalf("dials after one round %v, want one each", got)
	}
	st := p.Status()
	for _, pool := range []string{"lan", "default"} {
		for _, b := range st.Pool(pool).Backends {
			if !b.Checked || b.LastCheck.IsZero() || b.Reachable != (b.Address != A) {
				t.Fatalf("pool %s backend %+v after the round", pool, b)
			}
		}
	}

	// The route checks with http: its A is another probe.
	s2 := twoPools(nil)
	s2.Routes[0].HealthCheck = config.HealthCheck{Type: config.CheckHTTP, HTTPPath: "/health"}
	p.Apply(s2)
	p.CheckNow(t.Context())
	if got := count(); got[A] != 3 || got[B] != 2 || got[C] != 2 {
		t.Fatalf("dials after a round with different checks %v, want A twice more", got)
	}
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestApplyKeepsPools: pools are matched by name across a reload; a kept
// pool keeps its backends' state, balancer and match count, a new route
// starts fresh, a removed route's open connection finishes normally, and
// the per-source table with its counts survives (resized).
func TestApplyKeepsPools(t *testing.T) {
	s1 := routed([]config.Route{
		rt("lan", config.Match{Source: prefixes("10.0.0.0/8")}, A, B),
		rt("old", config.Match{Source: prefixes("172.16.0.0/12")}, C),
	}, be("127.0.0.1", 9004, 1))
	s1.Access.MaxConnectionsPerSource = 1
	s1.Runtime.HealthCheckFailThreshold = 100
	f := newFixture(t, s1, Options{})

	failA := connect(f.p, "10.0.0.1:1", failing(map[string]error{A: errRefused})) // A fails, B serves
	held := connect(f.p, "172.16.0.1:1", ok)                                      // on the old route, held over the reload
	if !failA.ok || !held.ok {
		t.Fatal("setup connections failed")
	}
	before := f.p.Status()

	s2 := routed([]config.Route{
		rt("new", config.Match{Source: prefixes("192.168.0.0/16")}, A),
		rt("lan", config.Match{Source: prefixes("10.0.0.0/8", "100.64.0.0/10")}, A, B, E),
	}, be("127.0.0.1", 9004, 1))
	s2.Access.MaxConnectionsPerSource = 1
	s2.Runtime.HealthCheckFailThreshold = 100
	s2.Runtime.SourceTableSize = 1000
	f.p.Apply(s2)
	st := f.p.Status()
	if names := poolNames(st); !slices.Equal(names, []string{"new", "lan", "default"}) {
		t.Fatalf("pools after reload %v", names)
	}
	lan, lan0 := st.Pool("lan"), before.Pool("lan")
	if lan.Matched != lan0.Matched || lan.Backends[0].Counters != lan0.Backends[0].Counters || lan.Backends[0].Streak != 1 ||
		lan.Backends[1].Active != 1 || lan.Backends[2].Checked || len(lan.Match.Source) != 2 {
		t.Fatalf("lan pool lost state: before %+v after %+v", lan0, lan)
	}
	if n := st.Pool("new"); n.Matched != 0 || n.Backends[0].Streak != 0 || n.Backends[0].Counters.Refused != 0 {
		t.Fatalf("new route inherited state: %+v", n)
	}
	if st.Sources == nil || st.Sources.Size != 1000 || st.Sources.Active != 2 {
		t.Fatalf("sources after reload %+v", st.Sources)
	}
	// The per-source count carried over: the held source is still at its limit.
	if c := connect(f.p, "10.0.0.1:2", ok); c.admitted {
		t.Fatal("source over its limit admitted after the reload")
	}
	if c := connect(f.p, "172.16.0.1:2", ok); c.admitted {
		t.Fatal("removed route's source over its limit admitted")
	}
	held.close(f.p)
	failA.close(f.p)
	c := connect(f.p, "172.16.0.1:3", ok) // the removed route's clients now go to the default pool
	if poolOf(c) != "default" {
		t.Fatalf("removed route's client routed to %q", poolOf(c))
	}
	c.close(f.p)
	st = f.p.Status()
	if st.Active != 0 || st.Sources.Active != 0 || st.Sources.StaleReleases != 0 || held.connected.Ref.(interface{ Active() int64 }).Active() != 0 {
		t.Fatalf("after closing: active %d sources %+v", st.Active, st.Sources)
	}
	if got := f.log.lines("route removed"); len(got) != 1 || got[0]["route"] != "old" || got[0]["active_connections"] != 1.0 {
		t.Fatalf("route removed lines %v", got)
	}
	if got := f.log.lines("route added"); len(got) != 1 || got[0]["route"] != "new" {
		t.Fatalf("route added lines %v", got)
	}
	if got := f.log.lines("backend added"); len(got) != 2 { // new's A and lan's E
		t.Fatalf("backend added lines %v", got)
	}
}

// TestApplyRenamesService: the service name of status and log lines
// follows the config.
func TestApplyRenamesService(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, nil, five()[:1]...), Options{})
	s := service(config.RoundRobin, nil, five()[:2]...)
	s.Name = "web"
	f.p.Apply(s)
	if f.p.Status().Service != "web" {
		t.Fatalf("service %q", f.p.Status().Service)
	}
	if l := f.log.lines("backend added"); len(l) != 1 || l[0]["service"] != "web" || l[0]["pool"] != "default" {
		t.Fatalf("lines %v", l)
	}
}

// TestAccessLogKeys: access log lines name the service, the route, the
// inspected name and, behind a PROXY header, the peer.
func TestAccessLogKeys(t *testing.T) {
	s := routed(routingTable(), be("10.0.9.1", 443, 1))
	s.Name = "web"
	s.Runtime.AccessLog = true
	f := newFixture(t, s, Options{})
	c1 := connectHello(f.p, "192.0.2.7:4321", sni("API.example.com"), ok)
	c1.close(f.p)
	c2 := &conn{ci: &engine.ConnInfo{ID: 77, Client: mustAP("203.0.113.5:1000"), Peer: mustAP("10.9.9.9:5000")}}
	if !f.p.Admit(c2.ci) {
		t.Fatal("refused")
	}
	c2.ci.Hello = engine.Hello{Result: engine.InspectNotTLS}
	f.p.Route(c2.ci)
	f.p.Closed(c2.ci, engine.CloseInfo{Reason: engine.CloseClientReset})
	c3 := &engine.ConnInfo{ID: 78, Client: mustAP("203.0.113.6:1000")}
	f.p.Admit(c3)
	c3.Hello.Result = engine.InspectClosed
	f.p.Closed(c3, engine.CloseInfo{Reason: engine.CloseClientGone})

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f.p.RunAccessLog(ctx)
	lines := f.log.lines("connection closed")
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	want := []map[string]any{
		{"service": "web", "route": "exact", "inspect": "sni", "sni": "API.example.com", "client": "192.0.2.7:4321", "backend": "10.0.1.1:443", "reason": "done"},
		{"service": "web", "route": "default", "inspect": "not_tls", "sni": "", "client": "203.0.113.5:1000", "peer": "10.9.9.9:5000", "reason": "client_reset"},
		{"service": "web", "route": "", "inspect": "closed", "client": "203.0.113.6:1000", "reason": "client_closed"},
	}
	for i, w := range want {
		for k, v := range w {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, lines[i][k], v, lines[i])
			}
		}
	}
	if _, ok := lines[0]["peer"]; ok {
		t.Errorf("peer logged although it equals the client: %v", lines[0])
	}
}

// TestConcurrentRoutingWithReloads drives routed traffic from several
// goroutines while reloads swap routes, limits and methods, then checks
// every count came back to zero (run with -race).
func TestConcurrentRoutingWithReloads(t *testing.T) {
	s1 := routed(routingTable(), be("10.0.9.1", 443, 1))
	s2 := routed(routingTable()[2:], be("10.0.9.1", 443, 1), be("10.0.9.2", 443, 1))
	s2.Access.MaxConnectionsPerSource = 3
	s2.Routes[0].Method = config.SourceHash
	s3 := routed(routingTable()[:4])
	s3.Access.Deny = prefixes("192.0.2.128/25")
	s3.Access.ConnectionRatePerSource = rate(t, "1000/s")
	p := New(s1, Options{})
	hellos := []engine.Hello{sni("api.example.com"), sni("x.example.net", "h2"), {Result: engine.InspectNotTLS}, {Result: engine.InspectNoSNI, ALPN: []string{"h3"}}, sni("both.example.org", "acme-tls/1")}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var traffic sync.WaitGroup
	for w := range 4 {
		traffic.Go(func() {
			for i := range 1000 {
				client := netipAP(byte(i), uint16(w))
				c := connectHello(p, client, hellos[(i+w)%len(hellos)], func(engine.Target) error {
					if i%7 == 0 {
						return errRefused
					}
					return nil
				})
				c.close(p)
			}
		})
	}
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			p.Apply([]*config.Service{s1, s2, s3}[i%3])
			_ = p.Status()
			time.Sleep(time.Millisecond)
		}
	})
	traffic.Wait()
	cancel()
	wg.Wait()
	st := p.Status()
	var matched uint64
	for _, ps := range st.Pools {
		matched += ps.Matched
	}
	if st.Active != 0 || st.Total+st.Rejected != 4000 || (st.Sources != nil && st.Sources.Active != 0) {
		t.Fatalf("after traffic: active %d total %d rejected %d sources %+v", st.Active, st.Total, st.Rejected, st.Sources)
	}
	if matched > st.Total {
		t.Fatalf("pools matched %d > total %d", matched, st.Total)
	}
}

func netipAP(last byte, port uint16) string {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, last}), port+1).String()
}

// TestUDPPassiveOnlyNotProbed: a UDP pool without a health_check type is
// not probed, only resolved; one with a type is probed with a datagram.
func TestUDPPassiveOnlyNotProbed(t *testing.T) {
	r := rt("probed", config.Match{Source: prefixes("10.0.0.0/8")}, A)
	r.HealthCheck = config.HealthCheck{Type: config.CheckSendExpect, Send: []byte("ping"), Expect: []byte("pong"), Port: 5353}
	s := routed([]config.Route{r}, be("127.0.0.1", 9002, 1))
	s.Protocol = config.UDP
	s.HealthCheck = config.HealthCheck{}
	p := New(s, Options{})
	round := p.HealthRound()
	if len(round.Backends) != 1 || round.Backends[0].Name() != A {
		t.Fatalf("round %v, want the probed route's A only", round.Backends)
	}
	if !round.UDP || len(round.Checks) != 1 || round.Checks[0].Type != config.CheckSendExpect || string(round.Checks[0].Send) != "ping" || round.Checks[0].Port != 5353 {
		t.Fatalf("round UDP=%v checks %+v, want the route's send_expect as a datagram", round.UDP, round.Checks)
	}
	if len(round.Resolve) != 1 || round.Resolve[0].Name() != "127.0.0.1:9002" {
		t.Fatalf("resolved passively %v, want the default pool's backend", round.Resolve)
	}
	// A TCP service's round has neither.
	s.Protocol = config.TCP
	if round := New(s, Options{}).HealthRound(); round.UDP || round.Resolve != nil {
		t.Fatalf("TCP round UDP=%v, passive %v", round.UDP, round.Resolve)
	}
}
