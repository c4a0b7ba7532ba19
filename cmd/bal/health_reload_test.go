package main

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/enginetest"
)

// Black-box tests of health checks, protection mode and reloads
// with the real binary.

// outcome is one client connection of a load loop.
type outcome struct {
	at   time.Time
	took time.Duration
	name string
	err  error
}

// loadLoop connects through addr every few milliseconds until stop is
// closed and returns every outcome.
func loadLoop(addr string, stop <-chan struct{}) <-chan []outcome {
	out := make(chan []outcome, 1)
	go func() {
		var res []outcome
		for {
			select {
			case <-stop:
				out <- res
				return
			case <-time.After(5 * time.Millisecond):
			}
			began := time.Now()
			name, err := baltest.Who(addr)
			res = append(res, outcome{at: began, took: time.Since(began), name: name, err: err})
		}
	}()
	return out
}

const (
	hcInterval = 200 * time.Millisecond
	hcFall     = 2
	hcRise     = 2
)

func healthRuntime() []string {
	return []string{
		fmt.Sprintf("health_check_interval_ms: %d", hcInterval.Milliseconds()),
		"health_check_timeout_ms: 150",
		fmt.Sprintf("health_check_fail_threshold: %d", hcFall),
		fmt.Sprintf("health_check_success_threshold: %d", hcRise),
		"backend_connect_timeout_ms: 300",
	}
}

func TestHealthBlackBox(t *testing.T) {
	for _, eng := range baltest.Engines() {
		t.Run(eng, func(t *testing.T) {
			t.Run("KilledUnderLoadThenBack", func(t *testing.T) { testKilledUnderLoad(t, eng) })
			t.Run("DeadAtStartup", func(t *testing.T) { testDeadAtStartup(t, eng) })
			t.Run("ProtectionStorm", func(t *testing.T) { testProtectionStorm(t, eng) })
			t.Run("ProtectionAllUnavailable", func(t *testing.T) { testProtectionAllDown(t, eng) })
		})
	}
}

func testKilledUnderLoad(t *testing.T, eng string) {
	a, b := baltest.NewBackend(t, baltest.Name("a")), baltest.NewBackend(t, baltest.Name("b"))
	p, _ := runInstance(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{a.Addr(), b.Addr()}, Runtime: healthRuntime()})
	stop := make(chan struct{})
	results := loadLoop(p.Addr(), stop)
	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	b.Kill()
	bound := hcInterval*hcFall + time.Second
	down := p.WaitLog(0, "backend down", map[string]string{"backend": b.Addr()}, bound+time.Second)
	if down.Time.Sub(killed) > bound {
		t.Errorf("b marked down %v after the kill, want within %v", down.Time.Sub(killed), bound)
	}
	time.Sleep(time.Until(killed.Add(bound + time.Second))) // load keeps running a second past the bound
	close(stop)
	res := <-results
	after := killed.Add(bound)
	served := 0
	for _, r := range res {
		if r.at.Before(after) {
			continue
		}
		served++
		if r.err != nil || r.name != "a" {
			t.Errorf("connection at +%v after the kill: %q, %v", r.at.Sub(killed), r.name, r.err)
		}
	}
	if served < 20 {
		for _, r := range res {
			t.Logf("+%v took %v: %q %v", r.at.Sub(killed), r.took, r.name, r.err)
		}
		t.Fatalf("only %d connections after the bound: the load loop is too slow to show anything", served)
	}
	// bal must not even try b any more: no failed connect to it is logged
	// after the bound (the log is at debug level in these tests).
	from := 0
	for {
		e, i := p.FindLog(from, "backend connect failed", map[string]string{"backend": b.Addr()})
		if i < 0 {
			break
		}
		if e.Time.After(after) {
			t.Errorf("bal still dialled the dead backend %v after the kill", e.Time.Sub(killed))
		}
		from = i + 1
	}

	// It comes back: traffic reaches it again within interval × rise + 1 s.
	back := time.Now()
	b.Start()
	deadline := back.Add(hcInterval*hcRise + time.Second)
	for {
		name, err := baltest.Who(p.Addr())
		if err == nil && name == "b" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted backend got no traffic within %v", deadline.Sub(back))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testDeadAtStartup(t *testing.T, eng string) {
	a := baltest.NewBackend(t, baltest.Name("a"))
	dead := enginetest.DeadAddr(t).String()
	rt := append(healthRuntime()[1:], "health_check_interval_ms: 500")
	p, _ := runInstance(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{a.Addr(), dead}, Runtime: rt})
	started := p.WaitLog(0, "bal started", nil, time.Second)
	down := p.WaitLog(0, "backend down", map[string]string{"backend": dead}, 2*time.Second)
	if el := down.Time.Sub(started.Time); el > 500*time.Millisecond {
		t.Fatalf("dead backend seen down %v after start-up, want within one interval (500 ms)", el)
	}
}

// protectionRuntime makes a dead backend cheap to retry (tiny cooldown) and
// keeps health checks from marking it down, so refused connects pile up.
func protectionRuntime() []string {
	return []string{
		"health_check_interval_ms: 60000",
		"health_check_fail_threshold: 1000",
		"failover_backoff_initial_ms: 1",
		"failover_backoff_max_ms: 1",
		"backend_cooldown_ms: 0",
		"protection_trigger_threshold: 3",
		"protection_window_ms: 1500",
		"protection_stable_success_threshold: 2",
	}
}

func testProtectionStorm(t *testing.T, eng string) {
	a := baltest.NewBackend(t, baltest.Name("a"))
	d := baltest.NewBackend(t, baltest.Name("d"))
	p, _ := runInstance(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{a.Addr(), d.Addr()}, Runtime: protectionRuntime()})
	// d passes the first health round, then dies; with a huge fail
	// threshold and a 60 s interval bal keeps trying it, and every try is
	// refused.
	time.Sleep(300 * time.Millisecond) // the first round runs at start-up
	d.Kill()
	for i := range 8 {
		if name, err := baltest.Who(p.Addr()); err != nil || name != "a" {
			t.Fatalf("connection %d during the storm: %q, %v (failover should hide the dead backend)", i, name, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.WaitLog(0, "protection mode on", map[string]string{"reason": "timeout_or_refused_storm"}, 2*time.Second)
	from := p.LogCount()
	d.Start() // recovery: consecutive successful connects turn it off
	for range 6 {
		_, _ = baltest.Who(p.Addr())
	}
	off := p.WaitLog(from, "protection mode off", nil, 3*time.Second)
	t.Logf("protection off: %v", off.Attrs["cause"])
}

func testProtectionAllDown(t *testing.T, eng string) {
	a := baltest.NewBackend(t, baltest.Name("a"))
	a.Kill()
	p, _ := runInstance(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{a.Addr(), enginetest.DeadAddr(t).String()}, Runtime: protectionRuntime()})
	if _, err := baltest.Who(p.Addr()); err == nil {
		t.Fatal("a connection succeeded with every backend down")
	}
	p.WaitLog(0, "protection mode on", map[string]string{"reason": "all_backends_unavailable"}, 2*time.Second)
	// No traffic and no failures for a whole window: it turns itself off.
	p.WaitLog(0, "protection mode off", nil, 4*time.Second)
}

func TestReloadBlackBox(t *testing.T) {
	for _, eng := range baltest.Engines() {
		t.Run(eng, func(t *testing.T) {
			t.Run("50ReloadsUnderLoad", func(t *testing.T) { testReloadsUnderLoad(t, eng) })
			t.Run("InvalidFileKeepsServing", func(t *testing.T) { testInvalidReload(t, eng) })
			t.Run("PortChange", func(t *testing.T) { testPortChange(t, eng) })
		})
	}
}

func testReloadsUnderLoad(t *testing.T, eng string) {
	e1, e2 := enginetest.NewBackend(t, enginetest.Echo), enginetest.NewBackend(t, enginetest.Echo)
	port := baltest.FreePort(t)
	cfgs := []baltest.Config{
		{Port: port, Engine: eng, Backends: []string{e1.Addr.String(), e2.Addr.String()}},
		{Port: port, Engine: eng, Backends: []string{e2.Addr.String() + " 3", e1.Addr.String()}, Method: "least_connections"},
	}
	p, path := runInstance(t, cfgs[0])
	held, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	echo(t, held, "before the first reload")

	stop := make(chan struct{})
	var ops, failures atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				err := baltest.RoundTrip(p.Addr(), fmt.Sprintf("client %d request %d", i, n))
				ops.Add(1)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for i := range 50 {
		baltest.WriteFile(t, path, cfgs[(i+1)%2].String())
		if e := p.Reload(nil); e.Msg != "reloaded" {
			t.Fatalf("reload %d: %s", i, e.Msg)
		}
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d client operations failed during 50 reloads; first: %v", failures.Load(), ops.Load(), firstErr.Load())
	}
	echo(t, held, "after the last reload")
	t.Logf("%d request/response operations, 0 failed, during 50 reloads", ops.Load())
}

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q: got %q, %v", msg, buf, err)
	}
}

func testInvalidReload(t *testing.T, eng string) {
	a, b := named(t, "a"), named(t, "b")
	p, path := runInstance(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{a.Addr.String(), b.Addr.String()}})
	baltest.WriteFile(t, path, "port: 9295\nbackends:\n  - host: 127.0.0.1\n    port: 9000\n    wieght: 2\n")
	e := p.Reload(nil)
	if e.Msg != "reload rejected; the previous configuration keeps serving" {
		t.Fatalf("invalid file was applied: %s", e.Msg)
	}
	if msg := fmt.Sprint(e.Attrs["error"]); !strings.Contains(msg, "wieght") || !strings.Contains(msg, "line 5") {
		t.Fatalf("rejection logged without its cause (key and line): %q", msg)
	}
	if got := distribution(t, p.Addr(), 10); got["a"] != 5 || got["b"] != 5 {
		t.Fatalf("after the rejected reload: %v, want the old config (5/5 over a and b)", got)
	}
}

func testPortChange(t *testing.T, eng string) {
	e := enginetest.NewBackend(t, enginetest.Echo)
	p1, p2 := baltest.FreePort(t), baltest.FreePort(t)
	p, path := runInstance(t, baltest.Config{Port: p1, Engine: eng, Backends: []string{e.Addr.String()}})
	held, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	echo(t, held, "on the old port")
	baltest.WriteFile(t, path, baltest.Config{Port: p2, Engine: eng, Backends: []string{e.Addr.String()}}.String())
	if r := p.Reload(nil); r.Msg != "reloaded" {
		t.Fatalf("port change rejected: %v", r.Attrs)
	}
	if err := baltest.RoundTrip(fmt.Sprintf("127.0.0.1:%d", p2), "new port"); err != nil {
		t.Fatalf("new port: %v", err)
	}
	// The old listener closes as the reload finishes (gnet's front stops
	// asynchronously); connections it still accepts meanwhile are served.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p1), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("old port still accepts 2 s after the reload")
		}
	}
	echo(t, held, "still on the old port after the reload")
}
