package balance

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/bal-lb/bal/engine/config"
)

// clientHash is the hash of the k-th test client address.
func clientHash(k int) uint64 {
	return HashAddr(netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)}))
}

func TestWeightedDistribution(t *testing.T) {
	const picks = 4000
	keys := []string{"127.0.0.1:9000", "127.0.0.1:9100"}
	weights := []int{3, 1}
	for _, m := range []config.Method{config.RoundRobin, config.LeastConnections, config.RandomTwo, config.SourceHash} {
		t.Run(string(m), func(t *testing.T) {
			b := New(m, keys, weights)
			if r, ok := b.(*RandomTwo); ok {
				r.rnd = seeded(1)
			}
			c := counts(b, newView(2), picks, 2, clientHash)
			want := picks * 3 / 4
			if d := c[0] - want; d < -want/20 || d > want/20 {
				t.Fatalf("picks %v: backend 0 got %d, want %d ± 5%%", c, c[0], want)
			}
			if c[0]+c[1] != picks {
				t.Fatalf("picks %v do not add up to %d", c, picks)
			}
		})
	}
}

func TestNoEligibleBackend(t *testing.T) {
	for _, m := range []config.Method{config.RoundRobin, config.LeastConnections, config.RandomTwo, config.SourceHash} {
		t.Run(string(m), func(t *testing.T) {
			v := newView(3)
			v.down[0], v.down[1], v.down[2] = true, true, true
			b := New(m, []string{"a:1", "b:1", "c:1"}, []int{1, 2, 256})
			if i, ok := b.Pick(v, 42); ok {
				t.Fatalf("picked %d with every backend ineligible", i)
			}
			v.down[1] = false
			for range 20 {
				if i, ok := b.Pick(v, 42); !ok || i != 1 {
					t.Fatalf("only backend 1 eligible, picked %d %v", i, ok)
				}
			}
			empty := New(m, nil, nil)
			if _, ok := empty.Pick(newView(0), 1); ok {
				t.Fatal("empty balancer picked")
			}
		})
	}
}

func TestNewMethods(t *testing.T) {
	tests := []struct {
		m    config.Method
		want string
	}{
		{config.RoundRobin, "*balance.RoundRobin"},
		{config.LeastConnections, "*balance.LeastConnections"},
		{config.RandomTwo, "*balance.RandomTwo"},
		{config.SourceHash, "*balance.SourceHash"},
		{"bogus", "*balance.RoundRobin"},
	}
	for _, tt := range tests {
		if got := fmt.Sprintf("%T", New(tt.m, []string{"a:1"}, []int{1})); got != tt.want {
			t.Errorf("New(%q) = %s, want %s", tt.m, got, tt.want)
		}
	}
}

func TestHashAddr(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.7")
	mapped := netip.MustParseAddr("::ffff:192.0.2.7")
	if HashAddr(v4) != HashAddr(mapped) {
		t.Fatal("IPv4 and IPv4-mapped IPv6 hash differently")
	}
	if HashAddr(v4) == HashAddr(netip.MustParseAddr("192.0.2.8")) {
		t.Fatal("neighbouring addresses collide")
	}
	if HashAddr(netip.MustParseAddr("fe80::1%eth0")) != HashAddr(netip.MustParseAddr("fe80::1")) {
		t.Fatal("zone changes the hash")
	}
}
