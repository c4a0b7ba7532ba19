package main

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/enginetest"
)

// Black-box tests of the balancing methods: the real binary, backends
// that answer with their own name so each client knows where it landed.

// TestBalanceWeights: weights 3 and 1 give a 3:1 split, within 5 % of the
// 75 % share. round_robin is measured over short connections; the two
// load-aware methods over connections held open, since what they weigh is
// open connections (a short connection that just ended may still be open in
// bal's count when the next one arrives: bal waits for the client's FIN).
func TestBalanceWeights(t *testing.T) {
	tests := []struct {
		method string
		n      int
		held   bool
	}{
		{"round_robin", 400, false},
		{"least_connections", 80, true},
		{"random_two", 80, true},
	}
	for _, eng := range baltest.Engines() {
		for _, tt := range tests {
			t.Run(eng+"/"+tt.method, func(t *testing.T) {
				a := enginetest.NewBackend(t, nameThenHold("a"))
				b := enginetest.NewBackend(t, nameThenHold("b"))
				if !tt.held {
					a, b = named(t, "a"), named(t, "b")
				}
				p, _ := startShortDrain(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, Method: tt.method,
					Backends: []string{a.Addr.String() + " 3", b.Addr.String() + " 1"}})
				got := map[string]int{}
				if tt.held {
					for range tt.n {
						_, name := holdOpen(t, p.Addr())
						got[name]++
					}
				} else {
					got = distribution(t, p.Addr(), tt.n)
				}
				share := float64(got["a"]) / float64(tt.n)
				t.Logf("%d connections (held: %v): %s", tt.n, tt.held, shares(got, "a", "b"))
				if got["a"]+got["b"] != tt.n || share < 0.75*0.95 || share > 0.75*1.05 {
					t.Fatalf("weights 3:1 gave %s, want a's share within 5 %% of 75 %%", shares(got, "a", "b"))
				}
			})
		}
	}
}

// TestBalanceLeastConnectionsFollowsHeld: connections held on one backend
// send the new ones to the other until the counts are even again.
func TestBalanceLeastConnectionsFollowsHeld(t *testing.T) {
	for _, eng := range baltest.Engines() {
		t.Run(eng, func(t *testing.T) {
			a := enginetest.NewBackend(t, nameThenHold("a"))
			b := enginetest.NewBackend(t, nameThenHold("b"))
			p, _ := startShortDrain(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, Method: "least_connections",
				Backends: []string{a.Addr.String(), b.Addr.String()}})
			// Six held connections alternate: three on each backend.
			held := map[string][]net.Conn{}
			for range 6 {
				c, name := holdOpen(t, p.Addr())
				held[name] = append(held[name], c)
			}
			if len(held["a"]) != 3 || len(held["b"]) != 3 {
				t.Fatalf("6 held connections went a %d, b %d; want 3/3", len(held["a"]), len(held["b"]))
			}
			// Release b's three: a holds 3, b none. The next three all go
			// to b, whatever the round-robin tie-break would say.
			for _, c := range held["b"] {
				releaseHeld(t, c)
			}
			// bal counts the connection closed right after it closed ours.
			time.Sleep(100 * time.Millisecond)
			for i := range 3 {
				if _, name := holdOpen(t, p.Addr()); name != "b" {
					t.Fatalf("new connection %d went to %s with a holding 3 and b %d; want b", i, name, i)
				}
			}
			// Now 3/3 again; release two of a's: the next two go to a.
			for _, c := range held["a"][:2] {
				releaseHeld(t, c)
			}
			time.Sleep(100 * time.Millisecond)
			for i := range 2 {
				if _, name := holdOpen(t, p.Addr()); name != "a" {
					t.Fatalf("new connection %d went to %s with a holding %d and b 3; want a", i, name, 1+i)
				}
			}
		})
	}
}

// TestBalanceSourceHash: two independent bal processes with the same backend
// list send each of 1,000 client addresses to the same backend; removing one
// of the four backends (a reload) moves at most 30 % of the clients, and
// almost only those of the removed backend.
func TestBalanceSourceHash(t *testing.T) {
	const clients = 1000
	for _, eng := range baltest.Engines() {
		t.Run(eng, func(t *testing.T) {
			names := []string{"a", "b", "c", "d"}
			var addrs []string
			for _, n := range names {
				addrs = append(addrs, named(t, n).Addr.String())
			}
			cfg := baltest.Config{Engine: eng, Method: "source_hash", Backends: addrs}
			cfg.Port = baltest.FreePort(t)
			p1, _ := startShortDrain(t, cfg)
			cfg.Port = baltest.FreePort(t)
			p2, path2 := startShortDrain(t, cfg)

			m1 := sourceMap(t, p1.Addr(), clients)
			m2 := sourceMap(t, p2.Addr(), clients)
			per := map[string]int{}
			for i := range clients {
				if m1[i] != m2[i] {
					t.Fatalf("client %s: instance 1 sent it to %s, instance 2 to %s", clientAddr(i), m1[i], m2[i])
				}
				per[m1[i]]++
			}
			t.Logf("%d clients mapped identically by two processes: %s", clients, shares(per, names...))
			for _, n := range names {
				if per[n] < clients/8 {
					t.Fatalf("backend %s got %d of %d clients: the hash does not spread (%v)", n, per[n], clients, per)
				}
			}

			// Remove c from instance 2 with a reload.
			cfg.Backends = []string{addrs[0], addrs[1], addrs[3]}
			cfg.Runtime = shortDrain
			baltest.WriteFile(t, path2, cfg.String())
			if e := p2.Reload(nil); e.Msg != "reloaded" {
				t.Fatalf("reload: %s", e.Msg)
			}
			after := sourceMap(t, p2.Addr(), clients)
			moved, movedOthers := 0, 0
			for i := range clients {
				if after[i] == "c" {
					t.Fatalf("client %s still sent to the removed backend", clientAddr(i))
				}
				if after[i] != m1[i] {
					moved++
					if m1[i] != "c" {
						movedOthers++
					}
				}
			}
			t.Logf("removing c (%d clients) remapped %d of %d clients (%.1f %%); %d of them were not c's",
				per["c"], moved, clients, 100*float64(moved)/clients, movedOthers)
			if moved > clients*30/100 {
				t.Fatalf("removing one of 4 backends remapped %d of %d clients (> 30 %%)", moved, clients)
			}
			if movedOthers > clients*5/100 {
				t.Fatalf("removing c moved %d clients of the other backends", movedOthers)
			}
		})
	}
}

// clientAddr is client i's source address: distinct addresses in 127/8,
// all of which are loopback on Linux.
func clientAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 20, byte(i / 250), byte(1 + i%250)})
}

// sourceMap connects once from each of n client addresses (8 at a time) and
// returns the backend name each reached.
func sourceMap(t *testing.T, addr string, n int) []string {
	t.Helper()
	out := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				out[i], errs[i] = baltest.WhoFrom(clientAddr(i), addr)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("client %s: %v", clientAddr(i), err)
		}
	}
	return out
}
