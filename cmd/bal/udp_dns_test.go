package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// Black-box tests of UDP services with real DNS software: two Debian
// dnsmasq resolvers behind bal, asked with dig (or, where dig is missing,
// raw DNS packets from this test) from a fresh source port per query.

// dnsName is the name both resolvers answer, each with its own address.
const dnsName = "test.example"

// resolver is one dnsmasq process answering dnsName with answer.
type resolver struct {
	addr   netip.AddrPort
	answer string
	cmd    *exec.Cmd
	done   chan struct{}
}

// freeUDPPort is a loopback UDP port nothing is bound to right now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// freeDNSPort is a loopback port free for both UDP and TCP (dnsmasq binds
// both).
func freeDNSPort(t *testing.T) int {
	t.Helper()
	for range 100 {
		port := baltest.FreePort(t)
		if c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err == nil {
			c.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// startResolver runs dnsmasq on a free loopback port, answering dnsName
// with answer and nothing else (no upstream, no hosts file). It is killed
// by PID when the test ends.
func startResolver(t *testing.T, answer string) *resolver {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Skip("dnsmasq not installed (Debian: apt-get install dnsmasq-base)")
	}
	port := freeDNSPort(t)
	r := &resolver{addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), answer: answer, done: make(chan struct{})}
	r.cmd = exec.Command(bin, "--no-daemon", "--conf-file=/dev/null", "--pid-file=", "--user=root",
		fmt.Sprintf("--port=%d", port), "--listen-address=127.0.0.1", "--bind-interfaces",
		"--no-resolv", "--no-hosts", "--cache-size=0", fmt.Sprintf("--address=/%s/%s", dnsName, answer))
	var out bytes.Buffer
	r.cmd.Stdout, r.cmd.Stderr = &out, &out
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		r.kill()
		if t.Failed() {
			t.Logf("dnsmasq %s:\n%s", r.addr, out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if a, err := askRaw(r.addr, 1, 200*time.Millisecond); err == nil && a == answer {
			return r
		}
		select {
		case <-r.done:
			t.Fatalf("dnsmasq exited at start:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq on %s does not answer:\n%s", r.addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the resolver at once (its port then answers ICMP port
// unreachable).
func (r *resolver) kill() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// dnsQuery is a query for name, type A, class IN, with id.
func dnsQuery(id uint16, name string) []byte {
	q := binary.BigEndian.AppendUint16(nil, id)
	q = append(q, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // RD; one question
	for _, label := range strings.Split(name, ".") {
		q = append(q, byte(len(label)))
		q = append(q, label...)
	}
	return append(q, 0, 0, 1, 0, 1)
}

// dnsAnswer is the address of the one A record of a response to id.
func dnsAnswer(resp []byte, id uint16) (string, error) {
	switch {
	case len(resp) < 12+4:
		return "", fmt.Errorf("response of %d bytes", len(resp))
	case binary.BigEndian.Uint16(resp) != id:
		return "", fmt.Errorf("response to query %d, want %d", binary.BigEndian.Uint16(resp), id)
	case resp[3]&0x0f != 0:
		return "", fmt.Errorf("rcode %d", resp[3]&0x0f)
	case binary.BigEndian.Uint16(resp[6:]) != 1:
		return "", fmt.Errorf("%d answers", binary.BigEndian.Uint16(resp[6:]))
	}
	a := resp[len(resp)-4:] // the A record's data ends a response without additional records
	return netip.AddrFrom4([4]byte(a)).String(), nil
}

// askRaw asks for dnsName from a fresh socket (a fresh source port) and
// retries on that socket after per, tries times in all, as stub resolvers
// do. It returns the answer.
func askRaw(addr netip.AddrPort, tries int, per time.Duration) (string, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return "", err
	}
	defer c.Close()
	id := uint16(time.Now().UnixNano())
	q := dnsQuery(id, dnsName)
	buf := make([]byte, 512)
	var last error
	for range tries {
		if _, err := c.Write(q); err != nil {
			last = err
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue // an ICMP left from the previous try: send again
			}
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(per))
		n, err := c.Read(buf)
		if err != nil {
			last = err
			continue
		}
		return dnsAnswer(buf[:n], id)
	}
	return "", last
}

// askDig asks with dig: a new process and socket (a fresh source port) per
// query, one second per try, three tries.
func askDig(bin string, addr netip.AddrPort) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "@"+addr.Addr().String(), "-p", fmt.Sprint(addr.Port()),
		"+short", "+time=1", "+tries=3", dnsName, "A").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dig: %w: %s", err, out)
	}
	s := strings.TrimSpace(string(out))
	if _, perr := netip.ParseAddr(s); perr != nil {
		return "", fmt.Errorf("dig answered %q", s)
	}
	return s, nil
}

// asker returns how these tests query: dig when installed, else raw
// packets with dig's timing.
func asker(t *testing.T) func(addr netip.AddrPort) (string, error) {
	if bin, err := exec.LookPath("dig"); err == nil {
		return func(addr netip.AddrPort) (string, error) { return askDig(bin, addr) }
	}
	t.Log("dig not installed (Debian: bind9-dnsutils): asking with raw DNS packets")
	return func(addr netip.AddrPort) (string, error) { return askRaw(addr, 3, time.Second) }
}

// dnsConfig is a config with one UDP service "dns" on port over the
// resolvers; check adds an active send_expect check (a DNS query; the
// answer must hold one question and one answer record).
func dnsConfig(eng string, port int, check bool, rs []*resolver, runtime ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode: advanced\nlog_level: debug\nruntime:\n  engine: %s\n  drain_timeout_ms: 1000\n", eng)
	fmt.Fprintf(&b, "services:\n  - name: dns\n    protocol: udp\n    bind_address: 127.0.0.1\n    port: %d\n    method: round_robin\n", port)
	if check {
		fmt.Fprintf(&b, "    health_check:\n      type: send_expect\n      send: !!binary %s\n      expect: \"\\x00\\x01\\x00\\x01\"\n",
			base64.StdEncoding.EncodeToString(dnsQuery(0xbeef, dnsName)))
	}
	b.WriteString("    runtime:\n")
	for _, l := range runtime {
		b.WriteString("      " + l + "\n")
	}
	b.WriteString("    backends:\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "      - {host: %q, port: %d}\n", r.addr.Addr(), r.addr.Port())
	}
	return b.String()
}

// udpService is the status of the service named name, from bal status.
func serviceOf(t *testing.T, st map[string]any, name string) map[string]any {
	t.Helper()
	svcs, _ := st["services"].([]any)
	for _, s := range svcs {
		if m, _ := s.(map[string]any); m["name"] == name {
			return m
		}
	}
	t.Fatalf("no service %q in status", name)
	return nil
}

// backendFlows is each backend's total flows, by address.
func backendFlows(svc map[string]any) map[string]float64 {
	out := map[string]float64{}
	bs, _ := svc["backends"].([]any)
	for _, b := range bs {
		m, _ := b.(map[string]any)
		n, _ := m["total_connections"].(float64)
		out[m["address"].(string)] = n
	}
	return out
}

// TestUDPDNSBothResolvers: every query through bal is answered, each from
// a fresh source port, and round robin spreads the flows over both
// resolvers (their answers tell them apart).
func TestUDPDNSBothResolvers(t *testing.T) {
	baltest.NeedBinary(t)
	ask := asker(t)
	baltest.ForEngine(t, func(t *testing.T, eng string) {
		rs := []*resolver{startResolver(t, "127.0.0.11"), startResolver(t, "127.0.0.12")}
		port := freeUDPPort(t)
		p := baltest.StartYAML(t, dnsConfig(eng, port, true, rs, "udp_idle_timeout_ms: 2000"), port)
		t.Cleanup(func() { stopGracefully(p) })
		bal := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		const n = 60
		got := map[string]int{}
		for i := range n {
			a, err := ask(bal)
			if err != nil {
				t.Fatalf("query %d through bal: %v", i, err)
			}
			got[a]++
		}
		if got["127.0.0.11"]+got["127.0.0.12"] != n || got["127.0.0.11"] < n/3 || got["127.0.0.12"] < n/3 {
			t.Fatalf("answers %s: want both resolvers, about half each", shares(got, "127.0.0.11", "127.0.0.12"))
		}
		// One flow per query, but for the rare dig that got the source
		// port of one before it (within the idle timeout: the same flow).
		svc := serviceOf(t, p.Status(), "dns")
		dg, _ := svc["datagrams"].(map[string]any)
		if svc["total_flows"].(float64) < n*9/10 || dg["client_to_backend"].(float64) < n || dg["backend_to_client"].(float64) < n {
			t.Fatalf("status: %v flows (want about %d, one per query), datagrams %v", svc["total_flows"], n, dg)
		}
		t.Logf("%s: answers %s", eng, shares(got, "127.0.0.11", "127.0.0.12"))
	})
}

// TestUDPDNSKilledResolverAvoided kills one resolver while queries run.
// With the active check (interval 200 ms, fail 2) no new flow goes to it
// from interval × fail + 1 s after the kill on; with passive checks only,
// the flows' ICMP port unreachable keeps it out but for one probing flow
// per cooldown (which grows from 200 ms to 5 s). Either way every query is
// answered: a query that reached the dead one is asked again by its client
// and finds the live one.
func TestUDPDNSKilledResolverAvoided(t *testing.T) {
	baltest.NeedBinary(t)
	for _, mode := range []string{"active", "passive"} {
		t.Run(mode, func(t *testing.T) { testKilledResolver(t, mode == "active") })
	}
}

func testKilledResolver(t *testing.T, active bool) {
	const (
		interval = 200 * time.Millisecond
		fall     = 2
	)
	live, dead := startResolver(t, "127.0.0.11"), startResolver(t, "127.0.0.12")
	port := freeUDPPort(t)
	p := baltest.StartYAML(t, dnsConfig("std", port, active, []*resolver{live, dead},
		"udp_idle_timeout_ms: 2000", fmt.Sprintf("health_check_interval_ms: %d", interval.Milliseconds()),
		"health_check_timeout_ms: 400", fmt.Sprintf("health_check_fail_threshold: %d", fall),
		"failover_backoff_initial_ms: 200", "failover_backoff_max_ms: 5000", "backend_cooldown_ms: 200"), port)
	t.Cleanup(func() { stopGracefully(p) })
	bal := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))

	type answer struct {
		at  time.Time
		got string
		err error
	}
	var (
		mu      sync.Mutex
		answers []answer
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 { // two clients, each one query at a time, each from a fresh port
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				began := time.Now()
				a, err := askRaw(bal, 4, 500*time.Millisecond)
				mu.Lock()
				answers = append(answers, answer{began, a, err})
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	time.Sleep(time.Second)
	killed := time.Now()
	dead.kill()
	avoidBy := killed.Add(fall*interval + time.Second)
	time.Sleep(time.Until(avoidBy))
	before := backendFlows(serviceOf(t, p.Status(), "dns"))[dead.addr.String()]
	time.Sleep(4 * time.Second)
	after := backendFlows(serviceOf(t, p.Status(), "dns"))[dead.addr.String()]
	close(stop)
	wg.Wait()

	byAnswer := map[string]int{}
	for _, a := range answers {
		if a.err != nil {
			t.Errorf("query asked at %s (kill at %s) failed: %v", a.at.Format("15:04:05.000"), killed.Format("15:04:05.000"), a.err)
			continue
		}
		byAnswer[a.got]++
	}
	if byAnswer["127.0.0.12"] == 0 {
		t.Fatalf("the resolver to kill never answered before the kill: %v", byAnswer)
	}
	svc := serviceOf(t, p.Status(), "dns")
	var reachable any
	for _, b := range svc["backends"].([]any) {
		if m := b.(map[string]any); m["address"] == dead.addr.String() {
			reachable = m["reachable"]
		}
	}
	t.Logf("%d queries, answers %s; flows to the dead resolver in the 4 s from kill + %v: %v; reachable %v",
		len(answers), shares(byAnswer, "127.0.0.11", "127.0.0.12"), fall*interval+time.Second, after-before, reachable)
	if reachable != false {
		t.Errorf("the killed resolver is reachable=%v in status", reachable)
	}
	// Active: none. Passive: the probing flows of the cooldowns (200 ms
	// doubling to 5 s: at most 5 in 4 s), with a margin.
	limit := 0.0
	if !active {
		limit = 8
	}
	if after-before > limit {
		t.Fatalf("%v new flows went to the killed resolver from %v after the kill on (at most %v)", after-before, fall*interval+time.Second, limit)
	}
}
