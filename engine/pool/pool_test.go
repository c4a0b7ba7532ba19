package pool

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
)

func cfg(host string, port, weight int) config.Backend {
	return config.Backend{Host: host, Port: port, Weight: weight}
}

func TestNewBackend(t *testing.T) {
	tests := []struct {
		c       config.Backend
		key     string
		name    string
		resolve bool
		addrs   []netip.AddrPort
		weight  int
	}{
		{cfg("127.0.0.1", 9000, 3), "127.0.0.1:9000", "127.0.0.1:9000", false,
			[]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9000")}, 3},
		{cfg("0:0::1", 80, 0), "[::1]:80", "[0:0::1]:80", false,
			[]netip.AddrPort{netip.MustParseAddrPort("[::1]:80")}, 1},
		{cfg("::ffff:10.0.0.1", 81, 1), "10.0.0.1:81", "[::ffff:10.0.0.1]:81", false,
			[]netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:81")}, 1},
		{cfg("App-A.internal", 9100, 256), "app-a.internal:9100", "App-A.internal:9100", true, nil, 256},
	}
	for _, tt := range tests {
		b := NewBackend(tt.c)
		if b.Key() != tt.key || b.Name() != tt.name || b.NeedsResolve() != tt.resolve || b.Weight() != tt.weight {
			t.Errorf("%v: key %q name %q resolve %v weight %d", tt.c, b.Key(), b.Name(), b.NeedsResolve(), b.Weight())
		}
		if !slices.Equal(b.Addrs(), tt.addrs) {
			t.Errorf("%v: addrs %v, want %v", tt.c, b.Addrs(), tt.addrs)
		}
		if h := b.Health(); h != Unknown || !b.Up() {
			t.Errorf("%v: new backend health %+v", tt.c, h)
		}
	}
}

func TestBackendCooldownAndRecovery(t *testing.T) {
	b := NewBackend(cfg("127.0.0.1", 1, 1))
	k := Backoff{Initial: 100, Max: 1000, Cooldown: 0}
	now := int64(1_000)
	if d := b.Failed(now, k); d != 100 || !b.InCooldown(now+99) || b.InCooldown(now+100) {
		t.Fatalf("first failure: cooldown %v until %d", d, b.CooldownUntil())
	}
	if d := b.Failed(now, k); d != 200 || b.Streak() != 2 {
		t.Fatalf("second failure: cooldown %v streak %d", d, b.Streak())
	}
	b.Connected()
	if b.Streak() != 0 || b.InCooldown(now) || b.Active() != 1 || b.Total() != 1 {
		t.Fatalf("after success: streak %d cooldown %d active %d total %d", b.Streak(), b.CooldownUntil(), b.Active(), b.Total())
	}
	b.Release()
	if b.Active() != 0 || b.Total() != 1 {
		t.Fatalf("after release: active %d total %d", b.Active(), b.Total())
	}

	// Down through observations, then back up: cooldown and streak cleared.
	b.Failed(now, k)
	b.Failed(now, k)
	if ch := b.Observe(false, 2, 1); ch != ChangeDown || b.Up() {
		t.Fatalf("observe failure: %v up=%v", ch, b.Up())
	}
	if ch := b.Observe(true, 2, 1); ch != ChangeNone || !b.InCooldown(now) {
		t.Fatalf("one success of two: %v, cooldown kept=%v", ch, b.InCooldown(now))
	}
	if ch := b.Observe(true, 2, 1); ch != ChangeUp || b.InCooldown(now) || b.Streak() != 0 {
		t.Fatalf("recovered: %v cooldown %d streak %d", ch, b.CooldownUntil(), b.Streak())
	}
}

func TestBackendCounters(t *testing.T) {
	b := NewBackend(cfg("127.0.0.1", 1, 1))
	for _, r := range []engine.FailReason{engine.FailTimeout, engine.FailRefused, engine.FailRefused, engine.FailOther, engine.FailOther, engine.FailOther} {
		b.CountFailure(r)
	}
	if got := b.Counters(); got != (Counters{Timeout: 1, Refused: 2, Other: 3}) {
		t.Fatalf("counters %+v", got)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	if !b.LastCheck().IsZero() {
		t.Fatal("last check set before any check")
	}
	b.SetLastCheck(at)
	if !b.LastCheck().Equal(at) {
		t.Fatalf("last check %v", b.LastCheck())
	}
}

func TestPoolReuse(t *testing.T) {
	p1, added, removed := New("web", []config.Backend{cfg("127.0.0.1", 1, 1), cfg("::1", 2, 1), cfg("b.example", 3, 1)}, nil)
	if len(added) != 3 || len(removed) != 0 || p1.Len() != 3 {
		t.Fatalf("first pool: %d added %d removed len %d", len(added), len(removed), p1.Len())
	}
	kept := p1.Lookup("[::1]:2")
	kept.Connected()
	kept.Observe(false, 1, 1)
	gone := p1.At(0)
	gone.Connected()

	p2, added, removed := New("web", []config.Backend{cfg("B.example", 3, 1), cfg("0::1", 2, 7), cfg("127.0.0.2", 1, 1)}, p1)
	if len(added) != 1 || added[0].Key() != "127.0.0.2:1" {
		t.Fatalf("added %v", added)
	}
	if len(removed) != 1 || removed[0] != gone {
		t.Fatalf("removed %v", removed)
	}
	if p2.At(1) != kept || kept.Weight() != 7 || kept.Active() != 1 || kept.Up() {
		t.Fatalf("kept backend lost state: same=%v weight %d active %d up %v", p2.At(1) == kept, kept.Weight(), kept.Active(), kept.Up())
	}
	if p2.Name() != "web" || added[0].Pool() != "web" || kept.Pool() != "web" || NewBackend(cfg("127.0.0.1", 1, 1)).Pool() != "" {
		t.Fatalf("pool names: pool %q added %q kept %q", p2.Name(), added[0].Pool(), kept.Pool())
	}
	if p2.At(0) != p1.At(2) {
		t.Fatal("hostname backend with different case not kept")
	}
	if !slices.Equal(p2.Keys(), []string{"b.example:3", "[::1]:2", "127.0.0.2:1"}) || !slices.Equal(p2.Weights(), []int{1, 7, 1}) {
		t.Fatalf("keys %v weights %v", p2.Keys(), p2.Weights())
	}
	gone.Release() // a connection of a removed backend finishing is safe
	if gone.Active() != 0 || p2.Index("127.0.0.1:1") != -1 {
		t.Fatal("removed backend")
	}
	var nilPool *Pool
	if nilPool.Len() != 0 || nilPool.Lookup("x") != nil || nilPool.Backends() != nil {
		t.Fatal("nil pool")
	}
}

func TestBackendConcurrent(t *testing.T) {
	b := NewBackend(cfg("127.0.0.1", 1, 1))
	const workers, n = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range n {
				b.Connected()
				b.Observe(i%2 == 0, 1, 1)
				b.CountFailure(engine.FailReason(w % 3))
				b.Release()
			}
		})
	}
	wg.Wait()
	c := b.Counters()
	if b.Active() != 0 || b.Total() != workers*n || c.Timeout+c.Refused+c.Other != workers*n {
		t.Fatalf("active %d total %d counters %+v", b.Active(), b.Total(), c)
	}
	if h := b.Health(); !h.Known || h.Fails+h.Successes == 0 {
		t.Fatalf("health %+v", h)
	}
}

func BenchmarkBackendConnectedRelease(b *testing.B) {
	be := NewBackend(cfg("127.0.0.1", 1, 1))
	b.ReportAllocs()
	for b.Loop() {
		be.Connected()
		be.Release()
	}
}

func BenchmarkBackendObserve(b *testing.B) {
	be := NewBackend(cfg("127.0.0.1", 1, 1))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		be.Observe(i&3 != 0, 2, 2)
	}
}

func BenchmarkBackendFailed(b *testing.B) {
	be := NewBackend(cfg("127.0.0.1", 1, 1))
	k := Backoff{Initial: time.Millisecond, Max: time.Second, Cooldown: time.Millisecond}
	b.ReportAllocs()
	var now int64
	for b.Loop() {
		now++
		be.CountFailure(engine.FailRefused)
		be.Failed(now, k)
	}
}
