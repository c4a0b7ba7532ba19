package policy

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
)

// udpService is service() with protocol udp; check is its pools' health
// check ("" type: passive only).
func udpService(m config.Method, check config.HealthCheck, tune func(*config.Runtime), bs ...config.Backend) *config.Service {
	s := service(m, tune, bs...)
	s.Protocol, s.HealthCheck = config.UDP, check
	return s
}

// errICMP is what a flow's socket reports after ICMP port unreachable.
var errICMP = &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("read", syscall.ECONNREFUSED)}

// icmp reports an open flow's ICMP port unreachable and ends the flow, as
// a UDP engine does.
func (c *conn) icmp(p *Policy) {
	p.DialResult(c.ci, c.connected, errICMP, 0)
	p.Closed(c.ci, engine.CloseInfo{Backend: c.connected, Reason: engine.CloseBackendUnreachable})
	c.admitted = false // closed
}

func TestUDPFlowLimitIsMaxUDPFlows(t *testing.T) {
	tests := []struct {
		proto config.Protocol
		want  int // flows admitted of 5
	}{
		{config.UDP, 2},
		{config.TCP, 4},
	}
	for _, tt := range tests {
		t.Run(string(tt.proto), func(t *testing.T) {
			s := service(config.RoundRobin, func(r *config.Runtime) { r.MaxConcurrentConnections, r.MaxUDPFlows = 4, 2 }, five()[:2]...)
			s.Protocol = tt.proto
			f := newFixture(t, s, Options{})
			admitted := 0
			for range 5 {
				if connect(f.p, "192.0.2.1:5000", ok).admitted {
					admitted++
				}
			}
			st := f.p.Status()
			if admitted != tt.want || st.RejectedBy[engine.RejectLimit] != uint64(5-tt.want) || st.Total != uint64(tt.want) {
				t.Fatalf("admitted %d (total %d, rejected %d), want %d", admitted, st.Total, st.RejectedBy[engine.RejectLimit], tt.want)
			}
		})
	}
}

// TestUDPConnectIsNotSuccess: a flow's connect only counts it on its
// backend; ICMP is a refused failure whose streak the next flow's connect
// does not reset; the first reply is the success.
func TestUDPConnectIsNotSuccess(t *testing.T) {
	f := newFixture(t, udpService(config.RoundRobin, config.HealthCheck{}, func(r *config.Runtime) { r.HealthCheckFailThreshold = 100 }, five()[:1]...), Options{})
	c := connect(f.p, "192.0.2.1:5000", ok)
	if st := f.backend(t, A); st.Active != 1 || st.Total != 1 || st.Checked {
		t.Fatalf("after a flow's connect: %+v (a connect must not count as a health outcome)", st)
	}
	c.icmp(f.p)
	st := f.backend(t, A)
	if st.Active != 0 || st.Counters.Refused != 1 || st.Streak != 1 || st.Cooldown.IsZero() || !st.Checked {
		t.Fatalf("after ICMP: %+v", st)
	}
	// The next flow (after the cooldown) does not wipe the streak: the
	// backoff keeps growing while only ICMP comes back.
	for want := uint32(2); want <= 4; want++ {
		f.clk.Advance(time.Minute)
		c = connect(f.p, "192.0.2.1:5001", ok)
		if !c.ok {
			t.Fatalf("flow %d not opened", want)
		}
		c.icmp(f.p)
		if st := f.backend(t, A); st.Streak != want {
			t.Fatalf("streak %d after %d ICMPs", st.Streak, want)
		}
	}
	f.clk.Advance(time.Minute)
	c = connect(f.p, "192.0.2.1:5002", ok)
	f.p.Replied(c.ci)
	if st := f.backend(t, A); st.Streak != 0 || !st.Cooldown.IsZero() || !st.Reachable {
		t.Fatalf("after a reply: %+v", st)
	}
	c.close(f.p)
	if st := f.backend(t, A); st.Active != 0 || st.Total != 5 {
		t.Fatalf("at the end: %+v", st)
	}
}

// TestUDPPassivePool: without an active check, ICMP marks a backend down
// and cools it down; once the cooldown ends it is picked again in its turn
// (nothing else would ever find it alive), and its reply brings it up.
func TestUDPPassivePool(t *testing.T) {
	f := newFixture(t, udpService(config.RoundRobin, config.HealthCheck{}, nil, five()[:2]...), Options{})
	// Two flows to B that get ICMP.
	for down := 0; down < 2; {
		c := connect(f.p, "192.0.2.1:5000", ok)
		if c.connected.Name != B {
			f.p.Replied(c.ci)
			c.close(f.p)
			continue
		}
		c.icmp(f.p)
		if down++; down < 2 {
			f.clk.Advance(time.Minute) // past the cooldown, for B's second flow
		}
	}
	if st := f.backend(t, B); st.Reachable || st.Cooldown.IsZero() {
		t.Fatalf("B after 2 ICMPs: %+v, want down and cooling down", st)
	}
	// Down and cooling down: every flow goes to A.
	for range 4 {
		c := connect(f.p, "192.0.2.1:5001", ok)
		if c.connected.Name != A {
			t.Fatalf("a flow went to %s while B cools down", c.connected.Name)
		}
		f.p.Replied(c.ci)
		c.close(f.p)
	}
	// Cooldown over: B, still down, is picked in its turn, and its reply
	// brings it back up.
	f.clk.Advance(time.Minute)
	seen := false
	for range 2 {
		c := connect(f.p, "192.0.2.1:5002", ok)
		seen = seen || c.connected.Name == B
		f.p.Replied(c.ci)
		c.close(f.p)
	}
	if !seen {
		t.Fatal("B never picked after its cooldown in a passive pool")
	}
	if st := f.backend(t, B); !st.Reachable || st.Streak != 0 {
		t.Fatalf("B after a reply: %+v", st)
	}
}

// TestUDPActivePoolSkipsDownBackend: with a send_expect check, a backend
// marked down is left to the checks, as on TCP.
func TestUDPActivePoolSkipsDownBackend(t *testing.T) {
	check := config.HealthCheck{Type: config.CheckSendExpect, Send: []byte("ping"), Expect: []byte("pong")}
	f := newFixture(t, udpService(config.RoundRobin, check, nil, five()[:2]...), Options{})
	for i := 0; f.backend(t, B).Reachable; i++ {
		if i > 10 {
			t.Fatalf("B still up after ICMP: %+v", f.backend(t, B))
		}
		c := connect(f.p, "192.0.2.1:5000", ok)
		if c.connected.Name == B {
			c.icmp(f.p)
			f.clk.Advance(time.Minute) // past the cooldown
			continue
		}
		f.p.Replied(c.ci)
		c.close(f.p)
	}
	f.clk.Advance(time.Hour)
	for range 6 {
		c := connect(f.p, "192.0.2.1:5001", ok)
		if c.connected.Name != A {
			t.Fatalf("a flow went to %s, which is down", c.connected.Name)
		}
		c.close(f.p)
	}
}

func TestUDPLeastConnectionsCountsFlows(t *testing.T) {
	f := newFixture(t, udpService(config.LeastConnections, config.HealthCheck{}, nil, five()[:2]...), Options{})
	var held []*conn
	for range 4 {
		held = append(held, connect(f.p, "192.0.2.1:5000", ok))
	}
	for _, c := range held {
		if c.connected.Name == A {
			c.close(f.p)
		}
	}
	for range 2 {
		if c := connect(f.p, "192.0.2.1:5001", ok); c.connected.Name != A {
			t.Fatalf("flow went to %s, A has the fewest flows", c.connected.Name)
		}
	}
	if st := f.p.Status(); st.Active != 4 {
		t.Fatalf("%d active flows, want 4", st.Active)
	}
}
