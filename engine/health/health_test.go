package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/pool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// source is a Source whose round can be changed between rounds.
type source struct {
	mu sync.Mutex
	r  Round
}

func (s *source) HealthRound() Round {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.r
	r.Backends = slices.Clone(r.Backends)
	return r
}

func (s *source) set(f func(r *Round)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.r)
}

// logBuf collects JSON log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) lines(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(l.b.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func newLogger() (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// listen opens a loopback listener that accepts and closes connections.
func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln
}

func backendFor(t *testing.T, host string, port int) *pool.Backend {
	t.Helper()
	return pool.NewBackend(config.Backend{Host: host, Port: port, Weight: 1})
}

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

func TestCheckerDownAndUpWithThresholds(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	port := portOf(ln)
	b := backendFor(t, "127.0.0.1", port)
	log, lb := newLogger()
	clock := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	src := &source{r: Round{Backends: []*pool.Backend{b}, Interval: time.Hour, Timeout: time.Second, Rise: 2, Fall: 2}}
	c := New(src, Options{Logger: log, Now: func() time.Time { return clock }})
	ctx := t.Context()

	c.RunRound(ctx)
	if h := b.Health(); !h.Known || !h.Up || h.Successes != 1 || !b.LastCheck().Equal(clock) || c.Rounds() != 1 {
		t.Fatalf("after a good check: %+v last %v rounds %d", h, b.LastCheck(), c.Rounds())
	}
	ln.Close()
	c.RunRound(ctx)
	if !b.Up() {
		t.Fatal("down after one failure with fall 2")
	}
	c.RunRound(ctx)
	if b.Up() {
		t.Fatalf("still up after two failures: %+v", b.Health())
	}
	downs := lb.lines("backend down")
	if len(downs) != 1 || downs[0]["level"] != "WARN" || downs[0]["backend"] != b.Name() || downs[0]["via"] != "health_check" || downs[0]["error"] == nil {
		t.Fatalf("down log %v", downs)
	}

	// The failover layer put it in cooldown meanwhile.
	b.Failed(1, pool.Backoff{Initial: time.Hour, Max: time.Hour})
	listen(t, "127.0.0.1:"+strconv.Itoa(port))
	c.RunRound(ctx)
	if b.Up() || !b.InCooldown(2) {
		t.Fatal("up after one success with rise 2")
	}
	c.RunRound(ctx)
	if !b.Up() || b.InCooldown(2) || b.Streak() != 0 {
		t.Fatalf("recovered: up %v cooldown %d streak %d", b.Up(), b.CooldownUntil(), b.Streak())
	}
	if ups := lb.lines("backend up"); len(ups) != 1 || ups[0]["level"] != "INFO" || ups[0]["successes"] != 2.0 {
		t.Fatalf("up log %v", ups)
	}
}

func TestFirstRoundAtStartup(t *testing.T) {
	live := listen(t, "127.0.0.1:0")
	dead := listen(t, "127.0.0.1:0")
	dead.Close() // refused from now on
	a, d := backendFor(t, "127.0.0.1", portOf(live)), backendFor(t, "127.0.0.1", portOf(dead))
	src := &source{r: Round{Backends: []*pool.Backend{a, d}, Interval: time.Hour, Timeout: time.Second, Rise: 3, Fall: 3}}
	c := New(src, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	waitFor(t, 2*time.Second, func() bool { return c.Rounds() >= 1 })
	if d.Up() || !a.Up() || !a.Health().Known {
		t.Fatalf("after the start-up round: dead %+v live %+v", d.Health(), a.Health())
	}
	if c.LastRound().IsZero() {
		t.Fatal("last round not recorded")
	}
}

func TestRoundsNeverOverlap(t *testing.T) {
	var inFlight, maxInFlight, dials atomic.Int64
	block := func(ctx context.Context, _, _ string) (net.Conn, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		dials.Add(1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		<-ctx.Done() // a black hole: every check runs into its timeout
		return nil, ctx.Err()
	}
	bs := []*pool.Backend{backendFor(t, "127.0.0.1", 1), backendFor(t, "::1", 1)}
	// The timeout (60 ms) is longer than the interval (10 ms).
	src := &source{r: Round{Backends: bs, Interval: 10 * time.Millisecond, Timeout: 60 * time.Millisecond, Rise: 1, Fall: 1}}
	c := New(src, Options{Dial: block})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	start := time.Now()
	go func() { c.Run(ctx); close(done) }()
	waitFor(t, 5*time.Second, func() bool { return c.Rounds() >= 3 })
	cancel()
	<-done
	if m := maxInFlight.Load(); m != int64(len(bs)) {
		t.Fatalf("%d checks in flight at once, want exactly one per backend (%d)", m, len(bs))
	}
	if el := time.Since(start); el < 3*60*time.Millisecond {
		t.Fatalf("3 rounds in %v: rounds overlapped or were not spaced by the timeout", el)
	}
	for _, b := range bs {
		if b.Up() {
			t.Fatalf("%s up after timed-out checks", b.Name())
		}
	}
}

// resolver is an injected DNS.
type resolver struct {
	mu    sync.Mutex
	addrs []netip.Addr
	err   error
	calls int
}

func (r *resolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if network != "ip" || host != "app.test" {
		return nil, errors.New("unexpected lookup " + network + " " + host)
	}
	return r.addrs, r.err
}

func (r *resolver) set(a []netip.Addr, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs, r.err = a, err
}

var errNXDomain = errors.New("no such host")

func TestHostnameResolvedEveryRoundAllAddressesTried(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	port := portOf(ln)
	b := backendFor(t, "app.test", port)
	if len(b.Addrs()) != 0 {
		t.Fatal("hostname backend has addresses before any lookup")
	}
	// ::1 first: nothing listens there on that port, so the check must go
	// on to 127.0.0.1. The duplicate (IPv4-mapped) is dropped.
	res := &resolver{addrs: []netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::ffff:127.0.0.1")}}
	log, lb := newLogger()
	src := &source{r: Round{Backends: []*pool.Backend{b}, Interval: time.Hour, Timeout: time.Second, Rise: 1, Fall: 2}}
	c := New(src, Options{Resolver: res, Logger: log})
	c.RunRound(t.Context())
	want := []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("::1"), uint16(port)), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))}
	if !slices.Equal(b.Addrs(), want) || !b.Up() || !b.Health().Known {
		t.Fatalf("addrs %v health %+v", b.Addrs(), b.Health())
	}

	// DNS fails: each failure counts, the cached addresses stay for the
	// data path.
	res.set(nil, errNXDomain)
	c.RunRound(t.Context())
	c.RunRound(t.Context())
	if b.Up() || !slices.Equal(b.Addrs(), want) {
		t.Fatalf("after two DNS failures: health %+v addrs %v", b.Health(), b.Addrs())
	}
	downs := lb.lines("backend down")
	if len(downs) != 1 || !bytes.Contains([]byte(downs[0]["error"].(string)), []byte("resolve app.test")) {
		t.Fatalf("down log %v", downs)
	}
	err := c.Check(t.Context(), b, time.Second)
	if !errors.Is(err, errNXDomain) {
		t.Fatalf("Check error %v does not wrap the resolver's", err)
	}

	// An empty answer is a failure too.
	res.set(nil, nil)
	if err := c.Check(t.Context(), b, time.Second); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("empty answer: %v", err)
	}

	// DNS back with a new address set: refreshed at the next round.
	res.set([]netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil)
	c.RunRound(t.Context())
	if !b.Up() || !slices.Equal(b.Addrs(), want[1:]) {
		t.Fatalf("after DNS recovery: health %+v addrs %v", b.Health(), b.Addrs())
	}
	if res.calls != 6 {
		t.Fatalf("%d lookups, want one per check (6)", res.calls)
	}
}

func TestResolveAtStartup(t *testing.T) {
	ip := backendFor(t, "127.0.0.1", 9)
	name := backendFor(t, "app.test", 9)
	res := &resolver{addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	c := New(&source{r: Round{Backends: []*pool.Backend{ip, name}, Timeout: time.Second}}, Options{Resolver: res})
	if err := c.Resolve(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(name.Addrs(), []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}) || name.Health().Known || res.calls != 1 {
		t.Fatalf("addrs %v health %+v lookups %d", name.Addrs(), name.Health(), res.calls)
	}
	if err := c.Resolve(t.Context()); err != nil || res.calls != 1 {
		t.Fatalf("resolved again (%d lookups): %v", res.calls, err)
	}
	other := backendFor(t, "app.test", 10)
	res.set(nil, errNXDomain)
	c2 := New(&source{r: Round{Backends: []*pool.Backend{other}, Timeout: time.Second}}, Options{Resolver: res})
	if err := c2.Resolve(t.Context()); !errors.Is(err, errNXDomain) || len(other.Addrs()) != 0 || other.Health().Known {
		t.Fatalf("failed lookup: %v addrs %v", err, other.Addrs())
	}
}

func TestAllAddressesFail(t *testing.T) {
	dead := listen(t, "127.0.0.1:0")
	dead.Close()
	b := backendFor(t, "app.test", portOf(dead))
	res := &resolver{addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}}
	c := New(&source{}, Options{Resolver: res})
	err := c.Check(t.Context(), b, time.Second)
	if err == nil {
		t.Fatal("check of a closed port succeeded")
	}
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("error %v does not carry the dial errors", err)
	}
}

// hosts is an injected DNS that knows a fixed set of names.
type hosts map[string][]netip.Addr

func (h hosts) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := h[host]; ok {
		return a, nil
	}
	return nil, errNXDomain
}

// TestProbe: one outcome per backend, in order, told apart as a doctor
// needs it: reachable, refused, unresolved, resolved to nothing.
func TestProbe(t *testing.T) {
	up := portOf(listen(t, "127.0.0.1:0"))
	dead := listen(t, "127.0.0.1:0")
	dead.Close()
	res := hosts{"app.test": {netip.MustParseAddr("127.0.0.1")}, "empty.test": {}}
	backends := []config.Backend{
		{Host: "127.0.0.1", Port: up, Weight: 1},
		{Host: "127.0.0.1", Port: portOf(dead), Weight: 1},
		{Host: "app.test", Port: up, Weight: 1},
		{Host: "gone.test", Port: up, Weight: 1},
		{Host: "empty.test", Port: up, Weight: 1},
	}
	errs := Probe(t.Context(), backends, time.Second, Options{Resolver: res})
	if len(errs) != len(backends) {
		t.Fatalf("%d outcomes for %d backends", len(errs), len(backends))
	}
	var re *ResolveError
	tests := []struct {
		name     string
		err      error
		ok       bool
		resolve  bool
		wraps    error
		contains string
	}{
		{"IP literal, listening", errs[0], true, false, nil, ""},
		{"IP literal, refused", errs[1], false, false, syscall.ECONNREFUSED, "connection refused"},
		{"hostname, listening", errs[2], true, false, nil, ""},
		{"hostname that does not resolve", errs[3], false, true, errNXDomain, "resolve gone.test: no such host"},
		{"hostname without addresses", errs[4], false, true, ErrNoAddress, "resolve empty.test: no address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.err == nil) != tt.ok {
				t.Fatalf("error %v, want ok=%v", tt.err, tt.ok)
			}
			if tt.ok {
				return
			}
			if errors.As(tt.err, &re) != tt.resolve {
				t.Errorf("error %v: a *ResolveError is %v, want %v", tt.err, !tt.resolve, tt.resolve)
			}
			if !errors.Is(tt.err, tt.wraps) || !strings.Contains(tt.err.Error(), tt.contains) {
				t.Errorf("error %q does not wrap %v or lacks %q", tt.err, tt.wraps, tt.contains)
			}
		})
	}
}

func TestReloadsApplyLive(t *testing.T) {
	ln1, ln2 := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	a, b := backendFor(t, "127.0.0.1", portOf(ln1)), backendFor(t, "127.0.0.1", portOf(ln2))
	src := &source{r: Round{Backends: []*pool.Backend{a}, Interval: 20 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1}}
	c := New(src, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	waitFor(t, 2*time.Second, func() bool { return c.Rounds() >= 2 })
	if !b.LastCheck().IsZero() {
		t.Fatal("backend not configured yet was checked")
	}
	// A reload adds b and makes the interval long: b is checked by the
	// next round, which the reload triggers at once.
	src.set(func(r *Round) { r.Backends = append(r.Backends, b); r.Interval = time.Hour })
	c.Trigger()
	waitFor(t, 2*time.Second, func() bool { return !b.LastCheck().IsZero() })
	n := c.Rounds()
	time.Sleep(100 * time.Millisecond)
	if c.Rounds() > n+1 {
		t.Fatalf("rounds went on at the old interval: %d → %d", n, c.Rounds())
	}
	// A removed backend is no longer checked.
	src.set(func(r *Round) { r.Backends = []*pool.Backend{b} })
	last, m := a.LastCheck(), c.Rounds()
	c.Trigger()
	waitFor(t, 2*time.Second, func() bool { return c.Rounds() > m })
	if !a.LastCheck().Equal(last) {
		t.Fatal("removed backend still checked")
	}
}

func TestRunStopsPromptly(t *testing.T) {
	hang := func(ctx context.Context, _, _ string) (net.Conn, error) { <-ctx.Done(); return nil, ctx.Err() }
	b := backendFor(t, "127.0.0.1", 1)
	src := &source{r: Round{Backends: []*pool.Backend{b}, Interval: time.Hour, Timeout: time.Hour, Rise: 1, Fall: 1}}
	c := New(src, Options{Dial: hang})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run did not return within 1 s of cancel")
	}
	if h := b.Health(); h.Known || !b.LastCheck().IsZero() || c.Rounds() != 0 {
		t.Fatalf("a check cut short by shutdown was recorded: %+v", h)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestLocalFailureNotCounted: a check that fails because bal itself is out
// of descriptors or local ports says nothing about the backend.
func TestLocalFailureNotCounted(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.EADDRNOTAVAIL} {
		t.Run(errno.Error(), func(t *testing.T) {
			b := backendFor(t, "127.0.0.1", 9)
			local := func(ctx context.Context, network, addr string) (net.Conn, error) {
				return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", errno)}
			}
			src := &source{r: Round{Backends: []*pool.Backend{b}, Interval: time.Hour, Timeout: time.Second, Rise: 1, Fall: 1}}
			c := New(src, Options{Dial: local})
			for range 3 {
				c.RunRound(t.Context())
			}
			if h := b.Health(); h.Known || !b.Up() || h.Fails != 0 {
				t.Fatalf("a local failure counted against the backend: %+v", h)
			}
		})
	}
}

// TestMirrorsShareOneProbe: a server listed in two pools is resolved and
// probed once a round; the other pool's backend gets the same addresses,
// check time and rise/fall observation, and transitions are logged for
// each pool with the round's logger.
func TestMirrorsShareOneProbe(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	port := portOf(ln)
	cfg := []config.Backend{{Host: "app.test", Port: port, Weight: 1}}
	web, _, _ := pool.New("web", cfg, nil)
	api, _, _ := pool.New("api", cfg, nil)
	probe, mirror := web.At(0), api.At(0)
	res := &resolver{addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	roundLog, lb := newLogger()
	checkerLog, clb := newLogger()
	clock := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	src := &source{r: Round{Backends: []*pool.Backend{probe}, Mirrors: [][]*pool.Backend{{mirror}}, Logger: roundLog, Timeout: time.Second, Rise: 1, Fall: 1}}
	c := New(src, Options{Resolver: res, Logger: checkerLog, Now: func() time.Time { return clock }})

	if err := c.Resolve(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))}
	if !slices.Equal(mirror.Addrs(), want) || res.calls != 1 {
		t.Fatalf("after Resolve: mirror addrs %v, %d lookups", mirror.Addrs(), res.calls)
	}
	c.RunRound(t.Context())
	for _, b := range []*pool.Backend{probe, mirror} {
		if h := b.Health(); !h.Known || !h.Up || h.Successes != 1 || !b.LastCheck().Equal(clock) {
			t.Fatalf("%s after a good round: %+v last check %v", b.Pool(), h, b.LastCheck())
		}
	}
	if res.calls != 2 {
		t.Fatalf("%d lookups after one round, want one per round", res.calls)
	}
	ln.Close()
	c.RunRound(t.Context())
	if probe.Up() || mirror.Up() {
		t.Fatal("still up after a failed round with fall 1")
	}
	downs := lb.lines("backend down")
	if len(downs) != 2 || downs[0]["pool"] == downs[1]["pool"] || len(clb.lines("backend down")) != 0 {
		t.Fatalf("down lines %v (checker's logger: %v)", downs, clb.lines("backend down"))
	}
}
