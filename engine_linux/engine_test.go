//go:build linux

package gnetengine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/enginetest"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode))
	}
	// gnet's goroutine pool (ants) starts its janitors at package init and
	// never stops them; IgnoreCurrent excludes exactly what runs now.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

var tunables = engine.Tunables{ConnectTimeout: 2 * time.Second, IdleTimeout: time.Minute}

// startEngine starts a gnet engine with o (Listen defaults to 127.0.0.1:0)
// and closes it at cleanup.
func startEngine(t *testing.T, o engine.Options, p engine.Policy) *Engine {
	t.Helper()
	if !o.Listen.IsValid() {
		o.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	}
	if o.Tunables == nil {
		o.Tunables = engine.NewTunableStore(tunables)
	}
	ei, err := New(o, p)
	if err != nil {
		t.Fatal(err)
	}
	e := ei.(*Engine)
	if err := e.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func dial(t *testing.T, addr netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	if err != nil {
		t.Fatalf("dial %v: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func echoOnce(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo: got %q, %v; want %q", got, err, msg)
	}
}

// eventually polls cond every 10 ms until it holds or within elapses.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v", what, within)
		}
	}
}

func (e *Engine) pipesHeld() (n int64) {
	for _, l := range e.loops {
		n += l.pipesHeld.Load()
	}
	return n
}

func (e *Engine) pipeCounts() (created, destroyed, full int64) {
	for _, l := range e.loops {
		created += l.pipesCreated.Load()
		destroyed += l.pipesDestroyed.Load()
		full += l.pipesFull.Load()
	}
	return
}

// ssListeners returns the Send-Q (the backlog) of every listening socket
// on port, as `ss -ltn` shows them.
func ssListeners(t *testing.T, port uint16) []int {
	t.Helper()
	out, err := exec.Command("ss", "-Hltn", fmt.Sprintf("sport = :%d", port)).Output()
	if err != nil {
		t.Skipf("ss unavailable: %v", err)
	}
	var qs []int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		q, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("ss line %q: %v", line, err)
		}
		qs = append(qs, q)
	}
	return qs
}

func somaxconn(t *testing.T) int {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBacklogEveryListener: tcp_backlog reaches every SO_REUSEPORT listener
// (one per loop, all on the same port even when port 0 was asked for), not
// only the one gnet exposes.
func TestBacklogEveryListener(t *testing.T) {
	max := somaxconn(t)
	tests := []struct {
		name    string
		loops   int
		backlog int
		want    int
	}{
		{"one loop", 1, 7, 7},
		{"three loops", 3, 123, 123},
		{"zero keeps the kernel maximum", 2, 0, min(max, 65535)},
		{"above somaxconn is clamped by the kernel", 2, max + 1000, max},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := enginetest.NewBackend(t, enginetest.Echo)
			e := startEngine(t, engine.Options{Loops: tt.loops, Backlog: tt.backlog}, enginetest.NewPolicy(b.Addr))
			qs := ssListeners(t, e.Addr().Port())
			if len(qs) != tt.loops {
				t.Fatalf("ss shows %d listeners on port %d, want %d (one per loop)", len(qs), e.Addr().Port(), tt.loops)
			}
			for i, q := range qs {
				if q != tt.want {
					t.Fatalf("listener %d backlog %d, want %d (all: %v)", i, q, tt.want, qs)
				}
			}
			echoOnce(t, dial(t, e.Addr()), "through a tuned listener")
		})
	}
}

// TestDualStackWildcard: "::" listens on IPv4 and IPv6, and ConnInfo.Local
// is the address the client really connected to.
func TestDualStackWildcard(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	b := enginetest.NewBackend(t, enginetest.Echo)
	pol := enginetest.NewPolicy(b.Addr)
	e := startEngine(t, engine.Options{Listen: netip.MustParseAddrPort("[::]:0"), Loops: 2}, pol)
	for _, host := range []string{"127.0.0.1", "::1"} {
		to := netip.AddrPortFrom(netip.MustParseAddr(host), e.Addr().Port())
		c := dial(t, to)
		echoOnce(t, c, "hello "+host)
		c.Close()
		cl := pol.WaitClosed(t, 5*time.Second)
		if cl.Conn.Local != to {
			t.Fatalf("ConnInfo.Local = %v, want %v", cl.Conn.Local, to)
		}
		if cl.Conn.Client != c.LocalAddr().(*net.TCPAddr).AddrPort() {
			t.Fatalf("ConnInfo.Client = %v, want %v", cl.Conn.Client, c.LocalAddr())
		}
	}
}

// TestPipesOnlyInFlight: pipes are reused from the pool across transfers,
// and an idle pair holds none.
func TestPipesOnlyInFlight(t *testing.T) {
	b := enginetest.NewBackend(t, enginetest.Echo)
	e := startEngine(t, engine.Options{Loops: 1}, enginetest.NewPolicy(b.Addr))
	var cs []*net.TCPConn
	for i := range 20 {
		c := dial(t, e.Addr())
		echoOnce(t, c, strings.Repeat(strconv.Itoa(i), 100<<10)) // 100–200 KiB each way
		cs = append(cs, c)
	}
	// Twenty open, idle pairs: no pipe held, and only a handful ever made.
	eventually(t, time.Second, "no pipe held by idle pairs", func() bool { return e.pipesHeld() == 0 })
	created, _, full := e.pipeCounts()
	if created > 4 {
		t.Fatalf("%d pipes created for 20 sequential transfers; the pool should reuse them", created)
	}
	if full != 0 {
		t.Fatalf("%d pipes destroyed with bytes in them", full)
	}
	for _, c := range cs {
		c.Close()
	}
}

// TestBackpressureAndFullPipeDestroyed: while the client does not read, the
// engine stops reading the backend (the backend's writes stall, bounded by
// kernel buffers plus one pipe), and a pair reset in that state destroys
// its non-empty pipe instead of pooling it.
func TestBackpressureAndFullPipeDestroyed(t *testing.T) {
	var written atomic.Int64
	b := enginetest.NewBackend(t, func(c *net.TCPConn) {
		_ = c.SetWriteBuffer(64 << 10)
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Write(buf)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	e := startEngine(t, engine.Options{Loops: 1}, enginetest.NewPolicy(b.Addr))
	c := dial(t, e.Addr())
	_ = c.SetReadBuffer(64 << 10)
	first := make([]byte, 1)
	if _, err := io.ReadFull(c, first); err != nil {
		t.Fatal(err)
	}
	// Wait until the backend is blocked: written stops growing.
	var last int64 = -1
	eventually(t, 5*time.Second, "backend writes stall", func() bool {
		time.Sleep(100 * time.Millisecond)
		n := written.Load()
		stalled := n == last
		last = n
		return stalled
	})
	if held := e.pipesHeld(); held != 1 {
		t.Fatalf("%d pipes held while one direction is blocked, want 1", held)
	}
	// Bounded: socket buffers on both hops plus one pipe, far below the
	// unbounded growth of a proxy without backpressure.
	if n := written.Load(); n > 32<<20 {
		t.Fatalf("backend wrote %d MiB into a stalled client", n>>20)
	}
	_ = c.SetLinger(0)
	c.Close()
	eventually(t, 5*time.Second, "pair closed", func() bool { return e.Stats().Active == 0 })
	_, _, full := e.pipeCounts()
	if full != 1 {
		t.Fatalf("pipes destroyed non-empty = %d, want 1", full)
	}
	if held := e.pipesHeld(); held != 0 {
		t.Fatalf("%d pipes still held after close", held)
	}
}

// TestTunablesPerConnection: a reload changes the idle timeout of new
// connections only.
func TestTunablesPerConnection(t *testing.T) {
	b := enginetest.NewBackend(t, enginetest.Echo)
	pol := enginetest.NewPolicy(b.Addr)
	store := engine.NewTunableStore(engine.Tunables{ConnectTimeout: time.Second, IdleTimeout: 300 * time.Millisecond})
	e := startEngine(t, engine.Options{Tunables: store}, pol)
	short := dial(t, e.Addr())
	echoOnce(t, short, "short")
	store.Store(engine.Tunables{ConnectTimeout: time.Second}) // no idle timeout
	long := dial(t, e.Addr())
	echoOnce(t, long, "long")
	cl := pol.WaitClosed(t, 3*time.Second)
	if cl.Info.Reason != engine.CloseIdleTimeout || cl.Conn.ID != 1 {
		t.Fatalf("first close: conn %d reason %q, want conn 1 idle_timeout", cl.Conn.ID, cl.Info.Reason)
	}
	time.Sleep(600 * time.Millisecond)
	echoOnce(t, long, "still open after twice the old timeout")
}

// TestConnectTimeoutAllDown: a backend that never answers the SYN times out
// after the connect timeout, is classified as a timeout, and the client is
// closed with all_backends_unavailable.
func TestConnectTimeoutAllDown(t *testing.T) {
	hole := enginetest.Blackhole(t)
	pol := enginetest.NewPolicy(hole)
	const timeout = 250 * time.Millisecond
	e := startEngine(t, engine.Options{Tunables: engine.NewTunableStore(engine.Tunables{ConnectTimeout: timeout})}, pol)
	began := time.Now()
	c := dial(t, e.Addr())
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.Copy(io.Discard, c)
	el := time.Since(began)
	if el < timeout*9/10 || el > timeout+time.Second {
		t.Fatalf("client closed after %v, want about %v", el, timeout)
	}
	cl := pol.WaitClosed(t, time.Second)
	if cl.Info.Reason != engine.CloseNoBackend {
		t.Fatalf("reason %q", cl.Info.Reason)
	}
	d := pol.Dials()
	if len(d) != 1 || d[0].Reason != engine.FailTimeout || !errors.Is(d[0].Err, engine.ErrConnectTimeout) {
		t.Fatalf("dials %+v, want one timeout wrapping ErrConnectTimeout", d)
	}
}

// TestIdlePairCost: an idle proxied connection costs exactly two
// descriptors in the engine (client and backend socket) and no pipe.
func TestIdlePairCost(t *testing.T) {
	// A read/write echo: io.Copy would splice and hold pipes of its own.
	b := enginetest.NewBackend(t, func(c *net.TCPConn) {
		buf := make([]byte, 512)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	})
	e := startEngine(t, engine.Options{Loops: 2}, enginetest.NewPolicy(b.Addr))
	sockets := func() (n int) {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ents {
			if l, err := os.Readlink("/proc/self/fd/" + d.Name()); err == nil && strings.HasPrefix(l, "socket:") {
				n++
			}
		}
		return n
	}
	before, ownBefore := sockets(), budget.own.Load()
	created0, destroyed0, _ := e.pipeCounts()
	const n = 50
	for i := range n {
		echoOnce(t, dial(t, e.Addr()), "idle "+strconv.Itoa(i))
	}
	eventually(t, time.Second, "no pipe held", func() bool { return e.pipesHeld() == 0 })
	// In this process each pair also has the test's client socket and the
	// backend's accepted socket: 4 sockets per pair in all.
	if got := sockets() - before; got != 4*n {
		t.Fatalf("%d pairs opened %d sockets, want %d (2 in the engine + 2 test ends each)", n, got, 4*n)
	}
	created, destroyed, _ := e.pipeCounts()
	pooled := (created - created0) - (destroyed - destroyed0)
	if got := budget.own.Load() - ownBefore - 2*pooled; got != 2*n {
		t.Fatalf("fd budget counts %d for %d pairs (besides %d pooled pipes), want %d", got, n, pooled, 2*n)
	}
	if pooled > 4 {
		t.Fatalf("%d pipes made for sequential exchanges", pooled)
	}
}

// TestStartErrors: a taken port wraps ErrAddrInUse and leaves nothing
// running; Start after Close is ErrClosed.
func TestStartErrors(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	pol := enginetest.NewPolicy(enginetest.DeadAddr(t))
	ei, err := New(engine.Options{Listen: held.Addr().(*net.TCPAddr).AddrPort(), Tunables: engine.NewTunableStore(tunables), Loops: 2}, pol)
	if err != nil {
		t.Fatal(err)
	}
	if err := ei.Start(context.Background()); !errors.Is(err, engine.ErrAddrInUse) {
		t.Fatalf("Start on a held port: %v, want ErrAddrInUse", err)
	}
	if err := ei.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ei.Start(context.Background()); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Start after Close: %v, want ErrClosed", err)
	}
	if _, err := New(engine.Options{Listen: netip.MustParseAddrPort("127.0.0.1:0")}, pol); err == nil {
		t.Fatal("New without Tunables succeeded")
	}
}

// ---- subprocess tests: RLIMIT_NOFILE pressure and engine death ----

const helperEnv = "GNETENGINE_HELPER"

// helperMain runs an engine in a child process (started by the tests below
// under prlimit) and talks over stdin/stdout:
//
//	mode "serve": prints "addr A"; answers "stats" with
//	"stats accepted rejected active"; Close and exit 0 on stdin EOF;
//	prints "done ERR" and exits 3 if the engine dies.
//	mode "hog": prints "addr A", then opens descriptors until EMFILE,
//	prints "hogged N", waits for Done, prints "done ERR", frees the
//	descriptors, closes the engine and exits 0 (1 without Done).
func helperMain(mode string) int {
	backend, err := netip.ParseAddrPort(os.Getenv("GNETENGINE_BACKEND"))
	if err != nil {
		fmt.Println("error", err)
		return 2
	}
	pol := enginetest.NewPolicy(backend)
	ei, err := New(engine.Options{
		Listen:   netip.MustParseAddrPort("127.0.0.1:0"),
		Loops:    2,
		Tunables: engine.NewTunableStore(tunables),
	}, pol)
	if err != nil {
		fmt.Println("error", err)
		return 2
	}
	if err := ei.Start(context.Background()); err != nil {
		fmt.Println("error", err)
		return 2
	}
	fmt.Println("addr", ei.Addr())
	switch mode {
	case "serve":
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(os.Stdin)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		for {
			select {
			case err := <-ei.Done():
				fmt.Println("done", err)
				return 3
			case line, ok := <-lines:
				if !ok {
					_ = ei.Close()
					return 0
				}
				if line == "stats" {
					s := ei.Stats()
					fmt.Println("stats", s.Accepted, pol.Rejected(), s.Active)
				}
			}
		}
	case "hog":
		var hog []*os.File
		for {
			f, err := os.Open(os.DevNull)
			if err != nil {
				break
			}
			hog = append(hog, f)
		}
		fmt.Println("hogged", len(hog))
		select {
		case err := <-ei.Done():
			fmt.Println("done", err)
		case <-time.After(10 * time.Second):
			fmt.Println("nodone")
			return 1
		}
		for _, f := range hog {
			f.Close()
		}
		_ = ei.Close()
		return 0
	}
	return 2
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	addr  netip.AddrPort
}

// startChild runs this test binary as an engine helper under
// prlimit --nofile=limit:limit.
func startChild(t *testing.T, mode string, limit int, backend netip.AddrPort) *child {
	t.Helper()
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) not installed")
	}
	lim := fmt.Sprintf("--nofile=%d:%d", limit, limit)
	cmd := exec.Command(prlimit, lim, os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "GNETENGINE_BACKEND="+backend.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			ch.lines <- sc.Text()
		}
		close(ch.lines)
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		waited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-waited
		}
	})
	line := ch.next(t, 10*time.Second)
	a, ok := strings.CutPrefix(line, "addr ")
	if !ok {
		t.Fatalf("child said %q, want its address", line)
	}
	ch.addr = netip.MustParseAddrPort(a)
	return ch
}

func (c *child) next(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatal("child exited")
		}
		return l
	case <-time.After(within):
		t.Fatalf("child said nothing within %v", within)
		return ""
	}
}

func (c *child) stats(t *testing.T) (accepted, rejected, active uint64) {
	t.Helper()
	if _, err := io.WriteString(c.stdin, "stats\n"); err != nil {
		t.Fatal(err)
	}
	line := c.next(t, 5*time.Second)
	if _, err := fmt.Sscanf(line, "stats %d %d %d", &accepted, &rejected, &active); err != nil {
		t.Fatalf("child said %q: %v", line, err)
	}
	return
}

// TestFDPressureKeepsServing: an engine under a 64-descriptor limit receives
// far more connections than it can hold. It resets the excess (fd
// headroom) instead of letting gnet's accept hit EMFILE, which would stop
// the listener, and serves normally once the pressure ends.
func TestFDPressureKeepsServing(t *testing.T) {
	b := enginetest.NewBackend(t, enginetest.Echo)
	ch := startChild(t, "serve", 64, b.Addr)

	const burst = 80
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
		ok    atomic.Int64
	)
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", ch.addr.String(), 2*time.Second)
			if err != nil {
				return // reset during the handshake: rejected
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			msg := fmt.Sprintf("burst %d", i)
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, msg); err != nil {
				return
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err == nil && string(got) == msg {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	accepted, rejected, active := ch.stats(t)
	t.Logf("under pressure: %d echoed, accepted %d, rejected %d, active %d", ok.Load(), accepted, rejected, active)
	if ok.Load() == 0 || rejected == 0 {
		t.Fatalf("want some connections served and some rejected: echoed %d, rejected %d", ok.Load(), rejected)
	}
	if accepted+rejected != burst {
		t.Fatalf("accepted %d + rejected %d != %d connections", accepted, rejected, burst)
	}
	for _, c := range conns {
		c.Close()
	}
	eventually(t, 5*time.Second, "child's pairs closed", func() bool {
		_, _, active := ch.stats(t)
		return active == 0
	})
	// Pressure over: every new connection is served.
	for i := range 30 {
		c := dial(t, ch.addr)
		echoOnce(t, c, fmt.Sprintf("after %d", i))
		c.Close()
	}
	// Still alive: the child reports death as "done" and exits.
	if _, rejected2, _ := ch.stats(t); rejected2 != rejected {
		t.Fatalf("rejections continued after the pressure: %d → %d", rejected, rejected2)
	}
}

// TestDoneOnFrontDeath: when the process runs out of descriptors anyway
// (something else took them all), gnet's accept fails with EMFILE and stops
// the listener; the engine reports that on Done instead of losing the
// listener silently.
func TestDoneOnFrontDeath(t *testing.T) {
	b := enginetest.NewBackend(t, enginetest.Echo)
	ch := startChild(t, "hog", 64, b.Addr)
	if l := ch.next(t, 5*time.Second); !strings.HasPrefix(l, "hogged ") {
		t.Fatalf("child said %q", l)
	}
	c, err := net.DialTimeout("tcp", ch.addr.String(), 2*time.Second)
	if err == nil {
		defer c.Close()
	}
	line := ch.next(t, 10*time.Second)
	if !strings.HasPrefix(line, "done ") {
		t.Fatalf("child said %q, want done", line)
	}
	for _, want := range []string{ErrListenerLost.Error(), "too many open files"} {
		if !strings.Contains(line, want) {
			t.Fatalf("Done error %q does not mention %q", line, want)
		}
	}
	if err := ch.cmd.Wait(); err != nil {
		t.Fatalf("child after Done: %v", err)
	}
}

// TestStopIdempotent: Drain and Close may be called in any order and any
// number of times; Done stays silent; the drain deadline cuts open pairs.
func TestStopIdempotent(t *testing.T) {
	b := enginetest.NewBackend(t, enginetest.Echo)
	e := startEngine(t, engine.Options{Loops: 2}, enginetest.NewPolicy(b.Addr))
	c := dial(t, e.Addr())
	echoOnce(t, c, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-e.Done():
		t.Fatalf("Done fired after Drain/Close: %v", err)
	default:
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client still open after drain deadline: %d, %v", n, err)
	}
}

// listPolicy offers Targets in order, one per attempt, and records dials.
type listPolicy struct {
	targets []engine.Target
	mu      sync.Mutex
	errs    []error
	closed  chan engine.CloseInfo
}

func (p *listPolicy) Admit(*engine.ConnInfo) bool                   { return true }
func (p *listPolicy) Refused(*engine.ConnInfo, engine.RejectReason) {}
func (p *listPolicy) Route(*engine.ConnInfo) bool                   { return true }
func (p *listPolicy) Pick(_ *engine.ConnInfo, attempt int) (engine.Target, bool) {
	if attempt >= len(p.targets) {
		return engine.Target{}, false
	}
	return p.targets[attempt], true
}
func (p *listPolicy) DialResult(_ *engine.ConnInfo, _ engine.Target, err error, _ time.Duration) {
	p.mu.Lock()
	p.errs = append(p.errs, err)
	p.mu.Unlock()
}
func (p *listPolicy) Closed(_ *engine.ConnInfo, s engine.CloseInfo) { p.closed <- s }

// TestInvalidTargets: whatever the policy returns, the engine never panics:
// unusable targets fail like a refused connect and failover goes on.
func TestInvalidTargets(t *testing.T) {
	live := enginetest.NewBackend(t, enginetest.Echo)
	tests := []struct {
		name    string
		targets []engine.Target
		served  bool
	}{
		{"zero target then live", []engine.Target{{}, {Addr: live.Addr, Name: "live"}}, true},
		{"port zero then live", []engine.Target{{Addr: netip.MustParseAddrPort("127.0.0.1:0")}, {Addr: live.Addr}}, true},
		{"mapped IPv4 backend", []engine.Target{{Addr: netip.AddrPortFrom(netip.AddrFrom16(live.Addr.Addr().As16()), live.Addr.Port())}}, true},
		{"only invalid", []engine.Target{{}, {}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := &listPolicy{targets: tt.targets, closed: make(chan engine.CloseInfo, 1)}
			e := startEngine(t, engine.Options{}, pol)
			c := dial(t, e.Addr())
			if tt.served {
				echoOnce(t, c, "served")
				c.Close()
			}
			select {
			case ci := <-pol.closed:
				if want := map[bool]engine.CloseReason{true: engine.CloseDone, false: engine.CloseNoBackend}[tt.served]; ci.Reason != want {
					t.Fatalf("reason %q, want %q", ci.Reason, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("never closed")
			}
			pol.mu.Lock()
			defer pol.mu.Unlock()
			for i, err := range pol.errs[:len(pol.errs)-1] {
				if err == nil {
					t.Fatalf("attempt %d on an invalid target succeeded", i)
				}
			}
		})
	}
}

// TestUrgentDataFlattened: TCP urgent data (MSG_OOB) must neither stall the
// pair nor make the loop spin: splice stops at the urgent mark, so the
// engine reads through it inline. The backend receives the byte in place.
func TestUrgentDataFlattened(t *testing.T) {
	got := make(chan string, 1)
	b := enginetest.NewBackend(t, func(c *net.TCPConn) {
		all, _ := io.ReadAll(c)
		got <- string(all)
	})
	e := startEngine(t, engine.Options{Loops: 1}, enginetest.NewPolicy(b.Addr))
	c := dial(t, e.Addr())
	send := func(s string, flags int) {
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		if err := rc.Write(func(fd uintptr) bool {
			serr = unix.Sendto(int(fd), []byte(s), flags, nil)
			return serr != unix.EAGAIN
		}); err != nil || serr != nil {
			t.Fatalf("send %q: %v %v", s, err, serr)
		}
	}
	send("abc", 0)
	time.Sleep(50 * time.Millisecond)
	send("X", unix.MSG_OOB)
	time.Sleep(50 * time.Millisecond)
	send("def", 0)
	_ = c.CloseWrite()
	select {
	case s := <-got:
		if s != "abcXdef" {
			t.Fatalf("backend received %q, want %q", s, "abcXdef")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the pair stalled at the urgent mark")
	}
}
