package lifecycle_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// Test 5: concurrent reloads are atomic. 50 SIGHUPs within 100 ms while
// the file flips between configs B and C, ending on C. Pass: bal alive;
// 1 s later 300 sequential connections are spread exactly as C prescribes
// (round robin over C's three backends, 100 ± 1 each) and none reaches the
// backend that only B has; the reload counters add up: successes +
// failures = outcomes logged ≤ signals sent, and successes = "reloaded"
// lines. Two ways of writing the file: rename (atomic; 0 failures
// expected) and in place (truncate + write, as many editors do: bal may
// read a half-written file, which it must reject or apply whole — the
// counters still add up and the end state is C).
func TestConcurrentReloads(t *testing.T) {
	for _, how := range []string{"rename", "in-place"} {
		t.Run(how, func(t *testing.T) { testConcurrentReloads(t, how) })
	}
}

func testConcurrentReloads(t *testing.T, how string) {
	shared := baltest.NewBackend(t, baltest.Name("s"))
	bOnly := baltest.NewBackend(t, baltest.Name("b"))
	c1 := baltest.NewBackend(t, baltest.Name("c1"))
	c2 := baltest.NewBackend(t, baltest.Name("c2"))
	cfgB := baltest.Config{Port: baltest.FreePort(t), LogLevel: "info", Backends: []string{shared.Addr(), bOnly.Addr()}, Runtime: quietRuntime()}
	cfgC := cfgB
	cfgC.Backends = []string{c1.Addr(), shared.Addr(), c2.Addr()}
	p := baltest.Start(t, cfgB)
	write := func(c baltest.Config) {
		if how == "in-place" {
			baltest.WriteFile(t, p.ConfigPath, c.String())
			return
		}
		tmp := filepath.Join(filepath.Dir(p.ConfigPath), ".config.tmp")
		baltest.WriteFile(t, tmp, c.String())
		if err := os.Rename(tmp, p.ConfigPath); err != nil {
			t.Fatal(err)
		}
	}

	st0 := p.Status()
	from := p.LogCount()
	const signals = 50
	start := time.Now()
	for i := range signals {
		if i%2 == 0 {
			write(cfgB)
		} else {
			write(cfgC)
		}
		p.Signal(syscall.SIGHUP)
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * 100 * time.Millisecond / signals)))
	}
	write(cfgC) // the 50th signal already followed a C write; this makes sure the file ends on C
	p.Signal(syscall.SIGHUP)
	window := time.Since(start)
	time.Sleep(time.Second)

	alive := baltest.Alive(p.PID())
	st1 := p.Status()
	dOK := int(baltest.Number(st1, "reloads") - baltest.Number(st0, "reloads"))
	dFail := int(baltest.Number(st1, "reload_failures") - baltest.Number(st0, "reload_failures"))
	loggedOK := len(p.Logs(from, "reloaded"))
	loggedFail := len(p.Logs(from, baltest.RejectedMsg))

	counts := map[string]int{}
	var seq []string
	for range 300 {
		name, err := baltest.Who(p.Addr())
		if err != nil {
			name = "error"
		}
		counts[name]++
		seq = append(seq, name)
	}
	exact := true
	for _, n := range []string{"s", "c1", "c2"} {
		if counts[n] < 99 || counts[n] > 101 {
			exact = false
		}
	}
	cyclic := true
	for i := 3; i < len(seq); i++ {
		if seq[i] != seq[i-3] {
			cyclic = false
		}
	}
	countsOK := dOK == loggedOK && dFail == loggedFail && dOK+dFail <= signals+1 && dOK+dFail > 0
	if how == "rename" && dFail != 0 {
		countsOK = false
	}
	pass := alive && exact && cyclic && counts["b"] == 0 && counts["error"] == 0 && countsOK
	if !pass {
		t.Logf("sequence: %v", seq[:30])
	}
	baltest.Record(t, 5, fmt.Sprintf("file written by %s: %d SIGHUPs in %s flipping B/C, ending on C: alive %v; 300 probes %v (exact RR over C %v, B-only backend %d); reloads applied %d + rejected %d (logged %d + %d) of %d signals",
		how, signals+1, ms(window), alive, counts, exact && cyclic, counts["b"], dOK, dFail, loggedOK, loggedFail, signals+1), pass)
}

// Test 5, second part: a `POST /reload` on the control socket (what `bal
// graceful` sends), a second write of the file, and a SIGHUP, overlapping,
// round after round. Pass: once both reloads finished, bal runs exactly
// the latest file every time — a reload that read the file earlier never
// lands after one that read it later — and both paths count.
func TestConcurrentReloadPaths(t *testing.T) {
	rounds := baltest.Pick(100, 1000)
	a := baltest.NewBackend(t, baltest.Name("a"))
	b := baltest.NewBackend(t, baltest.Name("b"))
	cfg := baltest.Config{Port: baltest.FreePort(t), LogLevel: "info", Backends: []string{a.Addr(), b.Addr()}, Runtime: quietRuntime()}
	p := baltest.Start(t, cfg)
	ctl := baltest.NewControl(p.Home)
	defer ctl.Close()
	st, err := ctl.Status()
	if err != nil {
		t.Fatal(err)
	}
	seen := baltest.Number(st, "reloads") + baltest.Number(st, "reload_failures")
	var stale []string
	var postFailed int
	file := func(w int) {
		c := cfg
		c.Backends = []string{a.Addr(), fmt.Sprintf("%s %d", b.Addr(), w)}
		tmp := p.ConfigPath + ".tmp"
		baltest.WriteFile(t, tmp, c.String()) // rename: never a half-written file
		if err := os.Rename(tmp, p.ConfigPath); err != nil {
			t.Fatal(err)
		}
	}
	for i := range rounds {
		// The file changes while the two reloads are under way: the
		// POST may read the first version, the SIGHUP reads the second.
		want := i%200 + 52
		file(want - 50)
		done := make(chan error, 1)
		go func() {
			ok, m, err := ctl.Reload()
			if err == nil && !ok {
				err = fmt.Errorf("POST /reload rejected: %v", m["error"])
			}
			done <- err
		}()
		time.Sleep(time.Duration(i%5) * 100 * time.Microsecond)
		file(want)
		p.Signal(syscall.SIGHUP)
		if err := <-done; err != nil {
			postFailed++
			t.Errorf("round %d: %v", i, err)
		}
		var weight float64
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			st, err := ctl.Status()
			if err == nil && baltest.Number(st, "reloads")+baltest.Number(st, "reload_failures") >= seen+2 {
				seen = baltest.Number(st, "reloads") + baltest.Number(st, "reload_failures")
				bs, _ := st["backends"].([]any)
				for _, x := range bs {
					if m, _ := x.(map[string]any); m["address"] == b.Addr() {
						weight = baltest.Number(m, "weight")
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the SIGHUP's reload was not counted within 10 s", i)
			}
		}
		if int(weight) != want {
			stale = append(stale, fmt.Sprintf("round %d: file says weight %d, bal runs %v", i, want, weight))
		}
	}
	for i, s := range stale {
		if i < 5 {
			t.Error(s)
		}
	}
	baltest.Record(t, 5, fmt.Sprintf("%s: %d rounds of write, POST /reload, write, SIGHUP (overlapping): an older file left running %d times, POST failures %d",
		variant(), rounds, len(stale), postFailed), len(stale) == 0 && postFailed == 0)
}
