//go:build linux

package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/enginetest"
)

// Black-box tests of UDP services against bad input: datagrams of 0 and
// 65,507 bytes, a backend answering from another port, and a flood of
// 100,000 client addresses.

// udpConfig is a config with one UDP service "u" on port over backends.
func udpConfig(eng string, port int, backends []netip.AddrPort, service ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode: advanced\nlog_level: info\nruntime:\n  engine: %s\n  drain_timeout_ms: 1000\n", eng)
	fmt.Fprintf(&b, "services:\n  - name: u\n    protocol: udp\n    bind_address: 127.0.0.1\n    port: %d\n", port)
	for _, l := range service {
		b.WriteString("    " + l + "\n")
	}
	b.WriteString("    backends:\n")
	for _, a := range backends {
		fmt.Fprintf(&b, "      - {host: %q, port: %d}\n", a.Addr(), a.Port())
	}
	return b.String()
}

func startUDPBal(t *testing.T, yaml string, port int) (*baltest.Proc, netip.AddrPort) {
	t.Helper()
	p := baltest.StartYAML(t, yaml, port)
	t.Cleanup(func() { stopGracefully(p) })
	return p, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
}

// TestUDPDatagramEdges: zero-length and 65,507-byte datagrams cross bal
// whole both ways; a backend's answer from another port than the one the
// flow sent to is dropped (the flow's socket is connected to the backend),
// its answer from its own port is relayed.
func TestUDPDatagramEdges(t *testing.T) {
	baltest.NeedBinary(t)
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	b := enginetest.NewUDPBackend(t, func(b *enginetest.UDPBackend, from netip.AddrPort, p []byte) {
		if string(p) == "other port" {
			_, _ = other.WriteToUDPAddrPort([]byte("from another port"), from)
			b.Reply(from, []byte("from the backend's port"))
			return
		}
		b.Reply(from, p)
	})
	port := freeUDPPort(t)
	_, bal := startUDPBal(t, udpConfig("std", port, []netip.AddrPort{b.Addr}), port)
	c := enginetest.DialUDP(t, bal)
	_ = c.SetReadBuffer(1 << 20)
	for _, size := range []int{0, 1, 1472, 65507} {
		msg := bytes.Repeat([]byte{0xa5}, size)
		got, err := enginetest.Exchange(c, msg, 5*time.Second)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%d-byte datagram: %d bytes back, equal %v, %v", size, len(got), bytes.Equal(got, msg), err)
		}
	}
	got, err := enginetest.Exchange(c, []byte("other port"), 5*time.Second)
	if err != nil || string(got) != "from the backend's port" {
		t.Fatalf("first answer %q, %v: want the backend's own port's", got, err)
	}
	if got, err := enginetest.ReadDatagram(c, 300*time.Millisecond); err == nil {
		t.Fatalf("a datagram from another port was relayed: %q", got)
	}
}

// kernelDrops is the count of datagrams the kernel dropped at the UDP
// socket bound to 127.0.0.1:port for want of buffer room (/proc/net/udp).
func kernelDrops(t *testing.T, port uint16) float64 {
	t.Helper()
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		t.Skipf("no /proc/net/udp: %v", err)
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 13 && f[1] == local {
			n, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return n
		}
	}
	t.Fatalf("no UDP socket on 127.0.0.1:%d in /proc/net/udp", port)
	return 0
}

// flood sends one datagram from each of n distinct client addresses
// (addr:port over the loopback addresses srcs, ports from 10000 up), each
// socket closed right after its send, on two goroutines. It returns how
// many were sent.
func flood(t *testing.T, to netip.AddrPort, srcs []netip.Addr, n int) int {
	t.Helper()
	var sent atomic.Int64
	var wg sync.WaitGroup
	per := n / len(srcs)
	for _, src := range srcs {
		wg.Go(func() {
			sa := &syscall.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()} // Sendto writes into it
			for port := 10000; port < 10000+per; port++ {
				fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
				if err != nil {
					continue
				}
				if syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: src.As4()}) == nil &&
					syscall.Sendto(fd, []byte("flood"), 0, sa) == nil {
					sent.Add(1)
				}
				syscall.Close(fd)
			}
		})
	}
	wg.Wait()
	return int(sent.Load())
}

// TestUDPFloodOfSourcePorts: 100,000 client addresses (two loopback
// addresses × 50,000 ports) send one datagram each. The flow table stays
// within its bounds — the per-source limit when set, else max_udp_flows —
// the refused datagrams are counted by reason, RSS stays bounded, a client
// that had a flow keeps being answered, and with a per-source limit a new
// client from another address is served during the flood. The flows
// expire after udp_idle_timeout_ms and their descriptors are freed.
func TestUDPFloodOfSourcePorts(t *testing.T) {
	baltest.NeedBinary(t)
	tests := []struct {
		name      string
		service   []string
		maxFlows  float64 // the flow table's bound
		reason    string  // the refusals' reason
		newServed bool    // a new client from 127.0.0.1 is served during the flood
	}{
		{"per-source limit", []string{"max_connections_per_source: 1000"}, 2 * 1000, "source_limit", true},
		{"table limit", nil, 5000, "limit", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testFlood(t, tt.service, tt.maxFlows, tt.reason, tt.newServed) })
	}
}

func testFlood(t *testing.T, service []string, maxFlows float64, reason string, newServed bool) {
	const n = 100000
	b := enginetest.NewUDPBackend(t, enginetest.UDPEcho)
	port := freeUDPPort(t)
	cfg := append(append([]string(nil), service...), "runtime:", "  udp_idle_timeout_ms: 3000", "  max_udp_flows: 5000")
	p, bal := startUDPBal(t, udpConfig("std", port, []netip.AddrPort{b.Addr}, cfg...), port)
	regular := enginetest.DialUDP(t, bal)
	if _, err := enginetest.Exchange(regular, []byte("hello"), 5*time.Second); err != nil {
		t.Fatalf("before the flood: %v", err)
	}
	before := p.Usage()

	// The regular client asks every 20 ms during the flood, retrying a
	// lost datagram (the kernel drops what bal's socket buffer cannot hold
	// while it is flooded).
	stop := make(chan struct{})
	var asked, lost atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			asked.Add(1)
			ok := false
			for range 5 {
				if _, err := enginetest.Exchange(regular, []byte("still there?"), 300*time.Millisecond); err == nil {
					ok = true
					break
				}
			}
			if !ok {
				lost.Add(1)
			}
		}
	})
	began := time.Now()
	sent := flood(t, bal, []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}, n)
	took := time.Since(began)
	newcomer := enginetest.DialUDP(t, bal) // from 127.0.0.1: another source
	_, newErr := enginetest.Exchange(newcomer, []byte("new"), 2*time.Second)
	time.Sleep(200 * time.Millisecond) // let bal read what is queued
	during := p.Usage()
	svc := serviceOf(t, p.Status(), "u")
	close(stop)
	wg.Wait()

	active := svc["active_flows"].(float64)
	dropped := svc["dropped"].(map[string]any)
	kernel := kernelDrops(t, bal.Port())
	t.Logf("sent %d datagrams from distinct addresses in %v; bal: %v flows open, %v dropped %s, %v total flows, %v dropped by the kernel (socket buffer full); RSS %.1f MiB before, %.1f MiB with the flows (%+.1f MiB), %d → %d fds; regular client: %d of %d asked lost",
		sent, took.Round(time.Millisecond), active, dropped[reason], reason, svc["total_flows"], kernel,
		float64(before.RSSKiB)/1024, float64(during.RSSKiB)/1024, float64(during.RSSKiB-before.RSSKiB)/1024, before.FDs, during.FDs, lost.Load(), asked.Load())
	if sent < n*9/10 {
		t.Fatalf("only %d of %d flood datagrams could be sent", sent, n)
	}
	if active > maxFlows+2 { // + the regular client and the newcomer
		t.Fatalf("%v flows open, bound %v", active, maxFlows)
	}
	// Every flood datagram is a flow, a refusal counted by bal, or a drop
	// the kernel counted at bal's socket (bal reads slower than the flood
	// sends); a few may still wait in the socket's buffer.
	flows := svc["total_flows"].(float64) - 2 // the regular client's and the newcomer's at most
	if got := dropped[reason].(float64) + flows + kernel; got < float64(sent)*0.99 {
		t.Fatalf("%v refused (%s) + %v flows + %v kernel drops of %d sent: the refusals are not counted per datagram", dropped[reason], reason, flows, kernel, sent)
	}
	if lost.Load() > 0 {
		t.Fatalf("the regular client lost %d of %d queries during the flood", lost.Load(), asked.Load())
	}
	if (newErr == nil) != newServed {
		t.Fatalf("a new client during the flood: %v (served expected: %v)", newErr, newServed)
	}
	// Generous: a flow costs a socket and a parked goroutine, a few KiB.
	const rssBound = 128 << 10 // KiB
	if grown := during.RSSKiB - before.RSSKiB; grown > rssBound {
		t.Fatalf("RSS grew by %d MiB with %v flows (bound %d MiB)", grown>>10, active, rssBound>>10)
	}
	// The flood's flows expire (3 s without a datagram) and free their
	// descriptors; new clients are served again.
	deadline := time.Now().Add(3*time.Second + 5*time.Second)
	for {
		svc = serviceOf(t, p.Status(), "u")
		if svc["active_flows"].(float64) <= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v flows still open 8 s after the flood (idle timeout 3 s)", svc["active_flows"])
		}
		time.Sleep(200 * time.Millisecond)
	}
	if fds := p.WaitFDs(before.FDs, 4, 5*time.Second); fds > before.FDs+4 {
		t.Fatalf("%d fds after the flows expired, %d before the flood", fds, before.FDs)
	}
	late := enginetest.DialUDP(t, bal)
	if _, err := enginetest.Exchange(late, []byte("after"), 5*time.Second); err != nil {
		t.Fatalf("a new client after the flood: %v", err)
	}
}
