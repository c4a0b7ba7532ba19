package enginetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bal-lb/bal/engine"
)

// RunUDP runs the UDP conformance suite against engines made by newEngine
// (an engine package's NewUDP): datagrams of 0 B to 65,507 B relayed whole
// both ways, order within a flow, flow stickiness and round robin across
// flows, expiry after the idle timeout, ICMP port unreachable ending a flow
// and reported as a refused connect, refusals counted per datagram, bounded
// memory with a backend or a client that does not read, replies from the
// address the client sent to (wildcard binds included), replies from
// another backend port dropped, drain, close, address in use, invalid
// options, and goroutine and descriptor leaks.
func RunUDP(t *testing.T, newEngine engine.Factory) { RunUDPWith(t, newEngine, Options{}) }

// RunUDPWith is RunUDP with options.
func RunUDPWith(t *testing.T, newEngine engine.Factory, o Options) {
	s := &udpSuite{newEngine: newEngine, opts: o}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"RoundTrip", s.testRoundTrip},
		{"Sizes/0B", func(t *testing.T) { s.testSize(t, 0) }},
		{"Sizes/1B", func(t *testing.T) { s.testSize(t, 1) }},
		{"Sizes/1472B", func(t *testing.T) { s.testSize(t, 1472) }},
		{"Sizes/9000B", func(t *testing.T) { s.testSize(t, 9000) }},
		{"Sizes/65507B", func(t *testing.T) { s.testSize(t, engine.MaxDatagram) }},
		{"InOrder200", s.testInOrder},
		{"Sticky", s.testSticky},
		{"RoundRobinAcrossFlows", s.testRoundRobin},
		{"Expiry/Silent", s.testExpirySilent},
		{"Expiry/KeptByClient", func(t *testing.T) { s.testExpiryKept(t, true) }},
		{"Expiry/KeptByBackend", func(t *testing.T) { s.testExpiryKept(t, false) }},
		{"ICMPUnreachable", s.testICMP},
		{"LimitPerDatagram", s.testLimit},
		{"NoBackend", s.testNoBackend},
		{"NonReadingBackendBoundedMemory", s.testSilentBackend},
		{"NonReadingClientBoundedMemory", s.testSilentClient},
		{"ReplyFromOtherPortDropped", s.testOtherPort},
		{"RepliedOncePerFlow", s.testReplied},
		{"WildcardRepliesFromDestination/IPv4", func(t *testing.T) { s.testWildcard(t, "0.0.0.0:0") }},
		{"WildcardRepliesFromDestination/DualStack", func(t *testing.T) { s.testWildcard(t, "[::]:0") }},
		{"IPv6", s.testIPv6},
		{"Drain/FlowsContinue", s.testDrain},
		{"Drain/Deadline", s.testDrainDeadline},
		{"CloseEndsAll", s.testClose},
		{"Concurrent", s.testConcurrent},
		{"AddrInUse", s.testAddrInUse},
		{"Stats", s.testStats},
		{"InvalidOptions", s.testInvalidOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.fn)
	}
}

type udpSuite struct {
	newEngine engine.Factory
	opts      Options
}

// udpTunables are the suite's defaults: a minute of idle timeout.
var udpTunables = engine.Tunables{ConnectTimeout: time.Second, UDPIdleTimeout: time.Minute}

const wait = 5 * time.Second // a generous bound for anything that should happen at once

// start builds and starts a UDP engine on listen (default 127.0.0.1:0).
// The cleanup closes it, then checks that every admitted flow was reported
// Closed once, that Stats.Active is 0, and that no goroutine or descriptor
// leaked.
func (s *udpSuite) start(t *testing.T, pol *Policy, tun engine.Tunables, listen string) *harness {
	t.Helper()
	leaks := append([]goleak.Option{goleak.IgnoreCurrent()}, s.opts.LeakOptions...)
	fds := openFDs()
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	h := &harness{t: t, pol: pol, tun: engine.NewTunableStore(tun)}
	eng, err := s.newEngine(engine.Options{Listen: netip.MustParseAddrPort(listen), Tunables: h.tun}, pol)
	if err != nil {
		t.Fatalf("new engine: %v", err)
	}
	if err := eng.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	h.eng = eng
	t.Cleanup(func() {
		if err := eng.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if !waitFor(3*time.Second, func() bool { return pol.Active() == 0 }) {
			t.Errorf("%d admitted flows never reported Closed", pol.Active())
		}
		if st := eng.Stats(); st.Active != 0 {
			t.Errorf("Stats.Active = %d after Close", st.Active)
		}
		goleak.VerifyNone(t, leaks...)
		if fds >= 0 {
			// Clients made after start are closed by now (cleanups run
			// last-in first-out); backends made before are still open.
			if !waitFor(time.Second, func() bool { return openFDs() <= fds }) {
				t.Errorf("%d descriptors open after Close, %d before Start", openFDs(), fds)
			}
		}
	})
	return h
}

// waitStats waits until the engine's Stats satisfy ok: an engine may count
// a datagram just after the reply it caused reached the client.
func (h *harness) waitStats(ok func(engine.Stats) bool) (engine.Stats, bool) {
	var st engine.Stats
	good := waitFor(wait, func() bool { st = h.eng.Stats(); return ok(st) })
	return st, good
}

// udpAddr is where clients send: the engine's address, or on a wildcard
// bind the loopback address of its family.
func (h *harness) udpAddr() netip.AddrPort {
	a := h.eng.Addr()
	if a.Addr().IsUnspecified() {
		lo := netip.MustParseAddr("127.0.0.1")
		if a.Addr().Is6() {
			lo = netip.IPv6Loopback()
		}
		a = netip.AddrPortFrom(lo, a.Port())
	}
	return a
}

func (h *harness) client() *net.UDPConn { h.t.Helper(); return DialUDP(h.t, h.udpAddr()) }

// exchange sends msg and fails the test unless want comes back.
func exchange(t *testing.T, c *net.UDPConn, msg, want []byte) {
	t.Helper()
	got, err := Exchange(c, msg, wait)
	if err != nil {
		t.Fatalf("no reply to a %d-byte datagram: %v", len(msg), err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("reply of %d bytes, want %d (equal: false)", len(got), len(want))
	}
}

func (s *udpSuite) testRoundTrip(t *testing.T) {
	b := NewUDPBackend(t, UDPEcho)
	h := s.start(t, NewPolicy(b.Addr), udpTunables, "")
	c := h.client()
	exchange(t, c, []byte("hello"), []byte("hello"))
	exchange(t, c, []byte("again"), []byte("again"))
	if st := h.eng.Stats(); st.Accepted != 1 || st.Active != 1 {
		t.Fatalf("Stats = %+v, want one flow, open", st)
	}
}

func (s *udpSuite) testSize(t *testing.T, size int) {
	b := NewUDPBackend(t, UDPEcho)
	h := s.start(t, NewPolicy(b.Addr), udpTunables, "")
	c := h.client()
	_ = c.SetReadBuffer(1 << 20)
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i*7 + i>>8)
	}
	exchange(t, c, msg, msg)
	if st, ok := h.waitStats(func(st engine.Stats) bool {
		return st.BytesIn == uint64(size) && st.BytesOut == uint64(size) && st.DatagramsIn == 1 && st.DatagramsOut == 1
	}); !ok {
		t.Fatalf("Stats = %+v, want one datagram of %d bytes each way", st, size)
	}
}

func (s *udpSuite) testInOrder(t *testing.T) {
	const n = 200
	var mu sync.Mutex
	var atBackend []uint32
	b := NewUDPBackend(t, func(b *UDPBackend, from netip.AddrPort, p []byte) {
		mu.Lock()
		atBackend = append(atBackend, binary.BigEndian.Uint32(p))
		mu.Unlock()
		b.Reply(from, p)
	})
	h := s.start(t, NewPolicy(b.Addr), udpTunables, "")
	c := h.client()
	_ = c.SetReadBuffer(1 << 20)
	got := make(chan []uint32, 1)
	go func() {
		var seqs []uint32
		for len(seqs) < n {
			p, err := ReadDatagram(c, wait)
			if err != nil {
				break
			}
			seqs = append(seqs, binary.BigEndian.Uint32(p))
		}
		got <- seqs
	}()
	msg := make([]byte, 64)
	for i := range n {
		binary.BigEndian.PutUint32(msg, uint32(i))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	seqs := <-got
	inOrder := func(s []uint32) bool {
		for i, v := range s {
			if v != uint32(i) {
				return false
			}
		}
		return true
	}
	mu.Lock()
	defer mu.Unlock()
	if len(atBackend) != n || !inOrder(atBackend) {
		t.Fatalf("backend received %d of %d datagrams, in order: %v", len(atBackend), n, inOrder(atBackend))
	}
	if len(seqs) != n || !inOrder(seqs) {
		t.Fatalf("client received %d of %d replies, in order: %v", len(seqs), n, inOrder(seqs))
	}
}

func (s *udpSuite) testSticky(t *testing.T) {
	a, b := NewUDPBackend(t, UDPTagged("a:")), NewUDPBackend(t, UDPTagged("b:"))
	h := s.start(t, NewPolicy(a.Addr, b.Addr), udpTunables, "")
	c := h.client()
	first := ""
	for i := range 20 {
		got, err := Exchange(c, []byte{byte(i)}, wait)
		if err != nil {
			t.Fatal(err)
		}
		tag := string(got[:2])
		if first == "" {
			first = tag
		}
		if tag != first {
			t.Fatalf("datagram %d of one client went to %q, the first to %q", i, tag, first)
		}
	}
	if st := h.eng.Stats(); st.Accepted != 1 {
		t.Fatalf("one client made %d flows", st.Accepted)
	}
}

func (s *udpSuite) testRoundRobin(t *testing.T) {
	a, b := NewUDPBackend(t, UDPTagged("a:")), NewUDPBackend(t, UDPTagged("b:"))
	h := s.start(t, NewPolicy(a.Addr, b.Addr), udpTunables, "")
	var tags []string
	for range 4 {
		got, err := Exchange(h.client(), []byte("x"), wait)
		if err != nil {
			t.Fatal(err)
		}
		tags = append(tags, string(got[:2]))
	}
	if want := []string{"a:", "b:", "a:", "b:"}; fmt.Sprint(tags) != fmt.Sprint(want) {
		t.Fatalf("four clients went to %v, want %v", tags, want)
	}
}

const udpIdle = 300 * time.Millisecond

func (s *udpSuite) testExpirySilent(t *testing.T) {
	b := NewUDPBackend(t, UDPEcho)
	tun := udpTunables
	tun.UDPIdleTimeout = udpIdle
	h := s.start(t, NewPolicy(b.Addr), tun, "")
	c := h.client()
	exchange(t, c, []byte("once"), []byte("once"))
	began := time.Now()
	cl := h.pol.WaitClosed(t, udpIdle+wait)
	el := time.Since(began)
	if cl.Info.Reason != engine.CloseIdleTimeout {
		t.Fatalf("close reason %q, want %q", cl.Info.Reason, engine.CloseIdleTimeout)
	}
	if el < udpIdle*3/4 {
		t.Fatalf("flow ended %v after its last datagram, before the idle timeout %v", el, udpIdle)
	}
	if cl.Info.BytesIn != 4 || cl.Info.BytesOut != 4 || cl.Info.Backend.Addr != b.Addr {
		t.Fatalf("Closed = %+v, want 4 bytes each way to %v", cl.Info, b.Addr)
	}
	if !waitFor(wait, func() bool { return h.eng.Stats().Active == 0 }) {
		t.Fatalf("Stats.Active = %d after expiry", h.eng.Stats().Active)
	}
	t.Logf("flow ended %v after its last datagram (idle timeout %v)", el, udpIdle)
	// The client's next datagram is a new flow.
	exchange(t, c, []byte("later"), []byte("later"))
	if st := h.eng.Stats(); st.Accepted != 2 {
		t.Fatalf("Stats.Accepted = %d, want 2 flows", st.Accepted)
	}
}

// testExpiryKept sends one datagram every 0.4 × timeout for 4 × timeout in
// one direction only: the flow must live on, because every datagram either
// way restarts its timer.
func (s *udpSuite) testExpiryKept(t *testing.T, byClient bool) {
	const ticks = 10
	step := udpIdle * 2 / 5
	b := NewUDPBackend(t, func(b *UDPBackend, from netip.AddrPort, p []byte) {
		if byClient || string(p) != "start" {
			return
		}
		go func() { // the backend trickles towards the client
			for range ticks {
				time.Sleep(step)
				b.Reply(from, []byte("."))
			}
		}()
	})
	tun := udpTunables
	tun.UDPIdleTimeout = udpIdle
	h := s.start(t, NewPolicy(b.Addr), tun, "")
	c := h.client()
	if _, err := c.Write([]byte("start")); err != nil {
		t.Fatal(err)
	}
	if byClient {
		for range ticks {
			time.Sleep(step)
			if _, err := c.Write([]byte(".")); err != nil {
				t.Fatal(err)
			}
		}
		if !waitFor(wait, func() bool { return b.Received() == ticks+1 }) {
			t.Fatalf("backend received %d of %d datagrams", b.Received(), ticks+1)
		}
	} else {
		for i := range ticks {
			if _, err := ReadDatagram(c, wait); err != nil {
				t.Fatalf("reply %d of the trickle: %v", i, err)
			}
		}
	}
	if st := h.eng.Stats(); st.Accepted != 1 {
		t.Fatalf("the flow was cut while active: %d flows", st.Accepted)
	}
	select {
	case cl := <-h.pol.closed:
		t.Fatalf("flow closed while active: %+v", cl.Info)
	default:
	}
}

func (s *udpSuite) testICMP(t *testing.T) {
	dead := DeadUDP(t)
	live := NewUDPBackend(t, UDPEcho)
	pol := NewPolicy(dead, live.Addr)
	h := s.start(t, pol, udpTunables, "")
	c := h.client()
	if _, err := c.Write([]byte("to the dead one")); err != nil {
		t.Fatal(err)
	}
	cl := h.pol.WaitClosed(t, wait)
	if cl.Info.Reason != engine.CloseBackendUnreachable || cl.Info.Backend.Addr != dead {
		t.Fatalf("first flow Closed %+v, want %q on %v", cl.Info, engine.CloseBackendUnreachable, dead)
	}
	if cl.Conn.Client != c.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("Closed for client %v, want %v", cl.Conn.Client, c.LocalAddr())
	}
	refused := 0
	for _, d := range pol.Dials() {
		if d.Target == dead && d.Err != nil {
			if d.Reason != engine.FailRefused {
				t.Fatalf("ICMP reported as %v (%v), want refused", d.Reason, d.Err)
			}
			refused++
		}
	}
	if refused != 1 {
		t.Fatalf("%d refused results for the dead backend, want 1: %+v", refused, pol.Dials())
	}
	// The same client's next datagram starts a new flow, which picks again.
	exchange(t, c, []byte("next"), []byte("next"))
	if st := h.eng.Stats(); st.Accepted != 2 || st.Active != 1 {
		t.Fatalf("Stats = %+v, want 2 flows, 1 open", st)
	}
}

func (s *udpSuite) testLimit(t *testing.T) {
	b := NewUDPBackend(t, UDPEcho)
	pol := NewPolicy(b.Addr)
	pol.MaxConns = 2
	tun := udpTunables
	tun.UDPIdleTimeout = udpIdle
	h := s.start(t, pol, tun, "")
	c1, c2, c3 := h.client(), h.client(), h.client()
	exchange(t, c1, []byte("one"), []byte("one"))
	exchange(t, c2, []byte("two"), []byte("two"))
	for range 3 {
		if _, err := c3.Write([]byte("three")); err != nil {
			t.Fatal(err)
		}
	}
	if !waitFor(wait, func() bool { return pol.RejectedBy(engine.RejectLimit) == 3 }) {
		t.Fatalf("policy counted %d refusals for the limit, want 3 (one per datagram)", pol.RejectedBy(engine.RejectLimit))
	}
	if got, err := ReadDatagram(c3, 200*time.Millisecond); err == nil {
		t.Fatalf("a refused flow got a reply %q", got)
	}
	if st, ok := h.waitStats(func(st engine.Stats) bool { return st.Accepted == 2 && st.DatagramsIn == 2 }); !ok {
		t.Fatalf("Stats = %+v: refused datagrams were relayed", st)
	}
	// Once the two flows expire, the third client is served.
	h.pol.WaitClosed(t, udpIdle+wait)
	h.pol.WaitClosed(t, udpIdle+wait)
	exchange(t, c3, []byte("three"), []byte("three"))
}

func (s *udpSuite) testNoBackend(t *testing.T) {
	h := s.start(t, NewPolicy(), udpTunables, "")
	c := h.client()
	if _, err := c.Write([]byte("nowhere")); err != nil {
		t.Fatal(err)
	}
	cl := h.pol.WaitClosed(t, wait)
	if cl.Info.Reason != engine.CloseNoBackend {
		t.Fatalf("close reason %q, want %q", cl.Info.Reason, engine.CloseNoBackend)
	}
	if !waitFor(wait, func() bool { return h.eng.Stats().Dropped[engine.DropNoBackend] == 1 }) {
		t.Fatalf("Stats.Dropped = %v, want 1 %s", h.eng.Stats().Dropped, engine.DropNoBackend)
	}
}

// testSilentBackend floods a backend that never reads: bal holds no queue
// of its own (the kernel drops what the backend's buffer cannot take), and
// another flow is served meanwhile.
func (s *udpSuite) testSilentBackend(t *testing.T) {
	silent := SilentUDP(t)
	echo := NewUDPBackend(t, UDPEcho)
	h := s.start(t, NewPolicy(silent, echo.Addr), udpTunables, "")
	flood := h.client()
	if _, err := flood.Write([]byte("first")); err != nil { // the first flow: the silent backend
		t.Fatal(err)
	}
	if !waitFor(wait, func() bool { return h.eng.Stats().Accepted == 1 }) {
		t.Fatal("the flood's flow never opened")
	}
	other := h.client() // the second flow: the echo backend
	exchange(t, other, []byte("before"), []byte("before"))
	before := heapInuse()
	goroutines := runtime.NumGoroutine()
	msg := make([]byte, 1024)
	const n = 20000 // 20 MiB at a backend whose buffer holds a few KiB
	for range n {
		_, _ = flood.Write(msg)
	}
	exchange(t, other, []byte("during"), []byte("during"))
	after := heapInuse()
	const bound = 16 << 20
	if after > before && after-before > bound {
		t.Fatalf("heap grew by %d MiB while a backend did not read (bound %d MiB)", (after-before)>>20, bound>>20)
	}
	if g := runtime.NumGoroutine(); g > goroutines+4 {
		t.Fatalf("goroutines grew from %d to %d", goroutines, g)
	}
	st := h.eng.Stats()
	t.Logf("heap in use: %d KiB before the flood, %d KiB after; relayed %d datagrams, dropped %v", before>>10, after>>10, st.DatagramsIn, st.Dropped)
	if st.Accepted != 2 {
		t.Fatalf("Stats.Accepted = %d, want 2 flows", st.Accepted)
	}
}

// testSilentClient: a backend answers every datagram with ten, to a client
// that never reads: bal's memory stays bounded and another client is served.
func (s *udpSuite) testSilentClient(t *testing.T) {
	burst := NewUDPBackend(t, func(b *UDPBackend, from netip.AddrPort, p []byte) {
		if len(p) == 1 { // the other client: one echo
			b.Reply(from, p)
			return
		}
		for range 10 {
			b.Reply(from, p)
		}
	})
	h := s.start(t, NewPolicy(burst.Addr), udpTunables, "")
	mute := h.client()
	_ = mute.SetReadBuffer(4 << 10)
	other := h.client()
	exchange(t, other, []byte("x"), []byte("x"))
	before := heapInuse()
	msg := make([]byte, 1024)
	for range 2000 {
		_, _ = mute.Write(msg)
	}
	// The flood is over once the backend's count stops moving.
	last := int64(-1)
	waitFor(wait, func() bool {
		time.Sleep(50 * time.Millisecond)
		n := burst.Received()
		defer func() { last = n }()
		return n == last
	})
	exchange(t, other, []byte("y"), []byte("y"))
	after := heapInuse()
	const bound = 16 << 20
	if after > before && after-before > bound {
		t.Fatalf("heap grew by %d MiB while a client did not read (bound %d MiB)", (after-before)>>20, bound>>20)
	}
	st := h.eng.Stats()
	t.Logf("heap in use: %d KiB before, %d KiB after; %d replies relayed, dropped %v", before>>10, after>>10, st.DatagramsOut, st.Dropped)
}

// testOtherPort: a backend that answers from another port than the one
// the flow sent to is not heard (a flow's socket is connected to its
// backend's address:port); its answer from the right port is.
func (s *udpSuite) testOtherPort(t *testing.T) {
	other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	b := NewUDPBackend(t, func(b *UDPBackend, from netip.AddrPort, p []byte) {
		_, _ = other.WriteToUDPAddrPort([]byte("from another port"), from)
		b.Reply(from, []byte("from the backend's port"))
	})
	h := s.start(t, NewPolicy(b.Addr), udpTunables, "")
	c := h.client()
	got, err := Exchange(c, []byte("q"), wait)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "from the backend's port" {
		t.Fatalf("first reply %q: a datagram from another port was relayed", got)
	}
	if got, err := ReadDatagram(c, 300*time.Millisecond); err == nil {
		t.Fatalf("a datagram from another port was relayed: %q", got)
	}
	if st, ok := h.waitStats(func(st engine.Stats) bool { return st.DatagramsOut == 1 }); !ok {
		t.Fatalf("Stats.DatagramsOut = %d, want 1", st.DatagramsOut)
	}
}

func (s *udpSuite) testReplied(t *testing.T) {
	b := NewUDPBackend(t, func(b *UDPBackend, from netip.AddrPort, p []byte) {
		b.Reply(from, p)
		b.Reply(from, p)
	})
	h := s.start(t, NewPolicy(b.Addr), udpTunables, "")
	for range 2 {
		c := h.client()
		for range 3 {
			exchange(t, c, []byte("q"), []byte("q"))
			if _, err := ReadDatagram(c, wait); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := h.pol.RepliedFlows()
	if len(got) != 2 {
		t.Fatalf("Replied for %d flows, want 2: %v", len(got), got)
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("Replied %d times for flow %d, want once", n, id)
		}
	}
}

// testWildcard: on a wildcard address, a client connected to one of the
// host's addresses hears from that address (a connected UDP socket drops
// datagrams from any other).
func (s *udpSuite) testWildcard(t *testing.T, listen string) {
	if runtime.GOOS != "linux" {
		t.Skip("needs 127.0.0.0/8 on loopback")
	}
	b := NewUDPBackend(t, UDPEcho)
	h := s.start(t, NewPolicy(b.Addr), udpTunables, listen)
	port := h.eng.Addr().Port()
	dsts := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}
	if netip.MustParseAddrPort(listen).Addr().Is6() {
		dsts = append(dsts, netip.IPv6Loopback())
	}
	for _, d := range dsts {
		to := netip.AddrPortFrom(d, port)
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
		if err != nil {
			t.Skipf("no route to %v: %v", to, err)
		}
		defer c.Close()
		exchange(t, c, []byte("to "+d.String()), []byte("to "+d.String()))
	}
	// The flows know the address each client sent to.
	if err := h.eng.Close(); err != nil {
		t.Fatal(err)
	}
	locals := map[netip.Addr]bool{}
	for range dsts {
		cl := h.pol.WaitClosed(t, wait)
		locals[cl.Conn.Local.Addr()] = true
		if cl.Conn.Local.Port() != port {
			t.Fatalf("ConnInfo.Local %v, want port %d", cl.Conn.Local, port)
		}
	}
	for _, d := range dsts {
		if !locals[d] {
			t.Fatalf("no flow has Local %v: %v", d, locals)
		}
	}
}

func (s *udpSuite) testIPv6(t *testing.T) {
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		c.Close()
	}
	b := newUDPBackendOn(t, "[::1]:0", UDPEcho)
	h := s.start(t, NewPolicy(b.Addr), udpTunables, "[::1]:0")
	c := h.client()
	msg := bytes.Repeat([]byte("v6"), 30000)
	exchange(t, c, msg, msg)
}

func (s *udpSuite) testDrain(t *testing.T) {
	b := NewUDPBackend(t, UDPEcho)
	tun := udpTunables
	tun.UDPIdleTimeout = 500 * time.Millisecond
	h := s.start(t, NewPolicy(b.Addr), tun, "")
	c := h.client()
	exchange(t, c, []byte("before"), []byte("before"))
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		drained <- h.eng.Drain(ctx)
	}()
	// New clients are not served once the drain began (each try is a
	// new client, as one that got in before it would keep its flow); the
	// flow is.
	if !waitFor(wait, func() bool {
		_, _ = h.client().Write([]byte("late"))
		return h.eng.Stats().Dropped[engine.DropDraining] > 0
	}) {
		t.Fatal("new flows still opened after Drain began")
	}
	flows := h.eng.Stats().Accepted
	for i := range 5 {
		msg := []byte(fmt.Sprintf("during %d", i))
		exchange(t, c, msg, msg)
	}
	select {
	case <-drained:
		t.Fatal("Drain returned while a flow was active")
	default:
	}
	// Silence: the flow expires and Drain returns.
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(wait + tun.UDPIdleTimeout):
		t.Fatal("Drain did not return after the last flow expired")
	}
	for range flows {
		if cl := h.pol.WaitClosed(t, wait); cl.Info.Reason != engine.CloseIdleTimeout {
			t.Fatalf("close reason %q, want %q", cl.Info.Reason, engine.CloseIdleTimeout)
		}
	}
	if st := h.eng.Stats(); st.Accepted != flows {
		t.Fatalf("Stats.Accepted = %d, %d when the first late datagram was dropped", st.Accepted, flows)
	}
}

func (s *udpSuite) testDrainDeadline(t *testing.T) {
	b := NewUDPBackend(t, UDPEcho)
	h := s.start(t, NewPolicy(b.Addr), udpTunables, "")
	exchange(t, h.client(), []byte("held"), []byte("held"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := h.eng.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if el := time.Since(began); el > wait {
		t.Fatalf("Drain took %v with a 300 ms deadline", el)
	}
	if cl := h.pol.WaitClosed(t, wait); cl.Info.Reason != engine.CloseDrained {
		t.Fatalf("close reason %q, want %q", cl.Info.Reason, engine.CloseDrained)
	}
}

func (s *udpSuite) testClose(t *testing.T) {
	b := NewUDPBackend(t, UDPEcho)
	h := s.start(t, NewPolicy(b.Addr), udpTunables, "")
	for i := range 10 {
		exchange(t, h.client(), []byte{byte(i)}, []byte{byte(i)})
	}
	if err := h.eng.Close(); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if cl := h.pol.WaitClosed(t, wait); cl.Info.Reason != engine.CloseDrained {
			t.Fatalf("close reason %q, want %q", cl.Info.Reason, engine.CloseDrained)
		}
	}
	// The port is free again.
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(h.eng.Addr()))
	if err != nil {
		t.Fatalf("the service's port is still held after Close: %v", err)
	}
	c.Close()
}

func (s *udpSuite) testConcurrent(t *testing.T) {
	a, b := NewUDPBackend(t, UDPEcho), NewUDPBackend(t, UDPEcho)
	h := s.start(t, NewPolicy(a.Addr, b.Addr), udpTunables, "")
	const clients, rounds = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		c := h.client()
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 9))
			for r := range rounds {
				msg := make([]byte, rng.IntN(8<<10))
				for j := range msg {
					msg[j] = byte(rng.Uint32())
				}
				got, err := Exchange(c, msg, wait)
				if err != nil || !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("client %d round %d: echo mismatch or %v", i, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st, ok := h.waitStats(func(st engine.Stats) bool {
		return st.Accepted == clients && st.DatagramsIn == clients*rounds && st.DatagramsOut == clients*rounds
	}); !ok {
		t.Fatalf("Stats = %+v, want %d flows and %d datagrams each way", st, clients, clients*rounds)
	}
}

func (s *udpSuite) testAddrInUse(t *testing.T) {
	held, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	eng, err := s.newEngine(engine.Options{Listen: held.LocalAddr().(*net.UDPAddr).AddrPort(), Tunables: engine.NewTunableStore(udpTunables)}, NewPolicy())
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	err = eng.Start(context.Background())
	if err == nil {
		t.Fatal("Start succeeded on a port another socket holds")
	}
	if !errors.Is(err, engine.ErrAddrInUse) {
		t.Fatalf("Start error %v does not wrap engine.ErrAddrInUse", err)
	}
}

func (s *udpSuite) testStats(t *testing.T) {
	b := NewUDPBackend(t, func(b *UDPBackend, from netip.AddrPort, p []byte) { b.Reply(from, append(p, p...)) })
	tun := udpTunables
	tun.UDPIdleTimeout = udpIdle
	h := s.start(t, NewPolicy(b.Addr), tun, "")
	c := h.client()
	for _, n := range []int{10, 20, 30} {
		if _, err := Exchange(c, make([]byte, n), wait); err != nil {
			t.Fatal(err)
		}
	}
	cl := h.pol.WaitClosed(t, udpIdle+wait)
	if cl.Info.BytesIn != 60 || cl.Info.BytesOut != 120 {
		t.Fatalf("Closed bytes %d in, %d out; want 60, 120", cl.Info.BytesIn, cl.Info.BytesOut)
	}
	st := h.eng.Stats()
	want := engine.Stats{Accepted: 1, BytesIn: 60, BytesOut: 120, DatagramsIn: 3, DatagramsOut: 3}
	if st != want {
		t.Fatalf("Stats = %+v, want %+v", st, want)
	}
}

func (s *udpSuite) testInvalidOptions(t *testing.T) {
	good := func() engine.Options {
		return engine.Options{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Tunables: engine.NewTunableStore(udpTunables)}
	}
	tunables := func(edit func(*engine.Tunables)) engine.Options {
		tu := udpTunables
		edit(&tu)
		o := good()
		o.Tunables = engine.NewTunableStore(tu)
		return o
	}
	pol := NewPolicy()
	tests := []struct {
		name string
		opts engine.Options
		pol  engine.Policy
	}{
		{"no listen address", func() engine.Options { o := good(); o.Listen = netip.AddrPort{}; return o }(), pol},
		{"no tunables", func() engine.Options { o := good(); o.Tunables = nil; return o }(), pol},
		{"no idle timeout", tunables(func(t *engine.Tunables) { t.UDPIdleTimeout = 0 }), pol},
		{"outbound PROXY header", tunables(func(t *engine.Tunables) { t.ProxyProtocol = engine.ProxyV2 }), pol},
		{"inbound PROXY header", tunables(func(t *engine.Tunables) {
			t.ProxyIn, t.ProxyHeaderTimeout, t.Trusted = engine.ProxyInV1, time.Second, netip.MustParsePrefix("127.0.0.0/8")
		}), pol},
		{"inspection", tunables(func(t *engine.Tunables) { t.Inspect, t.InspectTimeout = true, time.Second }), pol},
		{"nil policy", good(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eng, err := s.newEngine(tt.opts, tt.pol)
			if !errors.Is(err, engine.ErrInvalidOptions) {
				if eng != nil {
					_ = eng.Close()
				}
				t.Fatalf("New: %v, want an error wrapping engine.ErrInvalidOptions", err)
			}
			if eng != nil {
				t.Fatalf("New returned an engine with its error %v", err)
			}
		})
	}
	eng, err := s.newEngine(good(), pol)
	if err != nil {
		t.Fatalf("New with the fixed options: %v", err)
	}
	_ = eng.Close()
}
