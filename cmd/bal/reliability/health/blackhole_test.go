//go:build linux

package health_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// Test 10a: an nftables rule in bal's network namespace drops every SYN to
// backend B (a black hole: connects hang). Pass: p99 time for a client to
// get a working connection ≤ connect timeout + 100 ms (the fast variant
// allows + 500 ms on this shared 2-core machine and records the figure),
// B DOWN within i×f + t + 1 s, 0 client failures while A and C are healthy.
func TestBackendBlackholed(t *testing.T) {
	baltest.NeedNft(t)
	baltest.ForEngine(t, testBlackholed)
}

func testBlackholed(t *testing.T, eng string) {
	rate := baltest.Pick(200, 500)
	run := baltest.Pick(downBound+2*time.Second, 20*time.Second) // load after the rule
	slack := baltest.Pick(500*time.Millisecond, 100*time.Millisecond)
	ns := baltest.NetNS(t)
	var a, b, c *baltest.Backend
	baltest.InNS(t, ns, func() {
		a = baltest.NewBackend(t, baltest.NameEcho("a"))
		b = baltest.NewBackend(t, baltest.NameEcho("b"))
		c = baltest.NewBackend(t, baltest.NameEcho("c"))
	})
	nft := baltest.NewNft(t, ns)
	cfg := baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{a.Addr(), b.Addr(), c.Addr()}, Runtime: defaultRuntime()}
	p := baltest.Start(t, cfg, baltest.InNetNS(ns))
	d := baltest.NewNSDialer(t, ns, 16)

	load := baltest.StartLoad(t, p.Addr(), baltest.LoadOptions{Rate: rate, Dial: d.Dial, MaxOpen: 1024})
	time.Sleep(time.Second)
	from := p.LogCount()
	ruled := time.Now()
	nft.Add("input", fmt.Sprintf("tcp dport %d tcp flags & (syn | ack) == syn drop", b.Port()))
	time.Sleep(run)
	res := load.Stop()

	byName, failed := baltest.Tally(res, time.Time{}, time.Now())
	for i, f := range failed {
		if i < 5 {
			t.Errorf("client failure at +%v (took %v): %v", f.Start.Sub(ruled), f.Took, f.Err)
		}
	}
	var took []time.Duration
	slow := 0
	for _, o := range res {
		if o.Err == nil && !o.Start.Before(ruled) {
			took = append(took, o.Took)
			if o.Took > connectTimeout/2 {
				slow++
			}
		}
	}
	p99 := baltest.Percentile(took, 99)
	max := baltest.Percentile(took, 100)
	down, _ := p.FindLog(from, "backend down", map[string]string{"backend": b.Addr()})
	downAfter := down.Time.Sub(ruled)
	if down.Msg == "" {
		t.Errorf("B never marked down:\n%s", nft.Ruleset())
	}
	st := p.Status()
	sb := backendOf(t, st, b.Addr())
	if sb["reachable"] != false {
		t.Errorf("status of the black-holed backend: %v", sb)
	}
	pass := len(failed) == 0 && down.Msg != "" && downAfter <= downBound && p99 <= connectTimeout+slack && byName["a"] > 0 && byName["c"] > 0
	baltest.Record(t, 10, fmt.Sprintf("%s: SYNs to B dropped by nft: B down +%s (bound %s); time to a working connection p99 %s, max %s (bound connect timeout %s + %s), %d of %d clients waited > %s; %d client failures; B timeouts counted %v",
		eng, ms(downAfter), ms(downBound), ms(p99), ms(max), ms(connectTimeout), ms(slack), slow, len(took), ms(connectTimeout/2), len(failed), baltest.Number(sb, "counters", "timeout")), pass)
}

// Test 10b: backend B accepts and then never reads, writes or closes
// (hivecommons/hive#3872). Pass: bal closes both sides of every connection
// to B within idle timeout + 1 s, and after a run at 50 conn/s (fast 5 s,
// soak 60 s) bal's fd count is back to its baseline ± 4. Two silent
// backends: one that accepts and ignores the socket (its side of the close
// is observed through TCP_INFO, without reading), and a backend process
// paused with SIGSTOP (the kernel still completes handshakes into its
// accept queue; only bal's side can be observed).
func TestBackendHangs(t *testing.T) {
	baltest.ForEngine(t, func(t *testing.T, eng string) {
		t.Run("Silent", func(t *testing.T) {
			t.Parallel()
			testHangs(t, eng, false)
		})
		if baltest.Soaking() || eng == baltest.Engines()[0] {
			t.Run("SIGSTOP", func(t *testing.T) {
				t.Parallel()
				testHangs(t, eng, true)
			})
		}
	})
}

func testHangs(t *testing.T, eng string, paused bool) {
	run := baltest.Pick(5*time.Second, 60*time.Second)
	const rate = 50
	var mu sync.Mutex
	var backendSide []time.Duration // accept → bal's close seen, proxied connections only
	a := baltest.NewBackend(t, baltest.NameEcho("a"))
	c := baltest.NewBackend(t, baltest.NameEcho("c"))
	var baddr string
	var proc *baltest.ProcBackend
	if paused {
		proc = baltest.StartProcBackend(t, "b", fmt.Sprintf("127.0.0.1:%d", baltest.FreePort(t)), "")
		baddr = proc.Addr()
	} else {
		b := baltest.NewBackend(t, baltest.Hang(func(acc, seen time.Time, unread int) {
			if unread > 0 { // a proxied connection (a health check sends nothing)
				mu.Lock()
				backendSide = append(backendSide, seen.Sub(acc))
				mu.Unlock()
			}
		}))
		baddr = b.Addr()
	}
	cfg := baltest.Config{Port: baltest.FreePort(t), Engine: eng, LogLevel: "info", Backends: []string{a.Addr(), baddr, c.Addr()}, Runtime: defaultRuntime()}
	p := baltest.Start(t, cfg)
	if paused {
		proc.Signal(syscall.SIGSTOP)
	}
	// Warm up: a health round and a few connections that the client closes
	// at once (bal passes the FIN on, so even B's are done), then the
	// baseline.
	for range 6 {
		if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
			_, _ = io.WriteString(c, "warm")
			time.Sleep(20 * time.Millisecond)
			c.Close()
		}
	}
	if paused {
		time.Sleep(idleTimeout + time.Second) // a stopped B never closes: bal's idle timeout does
	} else {
		time.Sleep(500 * time.Millisecond)
	}
	base := p.FDs()
	mu.Lock()
	backendSide = nil
	mu.Unlock()

	load := baltest.StartLoad(t, p.Addr(), baltest.LoadOptions{Rate: rate, Hello: "hello", Timeout: idleTimeout + 3*time.Second})
	peak := base
	for end := time.Now().Add(run); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		peak = max(peak, p.FDs())
	}
	res := load.Stop() // waits for the hanging ones to be closed by bal
	time.Sleep(time.Second)
	final := p.WaitFDs(base, 4, 3*time.Second)

	byName, _ := baltest.Tally(res, time.Time{}, time.Now())
	var clientSide []time.Duration
	bad := 0
	for _, o := range res {
		switch {
		case o.Err == nil:
		case errors.Is(o.Err, io.ErrUnexpectedEOF) || baltest.IsReset(o.Err):
			clientSide = append(clientSide, o.Took) // a hanging B: bal closed it
		default:
			bad++
			if bad <= 5 {
				t.Errorf("client at +%v: %v", o.Took, o.Err)
			}
		}
	}
	mu.Lock()
	bs := append([]time.Duration(nil), backendSide...)
	mu.Unlock()
	bound := idleTimeout + time.Second
	cMax, bMax := baltest.Percentile(clientSide, 100), baltest.Percentile(bs, 100)
	pass := bad == 0 && len(clientSide) > 0 && cMax <= bound && final-base <= 4 && final-base >= -4 && byName["a"] > 0
	what, bside := "B accepts and goes silent", fmt.Sprintf("%s (B side)", ms(bMax))
	if paused {
		what, bside = "B's process SIGSTOPped", "B side not observable"
	} else {
		pass = pass && len(bs) > 0 && bMax <= bound
	}
	baltest.Record(t, 10, fmt.Sprintf("%s: %s, %d conns at %d/s for %s: %d to B closed by bal after max %s (client side) / %s, bound idle %s + 1 s; fds baseline %d, peak %d, after %d",
		eng, what, len(res), rate, run, len(clientSide), ms(cMax), bside, ms(idleTimeout), base, peak, final), pass)
}
