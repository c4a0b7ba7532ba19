package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/enginetest"
	stdengine "github.com/bal-lb/bal/engine_darwin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stdEngines is the tests' Options.Engines: the portable engine for the
// runtime.engine values the tests write ("std", and "auto" by default).
// The engines themselves are tested by their own packages and the
// conformance suite; cmd/bal maps the real table.
func stdEngines(name string) (Engine, error) {
	switch name {
	case config.EngineStd, config.EngineAuto, "":
		return Engine{Name: config.EngineStd, New: stdengine.New, Cost: stdengine.Cost()}, nil
	}
	return Engine{}, fmt.Errorf("runtime.engine %q: not available in these tests", name)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// nameBackend answers every connection with its own name and closes.
func nameBackend(t *testing.T, name string) *enginetest.Backend {
	return enginetest.NewBackend(t, func(c *net.TCPConn) { _, _ = io.WriteString(c, name) })
}

type cfg struct {
	port     int
	backends []netip.AddrPort
	extra    string
}

func (c cfg) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode: advanced\nport: %d\nbind_address: 127.0.0.1\nlog_level: debug\nruntime:\n  engine: %s\n  health_check_interval_ms: 200\n%s\nbackends:\n", c.port, engineName, c.extra)
	for _, a := range c.backends {
		fmt.Fprintf(&b, "  - host: %q\n    port: %d\n", a.Addr().String(), a.Port())
	}
	return b.String()
}

// engineName is the runtime.engine the tests run with.
const engineName = config.EngineStd

func TestServer(t *testing.T) {
	tests := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"RoundRobinAndStatus", testRoundRobinAndStatus},
		{"ReloadRejectedKeepsServing", testReloadRejectedKeepsServing},
		{"ReloadBackendsLive", testReloadBackendsLive},
		{"ReloadPortChange", testReloadPortChange},
		{"ReloadPortTakenRejected", testReloadPortTakenRejected},
		{"StartPortInUse", testStartPortInUse},
		{"ConnectionsSurviveManyReloads", testConnectionsSurviveManyReloads},
		{"ListenerDeathRestartsThenFatal", testListenerDeathRestartsThenFatal},
		{"MetricsListener", testMetricsListener},
		{"BacklogReload", testBacklogReload},
		{"StartWithoutEngines", testStartWithoutEngines},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.fn)
	}
}

func writeCfg(t *testing.T, path string, c cfg) *config.Snapshot {
	t.Helper()
	if err := os.WriteFile(path, []byte(c.yaml()), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, c.yaml())
	}
	return s
}

func startServer(t *testing.T, snap *config.Snapshot) *Server {
	t.Helper()
	s := New(snap, Options{Engines: stdEngines, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func ask(t *testing.T, addr string) (string, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func testRoundRobinAndStatus(t *testing.T) {
	a, b := nameBackend(t, "a"), nameBackend(t, "b")
	port := freePort(t)
	s := startServer(t, writeCfg(t, filepath.Join(t.TempDir(), "c.yaml"), cfg{port: port, backends: []netip.AddrPort{a.Addr, b.Addr}}))
	counts := map[string]int{}
	for range 10 {
		got, err := ask(t, fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		counts[got]++
	}
	if counts["a"] != 5 || counts["b"] != 5 {
		t.Fatalf("distribution %v, want 5/5", counts)
	}
	st := s.Status()
	if st.Engine != engineName || st.Listen.Port() != uint16(port) || st.Accepted != 10 || st.Policy.Total != 10 {
		t.Fatalf("status %+v", st)
	}
	if st.LastReload != nil || st.Reloads != 0 {
		t.Fatalf("reload state before any reload: %+v", st)
	}
}

func testReloadRejectedKeepsServing(t *testing.T) {
	a := nameBackend(t, "a")
	port := freePort(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	s := startServer(t, writeCfg(t, path, cfg{port: port, backends: []netip.AddrPort{a.Addr}}))
	if err := os.WriteFile(path, []byte("port: 70000\nbogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := s.ReloadFile(context.Background())
	if !errors.Is(err, ErrReloadRejected) || !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("reload error %v, want ErrReloadRejected wrapping config.ErrInvalid", err)
	}
	if r.OK || !strings.Contains(r.Error, "bogus") {
		t.Fatalf("result %+v: want the cause (the unknown key) in the error", r)
	}
	if got, err := ask(t, fmt.Sprintf("127.0.0.1:%d", port)); err != nil || got != "a" {
		t.Fatalf("after a rejected reload: %q, %v", got, err)
	}
	st := s.Status()
	if st.ReloadFailures != 1 || st.Reloads != 0 || st.LastReload == nil || st.LastReload.OK {
		t.Fatalf("status after rejected reload: failures %d reloads %d last %+v", st.ReloadFailures, st.Reloads, st.LastReload)
	}
}

func testReloadBackendsLive(t *testing.T) {
	a, b := nameBackend(t, "a"), nameBackend(t, "b")
	port := freePort(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	s := startServer(t, writeCfg(t, path, cfg{port: port, backends: []netip.AddrPort{a.Addr}}))
	writeCfg(t, path, cfg{port: port, backends: []netip.AddrPort{b.Addr}})
	r, err := s.ReloadFile(context.Background())
	if err != nil || !r.OK || len(r.Changes) == 0 {
		t.Fatalf("reload: %+v, %v", r, err)
	}
	for range 4 {
		if got, err := ask(t, fmt.Sprintf("127.0.0.1:%d", port)); err != nil || got != "b" {
			t.Fatalf("after reload: %q, %v; want b", got, err)
		}
	}
	if st := s.Status(); st.Reloads != 1 || !st.LastReload.OK {
		t.Fatalf("status %+v", st)
	}
}

func testReloadPortChange(t *testing.T) {
	echo := enginetest.NewBackend(t, enginetest.Echo)
	p1, p2 := freePort(t), freePort(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	s := startServer(t, writeCfg(t, path, cfg{port: p1, backends: []netip.AddrPort{echo.Addr}}))
	held, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p1), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	echoOnce(t, held, "before")
	writeCfg(t, path, cfg{port: p2, backends: []netip.AddrPort{echo.Addr}})
	if _, err := s.ReloadFile(context.Background()); err != nil {
		t.Fatal(err)
	}
	c2, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p2), time.Second)
	if err != nil {
		t.Fatalf("new port does not accept: %v", err)
	}
	echoOnce(t, c2, "new port")
	c2.Close()
	// The old listener closes as its drain starts (gnet's front stops
	// asynchronously); a connection it still accepts meanwhile is served.
	waitFor(t, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p1), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	echoOnce(t, held, "held on the old port")
	if st := s.Status(); st.Draining != 1 || st.Listen.Port() != uint16(p2) {
		t.Fatalf("status %+v: want the old listener draining", st)
	}
	held.Close()
	waitFor(t, func() bool { return s.Status().Draining == 0 })
}

func testReloadPortTakenRejected(t *testing.T) {
	a := nameBackend(t, "a")
	p1 := freePort(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	path := filepath.Join(t.TempDir(), "c.yaml")
	s := startServer(t, writeCfg(t, path, cfg{port: p1, backends: []netip.AddrPort{a.Addr}}))
	writeCfg(t, path, cfg{port: taken.Addr().(*net.TCPAddr).Port, backends: []netip.AddrPort{a.Addr}})
	if _, err := s.ReloadFile(context.Background()); !errors.Is(err, engine.ErrAddrInUse) || !errors.Is(err, ErrReloadRejected) {
		t.Fatalf("reload onto a taken port: %v", err)
	}
	if got, err := ask(t, fmt.Sprintf("127.0.0.1:%d", p1)); err != nil || got != "a" {
		t.Fatalf("old listener after the rejected reload: %q, %v", got, err)
	}
	if s.Snapshot().Services[0].Port != p1 {
		t.Fatal("snapshot changed although the reload was rejected")
	}
}

func testStartPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	snap := writeCfg(t, filepath.Join(t.TempDir(), "c.yaml"), cfg{port: taken.Addr().(*net.TCPAddr).Port, backends: []netip.AddrPort{enginetest.DeadAddr(t)}})
	s := New(snap, Options{Engines: stdEngines})
	if err := s.Start(context.Background()); !errors.Is(err, engine.ErrAddrInUse) {
		t.Fatalf("Start on a taken port: %v", err)
	}
	_ = s.Close()
}

// testStartWithoutEngines: the engine table is a required input; without
// it Start fails clearly and binds nothing.
func testStartWithoutEngines(t *testing.T) {
	port := freePort(t)
	snap := writeCfg(t, filepath.Join(t.TempDir(), "c.yaml"), cfg{port: port, backends: []netip.AddrPort{enginetest.DeadAddr(t)}})
	s := New(snap, Options{})
	if err := s.Start(context.Background()); !errors.Is(err, ErrNoEngines) {
		t.Fatalf("Start without Options.Engines: %v, want ErrNoEngines", err)
	}
	_ = s.Close()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("the port is held after the failed Start: %v", err)
	}
	ln.Close()
}

func testConnectionsSurviveManyReloads(t *testing.T) {
	echo := enginetest.NewBackend(t, enginetest.Echo)
	port := freePort(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	s := startServer(t, writeCfg(t, path, cfg{port: port, backends: []netip.AddrPort{echo.Addr}}))
	held, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	for i := range 20 {
		writeCfg(t, path, cfg{port: port, backends: []netip.AddrPort{echo.Addr}, extra: fmt.Sprintf("  backend_connect_timeout_ms: %d", 500+i)})
		if _, err := s.ReloadFile(context.Background()); err != nil {
			t.Fatal(err)
		}
		echoOnce(t, held, fmt.Sprintf("after reload %d", i))
	}
	if st := s.Status(); st.Reloads != 20 {
		t.Fatalf("reloads = %d", st.Reloads)
	}
}

// dyingEngine wraps a real engine and can be made to "die" like a gnet
// engine after EMFILE: listener gone, Done fires.
type dyingEngine struct {
	engine.Engine
	done chan error
}

func (d *dyingEngine) Done() <-chan error { return d.done }

func (d *dyingEngine) die() {
	_ = d.Engine.Close()
	d.done <- errors.New("accept: too many open files")
}

func testListenerDeathRestartsThenFatal(t *testing.T) {
	a := nameBackend(t, "a")
	port := freePort(t)
	snap := writeCfg(t, filepath.Join(t.TempDir(), "c.yaml"), cfg{port: port, backends: []netip.AddrPort{a.Addr}})
	var mu sync.Mutex
	var made []*dyingEngine
	dying := func(name string) (Engine, error) {
		impl, err := stdEngines(name)
		real := impl.New
		impl.New = func(o engine.Options, p engine.Policy) (engine.Engine, error) {
			e, err := real(o, p)
			d := &dyingEngine{Engine: e, done: make(chan error, 1)}
			mu.Lock()
			made = append(made, d)
			mu.Unlock()
			return d, err
		}
		return impl, err
	}
	s := New(snap, Options{Engines: dying, Restarts: 1, RestartWindow: time.Hour})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	last := func() *dyingEngine { mu.Lock(); defer mu.Unlock(); return made[len(made)-1] }
	first := last()
	first.die()
	waitFor(t, func() bool { return last() != first })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, func() bool { got, err := ask(t, addr); return err == nil && got == "a" })
	last().die() // over the budget of one restart
	select {
	case err := <-s.Fatal():
		if !strings.Contains(err.Error(), "too many open files") {
			t.Fatalf("fatal error %v does not carry the cause", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no fatal error after the restart budget was spent")
	}
}

func echoOnce(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo of %q: %q, %v", msg, buf, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5 s")
}

func fakeMetrics(status func() Status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "bal_connections_total %d\n", status().Policy.Total)
	})
}

func scrape(t *testing.T, addr string) (string, error) {
	t.Helper()
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), err
}

func testMetricsListener(t *testing.T) {
	a := nameBackend(t, "a")
	port, m1, m2 := freePort(t), freePort(t), freePort(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	snap := writeCfg(t, path, cfg{port: port, backends: []netip.AddrPort{a.Addr}, extra: fmt.Sprintf("  metrics_address: 127.0.0.1:%d", m1)})
	s := New(snap, Options{Engines: stdEngines, Metrics: fakeMetrics})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := ask(t, fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		body, err := scrape(t, fmt.Sprintf("127.0.0.1:%d", m1))
		return err == nil && body == "bal_connections_total 1\n"
	})
	// Moving the listener: the new address serves, the old one is gone.
	writeCfg(t, path, cfg{port: port, backends: []netip.AddrPort{a.Addr}, extra: fmt.Sprintf("  metrics_address: 127.0.0.1:%d", m2)})
	if _, err := s.ReloadFile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := scrape(t, fmt.Sprintf("127.0.0.1:%d", m2)); err != nil {
		t.Fatalf("new metrics address: %v", err)
	}
	if _, err := scrape(t, fmt.Sprintf("127.0.0.1:%d", m1)); err == nil {
		t.Fatal("old metrics address still serves")
	}
	// A taken address rejects the reload and keeps the current listener.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	writeCfg(t, path, cfg{port: port, backends: []netip.AddrPort{a.Addr}, extra: "  metrics_address: " + taken.Addr().String()})
	if _, err := s.ReloadFile(context.Background()); !errors.Is(err, ErrReloadRejected) {
		t.Fatalf("reload onto a taken metrics address: %v", err)
	}
	if _, err := scrape(t, fmt.Sprintf("127.0.0.1:%d", m2)); err != nil {
		t.Fatalf("metrics after the rejected reload: %v", err)
	}
}

// sendQ returns the Send-Q column of `ss -ltn` for the listeners on port:
// for a listening socket it is the accept-queue limit (the backlog).
func sendQ(t *testing.T, port int) []string {
	t.Helper()
	out, err := exec.Command("ss", "-Hltn", fmt.Sprintf("sport = :%d", port)).Output()
	if err != nil {
		t.Skipf("ss not usable here: %v", err)
	}
	var qs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			qs = append(qs, f[2])
		}
	}
	return qs
}

func testBacklogReload(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ss is Linux-only")
	}
	a := nameBackend(t, "a")
	port := freePort(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	s := startServer(t, writeCfg(t, path, cfg{port: port, backends: []netip.AddrPort{a.Addr}, extra: "  tcp_backlog: 123"}))
	for _, q := range sendQ(t, port) {
		if q != "123" {
			t.Fatalf("backlog at start: Send-Q %v, want 123 on every listener", sendQ(t, port))
		}
	}
	writeCfg(t, path, cfg{port: port, backends: []netip.AddrPort{a.Addr}, extra: "  tcp_backlog: 77"})
	if _, err := s.ReloadFile(context.Background()); err != nil {
		t.Fatalf("backlog-only reload: %v", err)
	}
	qs := sendQ(t, port)
	if len(qs) == 0 {
		t.Fatal("no listener found with ss")
	}
	for _, q := range qs {
		if q != "77" {
			t.Fatalf("after the reload: Send-Q %v, want 77 on every listener", qs)
		}
	}
	if got, err := ask(t, fmt.Sprintf("127.0.0.1:%d", port)); err != nil || got != "a" {
		t.Fatalf("after a backlog reload: %q, %v", got, err)
	}
}
