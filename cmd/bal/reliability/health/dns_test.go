//go:build linux

package health_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/control"
	"github.com/bal-lb/bal/engine/enginetest"
)

const backendName = "backend.bal.test"

// Test 14: the backend is a hostname whose DNS answer changes. bal runs in
// a network namespace whose /etc/resolv.conf (bind-mounted by `ip netns
// exec` from /etc/netns/<ns>/, iproute2's convention — no product change
// needed) points at a DNS responder of the test on 127.0.0.1:53 there; the
// name first answers 127.0.0.2, then 127.0.0.3, each running a backend
// process on the same port, with TTL 1 s. bal re-resolves hostnames every
// health interval (docs/design.md#connect-and-failover; Go's resolver caches nothing). Pass: new
// connections reach the new address ≤ TTL + i + 1 s after the change; a
// connection opened to the old address before the change still moves
// 1 MiB byte-exact afterwards; then SERVFAIL and then unanswered queries
// for a while (fast 3 s each, soak 30 s each) keep the last good address
// (status shows it) with 0 client failures.
func TestDNSChange(t *testing.T) {
	eng := baltest.Engines()[0]
	const ttl = 1
	failFor := baltest.Pick(3*time.Second, 30*time.Second)
	ns := baltest.NetNS(t) // skips unless root
	baltest.NSEtc(t, ns, map[string]string{
		"resolv.conf":   "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
		"nsswitch.conf": "hosts: files dns\n",
	})
	dns := baltest.NewDNS(t, ns, "127.0.0.1:53", ttl)
	oldIP, newIP := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	dns.Set(backendName, oldIP)
	bport := baltest.FreePort(t)
	oldB := baltest.StartProcBackend(t, "old", fmt.Sprintf("%s:%d", oldIP, bport), ns)
	newB := baltest.StartProcBackend(t, "new", fmt.Sprintf("%s:%d", newIP, bport), ns)
	port := baltest.FreePort(t)
	rt := baltest.Override(defaultRuntime(), "connection_idle_timeout_ms: 60000")
	yaml := fmt.Sprintf("mode: advanced\nport: %d\nbind_address: \"127.0.0.1\"\nmethod: round_robin\nlog_level: info\nruntime:\n  engine: %s\n  %s\nbackends:\n  - host: %q\n    port: %d\n",
		port, eng, strings.Join(rt, "\n  "), backendName, bport)
	p := baltest.StartYAML(t, yaml, port, baltest.InNetNS(ns))
	d := baltest.NewNSDialer(t, ns, 8)
	who := func() (string, error) {
		c, err := d.Dial(p.Addr(), 2*time.Second)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		return baltest.ReadName(c)
	}
	if name, err := who(); err != nil || name != "old" {
		t.Fatalf("before the change: %q, %v\n%s", name, err, p.RawLog())
	}
	hs := openHeld(t, 1, d.Dial, p.Addr())
	if hs[0].name != "old" {
		t.Fatalf("held connection went to %q", hs[0].name)
	}

	// The change.
	changed := time.Now()
	dns.Set(backendName, newIP)
	bound := ttl*time.Second + hcInterval + time.Second
	var reached time.Duration = -1
	for time.Since(changed) < bound+3*time.Second {
		if name, err := who(); err == nil && name == "new" {
			reached = time.Since(changed)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	after := 0
	for range 20 {
		if name, err := who(); err == nil && name == "new" {
			after++
		}
	}
	// The connection to the old address still works, byte-exact.
	const size = 1 << 20
	exact := false
	go func() { _, _ = io.Copy(hs[0].c, enginetest.NewStream(14, size)) }()
	_ = hs[0].c.SetDeadline(time.Now().Add(10 * time.Second))
	sum, n, err := enginetest.ReadAllSum(io.LimitReader(hs[0].c, size))
	exact = err == nil && n == size && sum == enginetest.StreamSum(14, size)
	if !exact {
		t.Errorf("held connection to the old address: %d bytes, %v, exact %v", n, err, exact)
	}
	// `bal status --json` does not show resolved addresses (reported); the
	// control socket's GET /status, which it reads, does.
	ctl := control.NewClient(filepath.Join(p.Home, "bal.sock"), 2*time.Second)
	addrs := func() []string {
		st, err := ctl.Status(context.Background())
		if err != nil || len(st.Backends) != 1 {
			t.Fatalf("control status: %v, %+v", err, st)
		}
		return st.Backends[0].Addresses
	}
	want := []string{fmt.Sprintf("%s:%d", newIP, bport)}
	if got := addrs(); !slices.Equal(got, want) {
		t.Errorf("status addresses after the change %v, want %v", got, want)
	}

	// DNS fails: SERVFAIL, then no answer at all.
	type phase struct {
		name            string
		mode            baltest.DNSMode
		conns, failures int
		kept            bool
		downs           int
	}
	phases := []*phase{{name: "SERVFAIL", mode: baltest.DNSServFail}, {name: "timeout", mode: baltest.DNSDrop}}
	for _, ph := range phases {
		from := p.LogCount()
		q0 := dns.Queries()
		dns.SetMode(ph.mode)
		load := baltest.StartLoad(t, p.Addr(), baltest.LoadOptions{Rate: 50, Dial: d.Dial})
		time.Sleep(failFor)
		res := load.Stop()
		ph.kept = slices.Equal(addrs(), want)
		dns.SetMode(baltest.DNSAnswer)
		ph.conns = len(res)
		for _, o := range res {
			if o.Err != nil || o.Name != "new" {
				ph.failures++
				if ph.failures <= 3 {
					t.Errorf("%s: client got %q, %v", ph.name, o.Name, o.Err)
				}
			}
		}
		ph.downs = len(p.Logs(from, "backend down"))
		if dns.Queries() == q0 {
			t.Errorf("%s: bal sent no DNS query", ph.name)
		}
		// Back to normal before the next phase.
		time.Sleep(upBound)
	}
	_ = oldB
	_ = newB
	var figs []string
	pass := reached >= 0 && reached <= bound && after == 20 && exact
	for _, ph := range phases {
		figs = append(figs, fmt.Sprintf("%s %s: %d/%d conns failed, last address kept %v, backend marked down %d×", ph.name, failFor, ph.failures, ph.conns, ph.kept, ph.downs))
		pass = pass && ph.failures == 0 && ph.kept && ph.conns > 0
	}
	baltest.Record(t, 14, fmt.Sprintf("%s: name → 127.0.0.2 then 127.0.0.3 (TTL %d s): new address reached +%s (bound %s), then 20/20 → new = %v; held conn to the old address 1 MiB byte-exact %v; %s",
		eng, ttl, ms(reached), ms(bound), after == 20, exact, strings.Join(figs, "; ")), pass)
}
