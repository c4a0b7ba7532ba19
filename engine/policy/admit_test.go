package policy

import (
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/access"
	"github.com/bal-lb/bal/engine/config"
)

func rate(t *testing.T, s string) access.Rate {
	t.Helper()
	r, err := access.ParseRate(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestACL: deny wins over allow; with an allow list only its addresses
// pass; IPv4-mapped clients are judged by the IPv4 rules.
func TestACL(t *testing.T) {
	both := config.Access{Allow: prefixes("10.0.0.0/8", "2001:db8::/32"), Deny: prefixes("10.1.0.0/16", "10.2.3.4/32")}
	denyOnly := config.Access{Deny: prefixes("192.0.2.0/24", "2001:db8:bad::/48")}
	allowV6 := config.Access{Allow: prefixes("::/0")}
	tests := []struct {
		name   string
		acl    config.Access
		client string
		want   bool
	}{
		{"in allow", both, "10.0.0.1:1", true},
		{"in allow and deny: deny wins", both, "10.1.2.3:1", false},
		{"a denied single address", both, "10.2.3.4:1", false},
		{"next to a denied address", both, "10.2.3.5:1", true},
		{"in no allow entry", both, "192.0.2.1:1", false},
		{"mapped client in an IPv4 allow", both, "[::ffff:10.0.0.1]:1", true},
		{"mapped client in an IPv4 deny", both, "[::ffff:10.1.0.1]:1", false},
		{"v6 in allow", both, "[2001:db8::1]:1", true},
		{"v6 outside allow", both, "[2001:db9::1]:1", false},
		{"deny only: denied", denyOnly, "192.0.2.200:1", false},
		{"deny only: mapped denied", denyOnly, "[::ffff:192.0.2.1]:1", false},
		{"deny only: others pass", denyOnly, "198.51.100.1:1", true},
		{"deny only: v6 denied", denyOnly, "[2001:db8:bad:1::1]:1", false},
		{"deny only: v6 passes", denyOnly, "[2001:db8:bae::1]:1", true},
		{"::/0 allows native v6", allowV6, "[2001:db8::1]:1", true},
		{"::/0 does not allow mapped v4", allowV6, "[::ffff:10.0.0.1]:1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := service(config.RoundRobin, nil, five()[:1]...)
			s.Access = tt.acl
			f := newFixture(t, s, Options{})
			c := connect(f.p, tt.client, ok)
			defer c.close(f.p)
			if c.admitted != tt.want {
				t.Fatalf("admitted %v, want %v", c.admitted, tt.want)
			}
			st := f.p.Status()
			if !tt.want && (st.RejectedBy[engine.RejectACL] != 1 || st.Total != 0 || st.Active != 0) {
				t.Fatalf("refused: acl %d total %d active %d", st.RejectedBy[engine.RejectACL], st.Total, st.Active)
			}
			if tt.want && (st.Rejected != 0 || st.Total != 1) {
				t.Fatalf("admitted: rejected %d total %d", st.Rejected, st.Total)
			}
		})
	}
}

// TestSourceLimit: max_connections_per_source counts open connections per
// IPv4 address and IPv6 /64; a closed connection frees its place; other
// sources are not affected.
func TestSourceLimit(t *testing.T) {
	s := service(config.RoundRobin, nil, five()[:1]...)
	s.Access.MaxConnectionsPerSource = 2
	f := newFixture(t, s, Options{})
	steps := []struct {
		client string
		want   bool
	}{
		{"192.0.2.1:1", true},
		{"192.0.2.1:2", true},
		{"192.0.2.1:3", false}, // third from the address
		{"[::ffff:192.0.2.1]:4", false},
		{"192.0.2.2:1", true}, // another source
		{"[2001:db8::1]:1", true},
		{"[2001:db8::2]:1", true}, // same /64
		{"[2001:db8::3]:1", false},
		{"[2001:db8:0:1::1]:1", true}, // next /64
	}
	var open []*conn
	for i, s := range steps {
		c := connect(f.p, s.client, ok)
		if c.admitted != s.want {
			t.Fatalf("step %d (%s): admitted %v, want %v", i, s.client, c.admitted, s.want)
		}
		if c.admitted {
			open = append(open, c)
		}
	}
	st := f.p.Status()
	if st.RejectedBy[engine.RejectSourceLimit] != 3 || st.Sources == nil || st.Sources.Active != 4 || st.Active != int64(len(open)) {
		t.Fatalf("source_limit %d sources %+v active %d", st.RejectedBy[engine.RejectSourceLimit], st.Sources, st.Active)
	}
	open[0].close(f.p) // 192.0.2.1 has one place again
	c := connect(f.p, "192.0.2.1:5", ok)
	if !c.admitted {
		t.Fatal("source refused after one of its connections closed")
	}
	open = append(open[1:], c)
	for _, c := range open {
		c.close(f.p)
	}
	if st := f.p.Status(); st.Sources.Active != 0 || st.Sources.StaleReleases != 0 || st.Active != 0 {
		t.Fatalf("after closing everything: %+v active %d", st.Sources, st.Active)
	}
}

// TestSourceRate: connection_rate_per_source is a token bucket per source
// on the policy's clock, with a burst of the rate's count.
func TestSourceRate(t *testing.T) {
	s := service(config.RoundRobin, nil, five()[:1]...)
	s.Access.ConnectionRatePerSource = rate(t, "2/s")
	f := newFixture(t, s, Options{})
	try := func(client string) bool {
		c := connect(f.p, client, ok)
		c.close(f.p)
		return c.admitted
	}
	steps := []struct {
		advance time.Duration
		client  string
		want    bool
	}{
		{0, "192.0.2.1:1", true},
		{0, "192.0.2.1:2", true},
		{0, "192.0.2.1:3", false}, // burst of 2 spent
		{0, "192.0.2.2:1", true},  // another source has its own bucket
		{250 * time.Millisecond, "192.0.2.1:4", false},
		{250 * time.Millisecond, "192.0.2.1:5", true}, // one token after 500 ms
		{0, "192.0.2.1:6", false},
		{10 * time.Second, "192.0.2.1:7", true}, // full again, and never more than the burst
		{0, "192.0.2.1:8", true},
		{0, "192.0.2.1:9", false},
	}
	for i, s := range steps {
		f.clk.Advance(s.advance)
		if got := try(s.client); got != s.want {
			t.Fatalf("step %d (%s): admitted %v, want %v", i, s.client, got, s.want)
		}
	}
	if st := f.p.Status(); st.RejectedBy[engine.RejectSourceRate] != 4 || st.Rejected != 4 || st.Total != 6 {
		t.Fatalf("by reason %v total %d", st.RejectedBy, st.Total)
	}
}

// TestAdmissionOrder: a client refused at one step consumes nothing of the
// later ones — a denied client takes no token and no slot, a
// source-limited one takes no token, one refused for max_concurrent gives
// its per-source place back.
func TestAdmissionOrder(t *testing.T) {
	t.Run("denied takes no token and no slot", func(t *testing.T) {
		s := service(config.RoundRobin, func(r *config.Runtime) { r.MaxConcurrentConnections = 1 }, five()[:1]...)
		s.Access.ConnectionRatePerSource = rate(t, "2/m")
		s.Access.Deny = prefixes("192.0.2.66/32")
		f := newFixture(t, s, Options{})
		for range 5 {
			if c := connect(f.p, "192.0.2.66:1", ok); c.admitted {
				t.Fatal("denied client admitted")
			}
		}
		if st := f.p.Status(); st.Active != 0 || st.Sources.Entries != 0 || st.RejectedBy[engine.RejectACL] != 5 {
			t.Fatalf("denied clients left active %d, %d source entries", st.Active, st.Sources.Entries)
		}
		s2 := *s
		s2.Access.Deny = nil
		f.p.Apply(&s2)
		for i := range 2 { // the full burst: the denied attempts took no token
			c := connect(f.p, "192.0.2.66:1", ok)
			if !c.admitted {
				t.Fatalf("attempt %d after the deny was lifted refused", i)
			}
			c.close(f.p)
		}
		if c := connect(f.p, "192.0.2.66:1", ok); c.admitted {
			t.Fatal("third attempt within the minute admitted")
		}
	})
	t.Run("source-limited takes no token", func(t *testing.T) {
		s := service(config.RoundRobin, nil, five()[:1]...)
		s.Access.MaxConnectionsPerSource = 1
		s.Access.ConnectionRatePerSource = rate(t, "2/m")
		f := newFixture(t, s, Options{})
		held := connect(f.p, "192.0.2.1:1", ok) // token 1 of 2
		for range 5 {
			if c := connect(f.p, "192.0.2.1:2", ok); c.admitted {
				t.Fatal("second connection of a source limited to 1 admitted")
			}
		}
		held.close(f.p)
		c := connect(f.p, "192.0.2.1:3", ok) // token 2 of 2: the refused ones took none
		if !c.admitted {
			t.Fatalf("refused after the held connection closed: %v", f.p.Status().RejectedBy)
		}
		c.close(f.p)
		if c := connect(f.p, "192.0.2.1:4", ok); c.admitted {
			t.Fatal("third token within the minute")
		}
		st := f.p.Status()
		if st.RejectedBy[engine.RejectSourceLimit] != 5 || st.RejectedBy[engine.RejectSourceRate] != 1 {
			t.Fatalf("by reason %v", st.RejectedBy)
		}
	})
	t.Run("limit refusal gives the source place back", func(t *testing.T) {
		s := service(config.RoundRobin, func(r *config.Runtime) { r.MaxConcurrentConnections = 1 }, five()[:1]...)
		s.Access.MaxConnectionsPerSource = 1
		f := newFixture(t, s, Options{})
		held := connect(f.p, "192.0.2.9:1", ok)
		for range 3 {
			if c := connect(f.p, "192.0.2.1:1", ok); c.admitted {
				t.Fatal("admitted over max_concurrent_connections")
			}
		}
		held.close(f.p)
		c := connect(f.p, "192.0.2.1:2", ok)
		if !c.admitted {
			t.Fatalf("refused once a slot was free: %v", f.p.Status().RejectedBy)
		}
		c.close(f.p)
		st := f.p.Status()
		if st.RejectedBy[engine.RejectLimit] != 3 || st.RejectedBy[engine.RejectSourceLimit] != 0 || st.Sources.Active != 0 {
			t.Fatalf("by reason %v sources %+v", st.RejectedBy, st.Sources)
		}
	})
}

// TestRejectLogSample: each reason's line carries the count and a sample
// client of the refusals since its last line.
func TestRejectLogSample(t *testing.T) {
	s := service(config.RoundRobin, nil, five()[:1]...)
	s.Access.Deny = prefixes("192.0.2.0/24")
	f := newFixture(t, s, Options{})
	connect(f.p, "192.0.2.1:1", ok) // logged at once
	connect(f.p, "192.0.2.2:1", ok)
	connect(f.p, "192.0.2.3:1", ok)
	f.p.Refused(&engine.ConnInfo{Peer: mustAP("198.51.100.7:9")}, engine.RejectProxyHeader)
	f.clk.Advance(time.Second)
	connect(f.p, "192.0.2.4:1", ok)
	lines := f.log.lines("rejecting connections")
	if len(lines) != 3 {
		t.Fatalf("lines %v", lines)
	}
	if l := lines[0]; l["reason"] != "acl" || l["count"] != 1.0 || l["sample_client"] != "192.0.2.1:1" || l["service"] != "default" {
		t.Fatalf("first line %v", l)
	}
	got := map[string]map[string]any{}
	for _, l := range lines[1:] {
		got[l["reason"].(string)] = l
	}
	if l := got["acl"]; l == nil || l["count"] != 3.0 || l["sample_client"] != "192.0.2.2:1" {
		t.Fatalf("acl line a second later %v", l)
	}
	if l := got["proxy_header"]; l == nil || l["count"] != 1.0 || l["sample_client"] != "198.51.100.7:9" {
		t.Fatalf("proxy_header line %v", l)
	}
}
