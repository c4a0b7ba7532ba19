//go:build linux

package health_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// Test 11: backend B (its own process) is killed, stays DOWN (fast 3 s,
// soak 30 s), and is started again under a steady load. Pass: B UP within
// i×r + 1 s; in the first 5 s after UP B's share of new connections is at
// most 1/3 + 5 points (round robin must not "catch up"); B's cooldown and
// failover streak are cleared once it is UP. bal has no slow start (docs/design.md#health-checks
// §3.4), so the ramp part of the research figure does not apply: B gets its
// plain 1/3 at once.
func TestRecoveryWithoutHerd(t *testing.T) {
	eng := baltest.Engines()[0]
	rate := baltest.Pick(300, 500)
	downFor := baltest.Pick(3*time.Second, 30*time.Second)
	const window = 5 * time.Second
	a := baltest.NewBackend(t, baltest.NameEcho("a"))
	c := baltest.NewBackend(t, baltest.NameEcho("c"))
	b := baltest.StartProcBackend(t, "b", fmt.Sprintf("127.0.0.1:%d", baltest.FreePort(t)), "")
	cfg := baltest.Config{Port: baltest.FreePort(t), Engine: eng, LogLevel: "info", Backends: []string{a.Addr(), b.Addr(), c.Addr()}, Runtime: defaultRuntime()}
	p := baltest.Start(t, cfg)

	load := baltest.StartLoad(t, p.Addr(), baltest.LoadOptions{Rate: rate})
	time.Sleep(500 * time.Millisecond)
	from := p.LogCount()
	killed := time.Now()
	b.Kill()
	gone := time.Now()
	p.WaitLog(from, "backend down", map[string]string{"backend": b.Addr()}, downBound+time.Second)
	time.Sleep(downFor)
	from = p.LogCount()
	restarted := time.Now()
	b.Start()
	up := p.WaitLog(from, "backend up", map[string]string{"backend": b.Addr()}, upBound+2*time.Second)
	upAfter := up.Time.Sub(restarted)
	time.Sleep(time.Until(up.Time.Add(window)))
	sb := backendOf(t, p.Status(), b.Addr())
	res := load.Stop()

	byName, failed := baltest.Tally(res, up.Time, up.Time.Add(window))
	total := byName["a"] + byName["b"] + byName["c"]
	share := 0.0
	if total > 0 {
		share = float64(byName["b"]) / float64(total)
	}
	// Per second, so a burst right after UP would show.
	var perSec []string
	for s := range int(window / time.Second) {
		from := up.Time.Add(time.Duration(s) * time.Second)
		n, _ := baltest.Tally(res, from, from.Add(time.Second))
		if tot := n["a"] + n["b"] + n["c"]; tot > 0 {
			perSec = append(perSec, fmt.Sprintf("%.0f%%", 100*float64(n["b"])/float64(tot)))
		}
	}
	// Connections open to B during its SIGKILL are reset by the kill itself
	// (see test 9); every other one must succeed.
	_, failedAll := baltest.Tally(res, time.Time{}, time.Now())
	var allFailed []baltest.Outcome
	for _, f := range failedAll {
		if !openDuring(f, killed, gone) {
			allFailed = append(allFailed, f)
		}
	}
	for i, f := range allFailed {
		if i < 5 {
			t.Errorf("client failure at %v: %v", f.Start.Format(time.StampMilli), f.Err)
		}
	}
	cleared := baltest.Number(sb, "fail_streak") == 0 && sb["cooldown_until"] == nil && sb["reachable"] == true
	if !cleared {
		t.Errorf("B after UP: %v", sb)
	}
	pass := upAfter <= upBound && share <= 1.0/3+0.05 && len(allFailed) == 0 && len(failed) == 0 && cleared && byName["b"] > 0
	baltest.Record(t, 11, fmt.Sprintf("%s: B down %s then restarted: UP +%s (bound %s); B's share of %d new conns in the 5 s after UP %.1f%% (bound 38.3%%; per second %v); streak/cooldown cleared %v; %d client failures (+%d in flight to B at its kill); no slow start (documented)",
		eng, downFor, ms(upAfter), ms(upBound), total, 100*share, perSec, cleared, len(allFailed), len(failedAll)-len(allFailed)), pass)
}
