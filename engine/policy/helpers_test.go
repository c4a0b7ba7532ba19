package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
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

func be(host string, port, weight int) config.Backend {
	return config.Backend{Host: host, Port: port, Weight: weight}
}

// service builds a service with the auto-tuned runtime; tune edits it.
func service(m config.Method, tune func(*config.Runtime), bs ...config.Backend) *config.Service {
	rt := config.Profile(len(bs))
	if tune != nil {
		tune(&rt)
	}
	return &config.Service{Name: config.DefaultServiceName, Protocol: config.TCP, Port: 9295, BindAddress: "127.0.0.1", Method: m, Backends: bs, Runtime: rt}
}

type fixture struct {
	p   *Policy
	clk *clock
	log *logBuf
}

func newFixture(t *testing.T, s *config.Service, o Options) *fixture {
	t.Helper()
	f := &fixture{clk: newClock(), log: &logBuf{}}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewJSONHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if o.Now == nil {
		o.Now = f.clk.Now
	}
	f.p = New(s, o)
	return f
}

var (
	errRefused = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	errTimeout = fmt.Errorf("dial 127.0.0.1:9: %w", engine.ErrConnectTimeout)
	errOther   = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}
)

// conn is one client connection driven like an engine drives it.
type conn struct {
	ci        *engine.ConnInfo
	admitted  bool
	noRoute   bool     // admitted, but Route found no pool
	tried     []string // addresses tried, in order
	connected engine.Target
	ok        bool
}

var nextID atomic.Uint64

// connect admits a connection from client and runs Pick/DialResult until a
// connect succeeds or Pick gives up; outcome decides each connect.
func connect(p *Policy, client string, outcome func(engine.Target) error) *conn {
	return connectHello(p, client, engine.Hello{}, outcome)
}

// connectHello is connect for a client whose first bytes inspection found
// to be h: when the service inspects, Route is called with it after Admit,
// as an engine does.
func connectHello(p *Policy, client string, h engine.Hello, outcome func(engine.Target) error) *conn {
	c := &conn{ci: &engine.ConnInfo{ID: nextID.Add(1), Client: netip.MustParseAddrPort(client)}}
	c.ci.Peer = c.ci.Client
	if c.admitted = p.Admit(c.ci); !c.admitted {
		return c
	}
	if p.Service().Inspects() {
		c.ci.Hello = h
		if !p.Route(c.ci) {
			c.noRoute = true
			return c
		}
	}
	for attempt := 0; ; attempt++ {
		t, ok := p.Pick(c.ci, attempt)
		if !ok {
			return c
		}
		c.tried = append(c.tried, t.Addr.String())
		err := outcome(t)
		p.DialResult(c.ci, t, err, time.Millisecond)
		if err == nil {
			c.connected, c.ok = t, true
			return c
		}
		if attempt > 1000 {
			panic("Pick never gave up")
		}
	}
}

// close reports the connection closed.
func (c *conn) close(p *Policy) {
	if !c.admitted {
		return
	}
	info := engine.CloseInfo{Reason: engine.CloseNoBackend}
	switch {
	case c.noRoute:
		info.Reason = engine.CloseNoRoute
	case c.ok:
		info = engine.CloseInfo{Backend: c.connected, BytesIn: 10, BytesOut: 20, Reason: engine.CloseDone, Duration: 1500 * time.Millisecond}
	}
	p.Closed(c.ci, info)
}

// failing returns an outcome refusing the given addresses (err per address).
func failing(errs map[string]error) func(engine.Target) error {
	return func(t engine.Target) error { return errs[t.Addr.String()] }
}

func ok(engine.Target) error { return nil }

func (f *fixture) backend(t *testing.T, addr string) BackendStatus {
	t.Helper()
	for _, b := range f.p.Status().DefaultBackends() {
		if b.Address == addr {
			return b
		}
	}
	t.Fatalf("backend %s not in status", addr)
	return BackendStatus{}
}

func mustAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
