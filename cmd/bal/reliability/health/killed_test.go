//go:build linux

package health_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// Test 9: a backend process is SIGKILLed under a steady load of short
// connections. Pass: bal stops sending it new connections within
// i×f + t + 1 s, refused connects fail over so clients see no failure,
// connections already open to the other backends are untouched, and status
// shows it down with the refusals counted.
func TestBackendKilledUnderLoad(t *testing.T) {
	baltest.ForEngine(t, testKilledUnderLoad)
}

func testKilledUnderLoad(t *testing.T, eng string) {
	rate := baltest.Pick(300, 500)
	before := baltest.Pick(time.Second, 5*time.Second) // load before the kill
	a := baltest.NewBackend(t, baltest.NameEcho("a"))
	c := baltest.NewBackend(t, baltest.NameEcho("c"))
	b := baltest.StartProcBackend(t, "b", fmt.Sprintf("127.0.0.1:%d", baltest.FreePort(t)), "")
	cfg := baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{a.Addr(), b.Addr(), c.Addr()}, Runtime: defaultRuntime()}
	p := baltest.Start(t, cfg)

	hs := openHeld(t, 6, netDial, p.Addr())
	pg := startPinger(hs, "b")
	t.Cleanup(func() { pg.Stop() })
	load := baltest.StartLoad(t, p.Addr(), baltest.LoadOptions{Rate: rate})
	time.Sleep(before)
	from := p.LogCount()
	killed := time.Now()
	b.Kill()
	gone := time.Now() // SIGKILL sent and the process reaped
	time.Sleep(downBound + time.Second)
	res := load.Stop()

	// The last connect bal attempted to b (logged at debug level).
	var last time.Time
	for i := from; ; {
		e, j := p.FindLog(i, "backend connect failed", map[string]string{"backend": b.Addr()})
		if j < 0 {
			break
		}
		last, i = e.Time, j+1
	}
	lastAfter := time.Duration(0)
	if !last.IsZero() {
		lastAfter = last.Sub(killed)
	}
	down, _ := p.FindLog(from, "backend down", map[string]string{"backend": b.Addr()})
	downAfter := down.Time.Sub(killed)

	// Connections open while the kill was under way may have been accepted
	// by b: the kill resets them, as it does any connection already open to
	// b. Every other one must succeed.
	byName, failed := baltest.Tally(res, time.Time{}, time.Now())
	var inFlight int
	var bad []baltest.Outcome
	for _, f := range failed {
		if openDuring(f, killed, gone) {
			inFlight++
			continue
		}
		bad = append(bad, f)
	}
	for i, f := range bad {
		if i < 5 {
			t.Errorf("client failure at +%v (took %v): %v", f.Start.Sub(killed), f.Took, f.Err)
		}
	}
	if byName["a"] == 0 || byName["c"] == 0 || byName["b"] == 0 {
		t.Errorf("distribution %v: every backend should have served before the kill", byName)
	}
	// b's process is gone: nothing after the kill can have been served by it.
	lateB := 0
	for _, o := range res {
		if o.Name == "b" && o.Start.After(killed.Add(100*time.Millisecond)) {
			lateB++
		}
	}
	pings, pingErrs := pg.Stop()
	for _, err := range pingErrs {
		t.Error(err)
	}

	st := p.Status()
	sb := backendOf(t, st, b.Addr())
	if sb["reachable"] != false || baltest.Number(sb, "counters", "refused") == 0 {
		t.Errorf("status of the killed backend: reachable %v, counters %v", sb["reachable"], sb["counters"])
	}
	if down.Msg == "" {
		t.Errorf("no \"backend down\" logged for %s", b.Addr())
	}
	pass := len(bad) == 0 && lateB == 0 && down.Msg != "" && downAfter <= downBound && lastAfter <= downBound && len(pingErrs) == 0 && pings > 0
	baltest.Record(t, 9, fmt.Sprintf("%s: last connect to killed B +%s, B down +%s (bound %s); %d conns at %d/s, %d client failures (+%d in flight to B during the %s kill); held conns on A/C: %d echoes, %d failures",
		eng, ms(lastAfter), ms(downAfter), ms(downBound), len(res), rate, len(bad), inFlight, ms(gone.Sub(killed)), pings, len(pingErrs)), pass)
}
