package enginetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	libproxy "github.com/pires/go-proxyproto"
	"go.uber.org/goleak"

	"github.com/bal-lb/bal/engine"
)

// Options adjust the suite for one engine.
type Options struct {
	// LeakOptions are passed to goleak (e.g. to ignore a process-wide pool
	// the engine's library starts once and never stops).
	LeakOptions []goleak.Option
	// Inspection runs the cases of services that inspect the ClientHello
	// (Tunables.Inspect): routing by SNI, ALPN and source, hellos split
	// over segments and records, not-TLS, silent, oversized and vanishing
	// clients, and bulk transfer behind a hello.
	Inspection bool
	// ProxyIn runs the cases of services that read a PROXY header from an
	// upstream balancer (Tunables.ProxyIn): trusted, LOCAL, untrusted,
	// malformed and silent peers. With Inspection it also runs a PROXY
	// header before the hello.
	ProxyIn bool
}

// Run runs the whole conformance suite against engines made by newEngine.
func Run(t *testing.T, newEngine engine.Factory) { RunWith(t, newEngine, Options{}) }

// RunWith is Run with options.
func RunWith(t *testing.T, newEngine engine.Factory, o Options) {
	s := &suite{newEngine: newEngine, opts: o}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Relay/0B", func(t *testing.T) { s.testRelay(t, 0) }},
		{"Relay/1B", func(t *testing.T) { s.testRelay(t, 1) }},
		{"Relay/64KiB", func(t *testing.T) { s.testRelay(t, 64<<10) }},
		{"Relay/64MiB", func(t *testing.T) { s.testRelay(t, 64<<20) }},
		{"HalfClose/ClientFirst", s.testHalfCloseClientFirst},
		{"HalfClose/BackendFirst", s.testHalfCloseBackendFirst},
		{"BackendWrites8MiBThenCloses", s.testBackendWritesThenCloses},
		{"Reset/FromBackend", s.testResetFromBackend},
		{"Reset/FromClient", s.testResetFromClient},
		{"Reset/ByBackend", s.testResetByBackend},
		{"Reset/WhileStopped", s.testResetStopped},
		{"IdleTimeout/Silent", s.testIdleSilent},
		{"IdleTimeout/TrickleUp", func(t *testing.T) { s.testIdleTrickle(t, true) }},
		{"IdleTimeout/TrickleDown", func(t *testing.T) { s.testIdleTrickle(t, false) }},
		{"SlowReaderBoundedMemory", s.testSlowReader},
		{"Failover/Refused", s.testFailoverRefused},
		{"Failover/ConnectTimeout", s.testFailoverTimeout},
		{"AllBackendsDown", s.testAllDown},
		{"AdmissionLimit", s.testAdmission},
		{"Drain/FinishesInFlight", s.testDrain},
		{"Drain/Deadline", s.testDrainDeadline},
		{"Drain/ServesAcceptQueue", s.testDrainAcceptQueue},
		{"CloseForcesAll", s.testClose},
		{"ProxyProtocol/v1", func(t *testing.T) { s.testProxyProtocol(t, engine.ProxyV1, false) }},
		{"ProxyProtocol/v2", func(t *testing.T) { s.testProxyProtocol(t, engine.ProxyV2, false) }},
		{"ProxyProtocol/v1-IPv6", func(t *testing.T) { s.testProxyProtocol(t, engine.ProxyV1, true) }},
		{"ProxyProtocol/v2-IPv6", func(t *testing.T) { s.testProxyProtocol(t, engine.ProxyV2, true) }},
		{"Concurrent", s.testConcurrent},
		{"AddrInUse", s.testAddrInUse},
		{"Stats", s.testStats},
		{"InvalidOptions", s.testInvalidOptions},
	}
	if o.Inspection {
		tests = append(tests, []struct {
			name string
			fn   func(t *testing.T)
		}{
			{"Inspect/SNIRouting", s.testInspectSNI},
			{"Inspect/ALPNRouting", s.testInspectALPN},
			{"Inspect/SourceRouting", s.testInspectSource},
			{"Inspect/NoRoute", s.testInspectNoRoute},
			{"Inspect/OneBytePerSegment", s.testInspectOneBytePerSegment},
			{"Inspect/TwoRecords", s.testInspectTwoRecords},
			{"Inspect/LargeHello", s.testInspectLargeHello},
			{"Inspect/NotTLS", s.testInspectNotTLS},
			{"Inspect/SilentClient", s.testInspectSilent},
			{"Inspect/TooLarge", s.testInspectTooLarge},
			{"Inspect/ClientCloses", s.testInspectClientCloses},
			{"Inspect/Relay64MiB", s.testInspectRelay},
		}...)
	}
	if o.ProxyIn {
		tests = append(tests, []struct {
			name string
			fn   func(t *testing.T)
		}{
			{"ProxyIn/Trusted", s.testProxyIn},
			{"ProxyIn/KeepsPeer", s.testProxyInLocal},
			{"ProxyIn/Untrusted", s.testProxyInUntrusted},
			{"ProxyIn/Malformed", s.testProxyInMalformed},
			{"ProxyIn/Silent", s.testProxyInSilent},
		}...)
	}
	if o.Inspection && o.ProxyIn {
		tests = append(tests, struct {
			name string
			fn   func(t *testing.T)
		}{"Inspect/AfterProxyHeader", s.testInspectAfterProxyHeader})
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.fn)
	}
}

type suite struct {
	newEngine engine.Factory
	opts      Options
}

type harness struct {
	t   *testing.T
	eng engine.Engine
	pol *Policy
	tun *engine.TunableStore
}

var defaultTunables = engine.Tunables{ConnectTimeout: 2 * time.Second, IdleTimeout: time.Minute}

// start builds and starts an engine on listen (default 127.0.0.1:0). The
// cleanup closes it, then checks that every admitted connection was
// reported Closed exactly once and that no goroutine leaked.
func (s *suite) start(t *testing.T, pol *Policy, tun engine.Tunables, listen string) *harness {
	t.Helper()
	leaks := append([]goleak.Option{goleak.IgnoreCurrent()}, s.opts.LeakOptions...)
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
		deadline := time.Now().Add(3 * time.Second)
		for pol.Active() != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := pol.Active(); n != 0 {
			t.Errorf("%d admitted connections never reported Closed", n)
		}
		if st := eng.Stats(); st.Active != 0 {
			t.Errorf("Stats.Active = %d after Close", st.Active)
		}
		goleak.VerifyNone(t, leaks...)
	})
	return h
}

func (h *harness) dial() *net.TCPConn {
	h.t.Helper()
	c, err := net.DialTimeout("tcp", h.eng.Addr().String(), 2*time.Second)
	if err != nil {
		h.t.Fatalf("dial engine: %v", err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func (h *harness) waitClosed() Closed { h.t.Helper(); return h.pol.WaitClosed(h.t, 5*time.Second) }

// roundTrip writes msg and reads the same number of bytes back.
func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo mismatch")
	}
}

// waitEnd reads until EOF or an error and returns that error (nil for EOF).
func waitEnd(t *testing.T, c net.Conn, within time.Duration) error {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", within)
	}
	return err
}

type sumResult struct {
	sum [32]byte
	n   int64
	err error
}

func (s *suite) testRelay(t *testing.T, size int64) {
	got := make(chan sumResult, 1)
	b := NewBackend(t, func(c *net.TCPConn) {
		r := make(chan sumResult, 1)
		go func() { s, n, err := ReadAllSum(c); r <- sumResult{s, n, err} }()
		if _, err := io.Copy(c, NewStream(2, size)); err != nil {
			got <- sumResult{err: err}
			return
		}
		_ = c.CloseWrite()
		got <- <-r
	})
	h := s.start(t, NewPolicy(b.Addr), defaultTunables, "")
	c := h.dial()
	go func() {
		_, _ = io.Copy(c, NewStream(1, size))
		_ = c.CloseWrite()
	}()
	sum, n, err := ReadAllSum(c)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if n != size || sum != StreamSum(2, size) {
		t.Fatalf("backend→client: got %d bytes (sha match %v), want %d", n, sum == StreamSum(2, size), size)
	}
	r := <-got
	if r.err != nil || r.n != size || r.sum != StreamSum(1, size) {
		t.Fatalf("client→backend: got %d bytes (sha match %v, err %v), want %d", r.n, r.sum == StreamSum(1, size), r.err, size)
	}
	c.Close()
	cl := h.waitClosed()
	if cl.Info.Reason != engine.CloseDone || cl.Info.BytesIn != size || cl.Info.BytesOut != size {
		t.Fatalf("Closed = %+v, want reason done, %d bytes each way", cl.Info, size)
	}
	if cl.Info.Backend.Addr != b.Addr {
		t.Fatalf("Closed backend = %v, want %v", cl.Info.Backend.Addr, b.Addr)
	}
}

func (s *suite) testHalfCloseClientFirst(t *testing.T) {
	b := NewBackend(t, func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c) // until the client's FIN
		fmt.Fprintf(c, "got %d bytes", n)
	})
	h := s.start(t, NewPolicy(b.Addr), defaultTunables, "")
	c := h.dial()
	if _, err := c.Write(bytes.Repeat([]byte("hello"), 1000)); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "got 5000 bytes" {
		t.Fatalf("reply after half-close = %q, %v", reply, err)
	}
}

func (s *suite) testHalfCloseBackendFirst(t *testing.T) {
	after := make(chan string, 1)
	b := NewBackend(t, func(c *net.TCPConn) {
		_, _ = c.Write([]byte("greeting"))
		_ = c.CloseWrite()
		rest, _ := io.ReadAll(c)
		after <- string(rest)
	})
	h := s.start(t, NewPolicy(b.Addr), defaultTunables, "")
	c := h.dial()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	greet, err := io.ReadAll(c) // ends at the backend's FIN
	if err != nil || string(greet) != "greeting" {
		t.Fatalf("greeting = %q, %v", greet, err)
	}
	if _, err := c.Write([]byte("after-eof")); err != nil {
		t.Fatalf("client write after backend FIN: %v", err)
	}
	_ = c.CloseWrite()
	select {
	case got := <-after:
		if got != "after-eof" {
			t.Fatalf("backend got %q after its FIN", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend never got the client's bytes after its own FIN")
	}
}

func (s *suite) testBackendWritesThenCloses(t *testing.T) {
	const size = 8 << 20
	b := NewBackend(t, func(c *net.TCPConn) {
		_, _ = io.Copy(c, NewStream(3, size))
		c.Close()
	})
	h := s.start(t, NewPolicy(b.Addr), defaultTunables, "")
	c := h.dial()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	sum, n, err := ReadAllSum(c)
	if err != nil || n != size || sum != StreamSum(3, size) {
		t.Fatalf("got %d bytes, sha ok %v, err %v; want %d", n, sum == StreamSum(3, size), err, size)
	}
}

func (s *suite) testResetFromBackend(t *testing.T) {
	b := NewBackend(t, func(c *net.TCPConn) {
		one := make([]byte, 1)
		_, _ = io.ReadFull(c, one)
		_ = c.SetLinger(0)
		c.Close()
	})
	h := s.start(t, NewPolicy(b.Addr), defaultTunables, "")
	c := h.dial()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	err := waitEnd(t, c, 5*time.Second)
	if !isReset(err) {
		t.Fatalf("client got %v, want a reset", err)
	}
	if cl := h.waitClosed(); cl.Info.Reason != engine.CloseBackendReset {
		t.Fatalf("close reason %q, want %q", cl.Info.Reason, engine.CloseBackendReset)
	}
}

func (s *suite) testResetFromClient(t *testing.T) {
	ready, result := make(chan struct{}), make(chan error, 1)
	b := NewBackend(t, func(c *net.TCPConn) {
		one := make([]byte, 1)
		_, _ = io.ReadFull(c, one)
		close(ready)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		result <- err
	})
	h := s.start(t, NewPolicy(b.Addr), defaultTunables, "")
	c := h.dial()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("backend never got the first byte")
	}
	_ = c.SetLinger(0)
	c.Close()
	if err := <-result; !isReset(err) {
		t.Fatalf("backend got %v, want a reset", err)
	}
	if cl := h.waitClosed(); cl.Info.Reason != engine.CloseClientReset {
		t.Fatalf("close reason %q, want %q", cl.Info.Reason, engine.CloseClientReset)
	}
}

const idleTimeout = 600 * time.Millisecond

func (s *suite) testIdleSilent(t *testing.T) {
	b := NewBackend(t, Echo)
	h := s.start(t, NewPolicy(b.Addr), engine.Tunables{ConnectTimeout: time.Second, IdleTimeout: idleTimeout}, "")
	c := h.dial()
	roundTrip(t, c, []byte("x"))
	began := time.Now()
	_ = waitEnd(t, c, 10*idleTimeout)
	if el := time.Since(began); el < idleTimeout*3/4 {
		t.Fatalf("closed after %v, before the idle timeout %v", el, idleTimeout)
	}
	if cl := h.waitClosed(); cl.Info.Reason != engine.CloseIdleTimeout {
		t.Fatalf("close reason %q, want %q", cl.Info.Reason, engine.CloseIdleTimeout)
	}
}

// testIdleTrickle moves one byte every 0.4×timeout for 4×timeout in one
// direction only: the pair must survive, because the timeout is about
// inactivity, not age.
func (s *suite) testIdleTrickle(t *testing.T, up bool) {
	const ticks = 10
	step := idleTimeout * 2 / 5
	received := make(chan int, 1)
	b := NewBackend(t, func(c *net.TCPConn) {
		if up {
			n, _ := io.Copy(io.Discard, c)
			received <- int(n)
			return
		}
		for range ticks {
			if _, err := c.Write([]byte{'.'}); err != nil {
				return
			}
			time.Sleep(step)
		}
	})
	h := s.start(t, NewPolicy(b.Addr), engine.Tunables{ConnectTimeout: time.Second, IdleTimeout: idleTimeout}, "")
	c := h.dial()
	if up {
		for range ticks {
			if _, err := c.Write([]byte{'.'}); err != nil {
				t.Fatalf("trickling write failed: %v", err)
			}
			time.Sleep(step)
		}
		_ = c.CloseWrite()
		select {
		case n := <-received:
			if n != ticks {
				t.Fatalf("backend received %d bytes, want %d: the pair was cut while active", n, ticks)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("backend never saw the end of the trickle")
		}
	} else {
		_ = c.SetReadDeadline(time.Now().Add(time.Duration(ticks+5) * step))
		got, err := io.ReadAll(c)
		if err != nil || len(got) != ticks {
			t.Fatalf("client received %d bytes (%v), want %d: the pair was cut while active", len(got), err, ticks)
		}
		c.Close()
	}
	if cl := h.waitClosed(); cl.Info.Reason != engine.CloseDone {
		t.Fatalf("close reason %q, want %q", cl.Info.Reason, engine.CloseDone)
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func (s *suite) testSlowReader(t *testing.T) {
	const size = 64 << 20
	b := NewBackend(t, func(c *net.TCPConn) {
		_, _ = io.CopyBuffer(c, NewStream(4, size), make([]byte, 64<<10))
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
	h := s.start(t, NewPolicy(b.Addr), defaultTunables, "")
	c := h.dial()
	_ = c.SetReadBuffer(64 << 10)
	first := make([]byte, 64<<10)
	if _, err := io.ReadFull(c, first); err != nil {
		t.Fatal(err)
	}
	before := heapInuse()
	time.Sleep(1500 * time.Millisecond) // the client stalls; the backend keeps pushing
	after := heapInuse()
	const bound = 16 << 20
	if after > before && after-before > bound {
		t.Fatalf("heap grew by %d MiB while the reader stalled (bound %d MiB)", (after-before)>>20, bound>>20)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	sum, n, err := ReadAllSum(io.MultiReader(bytes.NewReader(first), c))
	if err != nil || n != size || sum != StreamSum(4, size) {
		t.Fatalf("after the stall: %d bytes, sha ok %v, err %v", n, sum == StreamSum(4, size), err)
	}
	t.Logf("heap in use: %d KiB before the stall, %d KiB during", before>>10, after>>10)
}

func (s *suite) testFailoverRefused(t *testing.T) {
	dead := DeadAddr(t)
	live := NewBackend(t, Echo)
	pol := NewPolicy(dead, live.Addr)
	h := s.start(t, pol, defaultTunables, "")
	for i := range 6 {
		c := h.dial()
		roundTrip(t, c, []byte(fmt.Sprintf("conn %d", i)))
		c.Close()
	}
	refused := 0
	for _, d := range pol.Dials() {
		if d.Target == dead {
			if d.Err == nil || d.Reason != engine.FailRefused {
				t.Fatalf("dial to the dead backend: err %v classified %v, want refused", d.Err, d.Reason)
			}
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("the dead backend was never tried")
	}
}

func (s *suite) testFailoverTimeout(t *testing.T) {
	hole := Blackhole(t)
	live := NewBackend(t, Echo)
	pol := NewPolicy(hole, live.Addr)
	h := s.start(t, pol, engine.Tunables{ConnectTimeout: 300 * time.Millisecond, IdleTimeout: time.Minute}, "")
	c := h.dial() // round robin starts at the blackhole
	roundTrip(t, c, []byte("after a timeout"))
	d := pol.Dials()
	if len(d) < 2 || d[0].Target != hole || d[0].Reason != engine.FailTimeout {
		t.Fatalf("dials = %+v, want a timeout on %v first", d, hole)
	}
}

func (s *suite) testAllDown(t *testing.T) {
	pol := NewPolicy(DeadAddr(t), DeadAddr(t))
	h := s.start(t, pol, defaultTunables, "")
	c := h.dial()
	began := time.Now()
	_ = waitEnd(t, c, 5*time.Second)
	if el := time.Since(began); el > time.Second {
		t.Fatalf("client closed after %v, want under 1 s", el)
	}
	cl := h.waitClosed()
	if cl.Info.Reason != engine.CloseNoBackend {
		t.Fatalf("close reason %q, want %q", cl.Info.Reason, engine.CloseNoBackend)
	}
	if cl.Info.Backend.Addr.IsValid() {
		t.Fatalf("Closed names backend %v though none connected", cl.Info.Backend.Addr)
	}
}

func (s *suite) testAdmission(t *testing.T) {
	b := NewBackend(t, Echo)
	pol := NewPolicy(b.Addr)
	pol.MaxConns = 2
	h := s.start(t, pol, defaultTunables, "")
	c1, c2 := h.dial(), h.dial()
	roundTrip(t, c1, []byte("one"))
	roundTrip(t, c2, []byte("two"))
	// The reset may reach the client while it is still connecting, or
	// before or after its write: the kernel reports it once, to whichever
	// call comes first.
	nc, err := net.DialTimeout("tcp", h.eng.Addr().String(), 2*time.Second)
	if err == nil {
		c3 := nc.(*net.TCPConn)
		_, werr := c3.Write([]byte("three"))
		if err = waitEnd(t, c3, 3*time.Second); isReset(werr) {
			err = werr
		}
		c3.Close()
	}
	if !isReset(err) {
		t.Fatalf("over the limit: client got %v, want a reset", err)
	}
	if r, l := h.pol.Rejected(), h.pol.RejectedBy(engine.RejectLimit); r != 1 || l != 1 {
		t.Fatalf("policy counted %d rejections (%d for the limit), want 1", r, l)
	}
	c1.Close()
	h.waitClosed()
	c4 := h.dial()
	roundTrip(t, c4, []byte("four, after one closed"))
}

func (s *suite) testDrain(t *testing.T) {
	const size, chunk = 8 << 20, 128 << 10
	b := NewBackend(t, func(c *net.TCPConn) {
		src := NewStream(5, size)
		buf := make([]byte, chunk)
		for {
			n, err := src.Read(buf)
			if err != nil {
				break
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond) // about 0.7 s in all
		}
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
	h := s.start(t, NewPolicy(b.Addr), defaultTunables, "")
	c := h.dial()
	first := make([]byte, 1<<20)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, first); err != nil {
		t.Fatal(err)
	}
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		drained <- h.eng.Drain(ctx)
	}()
	refused := false
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		nc, err := net.DialTimeout("tcp", h.eng.Addr().String(), time.Second)
		if err != nil {
			refused = true
			break
		}
		nc.Close()
	}
	if !refused {
		t.Fatal("new connections still accepted 2 s after Drain began")
	}
	sum, n, err := ReadAllSum(io.MultiReader(bytes.NewReader(first), c))
	if err != nil || n != size || sum != StreamSum(5, size) {
		t.Fatalf("in-flight transfer during drain: %d bytes, sha ok %v, err %v", n, sum == StreamSum(5, size), err)
	}
	select {
	case <-drained:
		t.Fatal("Drain returned while a connection was still open")
	default:
	}
	c.Close()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the last connection closed")
	}
}

func (s *suite) testDrainDeadline(t *testing.T) {
	b := NewBackend(t, Echo)
	h := s.start(t, NewPolicy(b.Addr), defaultTunables, "")
	c := h.dial()
	roundTrip(t, c, []byte("held"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := h.eng.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if el := time.Since(began); el > 3*time.Second {
		t.Fatalf("Drain took %v with a 300 ms deadline", el)
	}
	_ = waitEnd(t, c, 3*time.Second)
	if cl := h.waitClosed(); cl.Info.Reason != engine.CloseDrained {
		t.Fatalf("close reason %q, want %q", cl.Info.Reason, engine.CloseDrained)
	}
}

func (s *suite) testClose(t *testing.T) {
	b := NewBackend(t, Echo)
	h := s.start(t, NewPolicy(b.Addr), defaultTunables, "")
	var cs []*net.TCPConn
	for i := range 10 {
		c := h.dial()
		roundTrip(t, c, []byte{byte(i)})
		cs = append(cs, c)
	}
	began := time.Now()
	if err := h.eng.Close(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(began); el > 3*time.Second {
		t.Fatalf("Close took %v", el)
	}
	for _, c := range cs {
		_ = waitEnd(t, c, 3*time.Second)
	}
	for range cs {
		if cl := h.waitClosed(); cl.Info.Reason != engine.CloseDrained {
			t.Fatalf("close reason %q, want %q", cl.Info.Reason, engine.CloseDrained)
		}
	}
	if _, err := net.DialTimeout("tcp", h.eng.Addr().String(), time.Second); err == nil {
		t.Fatal("closed engine still accepts")
	}
}

func (s *suite) testProxyProtocol(t *testing.T, v engine.ProxyProtocol, ipv6 bool) {
	listen, bind := "127.0.0.1:0", "127.0.0.1:0"
	if ipv6 {
		if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		} else {
			ln.Close()
		}
		listen, bind = "[::1]:0", "[::1]:0"
	}
	type hdr struct {
		raw      string
		src, dst netip.AddrPort
		err      error
	}
	got := make(chan hdr, 1)
	b := newBackendOn(t, bind, func(c *net.TCPConn) {
		r := bufio.NewReader(c)
		var hd hdr
		if v == engine.ProxyV1 {
			hd.raw, hd.err = r.ReadString('\n')
		} else {
			var h *libproxy.Header
			if h, hd.err = libproxy.Read(r); hd.err == nil {
				hd.src = h.SourceAddr.(*net.TCPAddr).AddrPort()
				hd.dst = h.DestinationAddr.(*net.TCPAddr).AddrPort()
			}
		}
		got <- hd
		_, _ = io.Copy(c, r) // echo the payload that follows the header
	})
	h := s.start(t, NewPolicy(b.Addr), engine.Tunables{ConnectTimeout: time.Second, IdleTimeout: time.Minute, ProxyProtocol: v}, listen)
	c := h.dial()
	roundTrip(t, c, []byte("payload after the header"))
	hd := <-got
	if hd.err != nil {
		t.Fatalf("backend could not read the PROXY header: %v", hd.err)
	}
	client := c.LocalAddr().(*net.TCPAddr).AddrPort()
	local := h.eng.Addr()
	if v == engine.ProxyV1 {
		fam := "TCP4"
		if ipv6 {
			fam = "TCP6"
		}
		want := fmt.Sprintf("PROXY %s %s %s %d %d\r\n", fam, client.Addr(), local.Addr(), client.Port(), local.Port())
		if hd.raw != want {
			t.Fatalf("header %q, want %q", hd.raw, want)
		}
		return
	}
	if hd.src != client || hd.dst != local {
		t.Fatalf("v2 header says %v → %v, want %v → %v", hd.src, hd.dst, client, local)
	}
}

func (s *suite) testConcurrent(t *testing.T) {
	b := NewBackend(t, Echo)
	h := s.start(t, NewPolicy(b.Addr), defaultTunables, "")
	const clients, rounds = 48, 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", h.eng.Addr().String(), 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for r := range rounds {
				msg := make([]byte, 1+rng.IntN(16<<10))
				for j := range msg {
					msg[j] = byte(rng.Uint32())
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(msg); err != nil {
					errs <- fmt.Errorf("client %d round %d write: %w", i, r, err)
					return
				}
				back := make([]byte, len(msg))
				if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, msg) {
					errs <- fmt.Errorf("client %d round %d: echo mismatch or %v", i, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func (s *suite) testAddrInUse(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	pol := NewPolicy(DeadAddr(t))
	eng, err := s.newEngine(engine.Options{Listen: held.Addr().(*net.TCPAddr).AddrPort(), Tunables: engine.NewTunableStore(defaultTunables)}, pol)
	if err != nil {
		t.Fatal(err)
	}
	err = eng.Start(context.Background())
	if err == nil {
		eng.Close()
		t.Fatal("Start succeeded on a port another socket holds")
	}
	if !errors.Is(err, engine.ErrAddrInUse) {
		t.Fatalf("Start error %v does not wrap engine.ErrAddrInUse", err)
	}
	_ = eng.Close()
}

func (s *suite) testStats(t *testing.T) {
	b := NewBackend(t, func(c *net.TCPConn) {
		_, _ = io.Copy(io.Discard, c)
		_, _ = c.Write(make([]byte, 3000))
	})
	h := s.start(t, NewPolicy(b.Addr), defaultTunables, "")
	c := h.dial()
	if _, err := c.Write(make([]byte, 1234)); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := io.Copy(io.Discard, c)
	if n != 3000 {
		t.Fatalf("client read %d bytes, want 3000", n)
	}
	h.waitClosed()
	st := h.eng.Stats()
	if st.Accepted != 1 || st.BytesIn != 1234 || st.BytesOut != 3000 || st.Active != 0 {
		t.Fatalf("Stats = %+v, want 1 accepted, 1234 in, 3000 out, 0 active", st)
	}
}

// testDrainAcceptQueue: clients whose handshake the kernel completed but
// that the engine had not accepted yet when Drain closed the listener are
// served, not reset (a reload that moves the listener drains the old one
// under load). The first Admit is held so that later clients queue.
func (s *suite) testDrainAcceptQueue(t *testing.T) {
	b := NewBackend(t, Echo)
	pol := NewPolicy(b.Addr)
	entered, gate := make(chan struct{}), make(chan struct{})
	var once sync.Once
	pol.OnAdmit = func(*engine.ConnInfo) {
		first := false
		once.Do(func() { first = true })
		if first {
			close(entered)
			<-gate
		}
	}
	h := s.start(t, pol, defaultTunables, "")
	cs := []*net.TCPConn{h.dial()}
	<-entered
	for range 8 {
		cs = append(cs, h.dial())
	}
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- h.eng.Drain(ctx)
	}()
	time.Sleep(200 * time.Millisecond) // Drain is closing the listener
	close(gate)
	served := 0
	for i, c := range cs {
		msg := []byte(fmt.Sprintf("queued %d", i))
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		back := make([]byte, len(msg))
		if _, err := c.Write(msg); err == nil {
			if _, err := io.ReadFull(c, back); err == nil && bytes.Equal(back, msg) {
				served++
			}
		}
		c.Close()
	}
	if served != len(cs) {
		t.Fatalf("%d of %d clients waiting at drain were served", served, len(cs))
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
}

// testInvalidOptions: New refuses unusable options and a nil policy with an
// error wrapping engine.ErrInvalidOptions (engine.Options.Validate), and
// accepts the same options once they are fixed.
func (s *suite) testInvalidOptions(t *testing.T) {
	good := func() engine.Options {
		return engine.Options{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Tunables: engine.NewTunableStore(defaultTunables)}
	}
	with := func(edit func(*engine.Options)) engine.Options { o := good(); edit(&o); return o }
	tunables := func(edit func(*engine.Tunables)) engine.Options {
		t := defaultTunables
		edit(&t)
		return with(func(o *engine.Options) { o.Tunables = engine.NewTunableStore(t) })
	}
	pol := NewPolicy(DeadAddr(t))
	tests := []struct {
		name string
		opts engine.Options
		pol  engine.Policy
	}{
		{"no listen address", with(func(o *engine.Options) { o.Listen = netip.AddrPort{} }), pol},
		{"negative backlog", with(func(o *engine.Options) { o.Backlog = -1 }), pol},
		{"negative loops", with(func(o *engine.Options) { o.Loops = -2 }), pol},
		{"no tunables", with(func(o *engine.Options) { o.Tunables = nil }), pol},
		{"empty tunable store", with(func(o *engine.Options) { o.Tunables = &engine.TunableStore{} }), pol},
		{"no connect timeout", tunables(func(t *engine.Tunables) { t.ConnectTimeout = 0 }), pol},
		{"negative idle timeout", tunables(func(t *engine.Tunables) { t.IdleTimeout = -time.Second }), pol},
		{"unknown PROXY protocol version", tunables(func(t *engine.Tunables) { t.ProxyProtocol = engine.ProxyV2 + 1 }), pol},
		{"unknown inbound PROXY mode", tunables(func(t *engine.Tunables) {
			t.ProxyIn, t.ProxyHeaderTimeout, t.Trusted = engine.ProxyInAny+1, time.Second, loopback
		}), pol},
		{"inbound PROXY without a header timeout", tunables(func(t *engine.Tunables) { t.ProxyIn, t.Trusted = engine.ProxyInV2, loopback }), pol},
		{"inbound PROXY without trusted proxies", tunables(func(t *engine.Tunables) { t.ProxyIn, t.ProxyHeaderTimeout = engine.ProxyInV1, time.Second }), pol},
		{"inspection without a timeout", tunables(func(t *engine.Tunables) { t.Inspect = true }), pol},
		{"negative UDP idle timeout", tunables(func(t *engine.Tunables) { t.UDPIdleTimeout = -time.Second }), pol},
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
	// The same tunables with every reading feature on and complete.
	eng, err = s.newEngine(tunables(func(t *engine.Tunables) {
		t.ProxyIn, t.ProxyHeaderTimeout, t.Trusted = engine.ProxyInAny, time.Second, loopback
		t.Inspect, t.InspectTimeout = true, time.Second
	}), pol)
	if err != nil {
		t.Fatalf("New with PROXY in and inspection set up: %v", err)
	}
	_ = eng.Close()
}
