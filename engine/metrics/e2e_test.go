package metrics_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/enginetest"
	"github.com/bal-lb/bal/engine/metrics"
	"github.com/bal-lb/bal/engine/metrics/metricstest"
	"github.com/bal-lb/bal/engine/server"
	stdengine "github.com/bal-lb/bal/engine_darwin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stdEngines runs the portable engine (the engines are tested on their
// own; the black-box tests of cmd/bal scrape both).
func stdEngines(name string) (server.Engine, error) {
	if name != config.EngineStd {
		return server.Engine{}, fmt.Errorf("runtime.engine %q: not available in these tests", name)
	}
	return server.Engine{Name: config.EngineStd, New: stdengine.New, Cost: stdengine.Cost()}, nil
}

// TestEndToEnd runs a real server (real listener, real backends, the real
// policy) with metrics.Handler on runtime.metrics_address, and watches the
// scraped values follow the traffic.
func TestEndToEnd(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, engine string)
	}{
		{"TrafficAndHealth", testTrafficAndHealth},
		{"ConnectFailuresByReason", testConnectFailures},
		{"ProtectionAndNoBackend", testProtection},
		{"Rejected", testRejected},
		{"Reloads", testReloads},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, config.EngineStd) })
	}
}

type setup struct {
	engine   string
	backends []netip.AddrPort
	runtime  string // extra runtime: lines, indented
}

type running struct {
	srv      *server.Server
	listen   string
	metrics  string
	path     string
	backends []string
}

func (c setup) yaml(port, metricsPort int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode: advanced\nport: %d\nbind_address: 127.0.0.1\nruntime:\n  engine: %s\n  metrics_address: 127.0.0.1:%d\n%s", port, c.engine, metricsPort, c.runtime)
	b.WriteString("backends:\n")
	for _, a := range c.backends {
		fmt.Fprintf(&b, "  - host: %q\n    port: %d\n", a.Addr().String(), a.Port())
	}
	return b.String()
}

func start(t *testing.T, c setup) *running {
	t.Helper()
	port, mport := freePort(t), freePort(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(c.yaml(port, mport)), 0o600); err != nil {
		t.Fatal(err)
	}
	snap, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, c.yaml(port, mport))
	}
	srv := server.New(snap, server.Options{
		Engines: stdEngines,
		Metrics: func(status func() server.Status) http.Handler { return metrics.Handler(status, "test") },
		Logger:  slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	r := &running{srv: srv, listen: fmt.Sprintf("127.0.0.1:%d", port), path: path}
	if a := srv.MetricsAddr(); a == nil || a.String() != fmt.Sprintf("127.0.0.1:%d", mport) {
		t.Fatalf("metrics listener at %v, want 127.0.0.1:%d", a, mport)
	}
	r.metrics = srv.MetricsAddr().String()
	for _, b := range snap.Services[0].Backends {
		r.backends = append(r.backends, b.Address())
	}
	return r
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
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

// scrape GETs /metrics over HTTP and parses it strictly; every scrape must
// also hold every stable series for the configured backends.
func (r *running) scrape(t *testing.T) *metricstest.Exposition {
	t.Helper()
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != metrics.ContentType {
		t.Fatalf("Content-Type %q, want %q", ct, metrics.ContentType)
	}
	x, err := metricstest.Parse(string(body))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if err := metricstest.CheckStable(x, r.backends); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	return x
}

// want is one expected series value.
type want struct {
	series []string
	value  float64
}

func w(value float64, series ...string) want { return want{series, value} }

// mismatch lists the wants x does not meet; a want's labels select series
// whose sum must match (so "bal_connections_total" is every service's and
// "bal_backend_up", "backend", b is b's in every pool).
func mismatch(x *metricstest.Exposition, wants []want) []string {
	var bad []string
	for _, wt := range wants {
		if v, ok := x.Sum(wt.series[0], wt.series[1:]...); !ok || v != wt.value {
			bad = append(bad, fmt.Sprintf("%v = %v (present %v), want %v", wt.series, v, ok, wt.value))
		}
	}
	return bad
}

// eventually scrapes until every want holds (within 5 s) and returns the
// scrape that met them.
func (r *running) eventually(t *testing.T, wants ...want) *metricstest.Exposition {
	t.Helper()
	var bad []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		x := r.scrape(t)
		if bad = mismatch(x, wants); len(bad) == 0 {
			return x
		}
	}
	t.Fatalf("metrics did not reach the expected values within 5 s:\n  %s", strings.Join(bad, "\n  "))
	return nil
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q: %q %v", msg, buf, err)
	}
}

const bulk = 256 << 10

// echoBulk sends n bytes through an echo and reads them back concurrently.
func echoBulk(t *testing.T, c net.Conn, n int) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, n))
		errc <- err
	}()
	got, err := io.ReadFull(c, make([]byte, n))
	if werr := <-errc; werr != nil || err != nil {
		t.Fatalf("bulk echo: wrote (%v), read %d (%v)", werr, got, err)
	}
	_ = c.SetDeadline(time.Time{})
}

// waitBytes waits until both byte counters reach at least min.
func waitBytes(t *testing.T, r *running, min float64) {
	t.Helper()
	var in, out float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		x := r.scrape(t)
		in, _ = x.Sum("bal_bytes_total", "direction", "client_to_backend")
		out, _ = x.Sum("bal_bytes_total", "direction", "backend_to_client")
		if in >= min && out >= min {
			return
		}
	}
	t.Fatalf("bytes while open: client_to_backend %v, backend_to_client %v; want both >= %v", in, out, min)
}

const fastHealth = "  health_check_interval_ms: 100\n  health_check_timeout_ms: 200\n  health_check_fail_threshold: 2\n  health_check_success_threshold: 1\n"

func testTrafficAndHealth(t *testing.T, engine string) {
	a := enginetest.NewBackend(t, enginetest.Echo)
	b := enginetest.NewBackend(t, enginetest.Echo)
	r := start(t, setup{engine: engine, backends: []netip.AddrPort{a.Addr, b.Addr}, runtime: fastHealth})
	ka, kb := r.backends[0], r.backends[1]
	r.eventually(t,
		w(0, "bal_connections_active"), w(0, "bal_connections_total"),
		w(0, "bal_bytes_total", "direction", "client_to_backend"), w(0, "bal_bytes_total", "direction", "backend_to_client"),
		w(1, "bal_backend_up", "backend", ka), w(1, "bal_backend_up", "backend", kb),
		w(1, "bal_health_check_rounds_total"),
		w(1, "bal_info", "engine", engine, "method", "round_robin", "version", "test"),
	)

	// Held connections: active and total move, per backend too.
	c1 := dial(t, r.listen)
	echo(t, c1, "0123456789") // 10 bytes each way
	x := r.eventually(t, w(1, "bal_connections_active"), w(1, "bal_connections_total"))
	onA, _ := x.Sum("bal_backend_connections_active", "backend", ka)
	onB, _ := x.Sum("bal_backend_connections_active", "backend", kb)
	if onA+onB != 1 {
		t.Fatalf("backend active connections %v + %v, want the held one on exactly one backend", onA, onB)
	}
	// A second one goes to the other backend (round robin) and moves 256 KiB
	// each way: the byte counters move while both are still open. (Engines
	// may count in chunks of up to 64 KiB, so only a lower bound holds live.)
	c2 := dial(t, r.listen)
	echoBulk(t, c2, bulk)
	r.eventually(t,
		w(2, "bal_connections_active"), w(2, "bal_connections_total"),
		w(1, "bal_backend_connections_active", "backend", ka), w(1, "bal_backend_connections_active", "backend", kb),
		w(1, "bal_backend_connections_total", "backend", ka), w(1, "bal_backend_connections_total", "backend", kb),
	)
	waitBytes(t, r, bulk-64<<10)
	c1.Close()
	c2.Close()
	// Closed: every byte is counted exactly.
	r.eventually(t,
		w(0, "bal_connections_active"), w(2, "bal_connections_total"),
		w(0, "bal_backend_connections_active", "backend", ka), w(0, "bal_backend_connections_active", "backend", kb),
		w(bulk+10, "bal_bytes_total", "direction", "client_to_backend"), w(bulk+10, "bal_bytes_total", "direction", "backend_to_client"),
	)

	// A killed backend goes down; the other stays up.
	b.Close()
	r.eventually(t, w(0, "bal_backend_up", "backend", kb), w(1, "bal_backend_up", "backend", ka))
}

func testConnectFailures(t *testing.T, engine string) {
	good := enginetest.NewBackend(t, func(c *net.TCPConn) { _, _ = io.WriteString(c, "good") })
	doomed := enginetest.NewBackend(t, enginetest.Echo)
	hole := oneSlotListener(t)
	// One health round at start-up only, and thresholds high enough that
	// failing backends stay "up" and keep being picked; no protection mode.
	r := start(t, setup{engine: engine, backends: []netip.AddrPort{doomed.Addr, hole, good.Addr}, runtime: "  health_check_interval_ms: 600000\n  health_check_timeout_ms: 500\n  health_check_fail_threshold: 50\n" +
		"  backend_connect_timeout_ms: 200\n  failover_backoff_initial_ms: 1\n  failover_backoff_max_ms: 1\n  backend_cooldown_ms: 0\n  protection_trigger_threshold: 1000\n"})
	kd, kh, kg := r.backends[0], r.backends[1], r.backends[2]
	// The start-up round finds all three up; its connect to the one-slot
	// listener fills that slot, so from now on connects there time out.
	// Then the doomed backend dies: connects there are refused.
	r.eventually(t, w(1, "bal_health_check_rounds_total"),
		w(1, "bal_backend_up", "backend", kd), w(1, "bal_backend_up", "backend", kh), w(1, "bal_backend_up", "backend", kg))
	doomed.Close()
	before := r.scrape(t)
	for _, k := range r.backends {
		for _, reason := range []string{"timeout", "refused", "other"} {
			if v, _ := before.Sum("bal_backend_connect_failures_total", "backend", k, "reason", reason); v != 0 {
				t.Fatalf("failures{%s,%s} = %v before any client (health checks must not count)", k, reason, v)
			}
		}
	}
	// Round robin over three: three clients start once at every backend,
	// and each fails over until it reaches the good one.
	for i := range 3 {
		c := dial(t, r.listen)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "good" {
			t.Fatalf("client %d: %q %v", i, got, err)
		}
		c.Close()
	}
	x := r.eventually(t, w(3, "bal_connections_total"), w(3, "bal_backend_connections_total", "backend", kg))
	for _, tt := range []struct {
		backend, reason string
		min, max        float64
	}{
		{kd, "refused", 1, 3}, {kd, "timeout", 0, 0}, {kd, "other", 0, 0},
		{kh, "timeout", 1, 3}, {kh, "refused", 0, 0}, {kh, "other", 0, 0},
		{kg, "timeout", 0, 0}, {kg, "refused", 0, 0}, {kg, "other", 0, 0},
	} {
		v, _ := x.Sum("bal_backend_connect_failures_total", "backend", tt.backend, "reason", tt.reason)
		if v < tt.min || v > tt.max {
			t.Errorf("failures{%s,%s} = %v, want %v..%v", tt.backend, tt.reason, v, tt.min, tt.max)
		}
	}
	if v, _ := x.Sum("bal_protection_mode"); v != 0 {
		t.Errorf("protection mode %v with a trigger threshold of 1000", v)
	}
}

// oneSlotListener listens on loopback with backlog 0 and never accepts: the
// first connection completes and fills the only accept-queue slot, after
// which SYNs are dropped and connects time out.
func oneSlotListener(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))
}

func testProtection(t *testing.T, engine string) {
	d1, d2 := enginetest.DeadAddr(t), enginetest.DeadAddr(t)
	r := start(t, setup{engine: engine, backends: []netip.AddrPort{d1, d2}, runtime: "  health_check_interval_ms: 600000\n  health_check_fail_threshold: 50\n  protection_trigger_threshold: 2\n"})
	r.eventually(t, w(0, "bal_protection_mode"), w(0, "bal_connections_no_backend_total"))
	c := dial(t, r.listen)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, _ := io.ReadAll(c); len(got) != 0 {
		t.Fatalf("read %q from a client with no backend", got)
	}
	// Two refused connects trip the storm trigger, and the client that
	// exhausted every backend makes the latest reason all_backends_unavailable.
	r.eventually(t,
		w(1, "bal_protection_mode"),
		w(1, "bal_protection_mode_reason", "reason", "all_backends_unavailable"),
		w(0, "bal_protection_mode_reason", "reason", "timeout_or_refused_storm"),
		w(1, "bal_connections_no_backend_total"), w(1, "bal_connections_total"), w(0, "bal_connections_active"),
		w(1, "bal_backend_connect_failures_total", "backend", r.backends[0], "reason", "refused"),
		w(1, "bal_backend_connect_failures_total", "backend", r.backends[1], "reason", "refused"),
	)
}

func testRejected(t *testing.T, engine string) {
	a := enginetest.NewBackend(t, enginetest.Echo)
	r := start(t, setup{engine: engine, backends: []netip.AddrPort{a.Addr}, runtime: "  max_concurrent_connections: 1\n"})
	held := dial(t, r.listen)
	echo(t, held, "held")
	// Over the limit: reset at once (the reset may even beat the dial's
	// return), never served.
	if second, err := net.DialTimeout("tcp", r.listen, 2*time.Second); err == nil {
		_ = second.SetDeadline(time.Now().Add(3 * time.Second))
		n, err := second.Read(make([]byte, 1))
		second.Close()
		if err == nil {
			t.Fatalf("connection over max_concurrent_connections read %d bytes", n)
		}
	}
	r.eventually(t, w(1, "bal_connections_rejected_total"), w(1, "bal_connections_total"), w(1, "bal_connections_active"))
	echo(t, held, "still served")
}

func testReloads(t *testing.T, engine string) {
	a := enginetest.NewBackend(t, enginetest.Echo)
	b := enginetest.NewBackend(t, enginetest.Echo)
	c := setup{engine: engine, backends: []netip.AddrPort{a.Addr}}
	r := start(t, c)
	r.eventually(t, w(0, "bal_reloads_total", "result", "ok"), w(0, "bal_reloads_total", "result", "error"), w(1, "bal_last_reload_successful"))

	// A good reload that swaps the backend: counted, and the series follow
	// the new backend list.
	metricsPort := netip.MustParseAddrPort(r.metrics).Port()
	listenPort := netip.MustParseAddrPort(r.listen).Port()
	c.backends = []netip.AddrPort{b.Addr}
	if err := os.WriteFile(r.path, []byte(c.yaml(int(listenPort), int(metricsPort))), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.srv.ReloadFile(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.backends = []string{netip.AddrPortFrom(b.Addr.Addr(), b.Addr.Port()).String()}
	x := r.eventually(t, w(1, "bal_reloads_total", "result", "ok"), w(0, "bal_reloads_total", "result", "error"))
	if got := x.LabelValues("bal_backend_up", "backend"); len(got) != 1 || got[0] != r.backends[0] {
		t.Fatalf("backends after the reload: %v", got)
	}

	// A rejected reload.
	if err := os.WriteFile(r.path, []byte("port: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.srv.ReloadFile(context.Background()); err == nil {
		t.Fatal("an invalid file reloaded")
	}
	r.eventually(t, w(1, "bal_reloads_total", "result", "ok"), w(1, "bal_reloads_total", "result", "error"), w(0, "bal_last_reload_successful"))
}

// TestTwoServices runs two real services and scrapes them: every stable
// series of both exists from start-up (gauges at 0), and traffic on one
// moves only its own series.
func TestTwoServices(t *testing.T) {
	a, b := enginetest.NewBackend(t, enginetest.Echo), enginetest.NewBackend(t, enginetest.Echo)
	pw, pd, pm := freePort(t), freePort(t), freePort(t)
	svc := func(name string, port int, backends ...netip.AddrPort) config.Service {
		rt := config.Profile(len(backends))
		rt.Engine, rt.HealthCheckInterval = config.EngineStd, 100*time.Millisecond
		s := config.Service{Name: name, Protocol: config.TCP, BindAddress: "127.0.0.1", Port: port, Method: config.RoundRobin, Runtime: rt,
			HealthCheck: config.HealthCheck{Type: config.CheckTCP}, Access: config.Access{AcceptProxyProtocol: config.ProxyOff}}
		for _, be := range backends {
			s.Backends = append(s.Backends, config.Backend{Host: be.Addr().String(), Port: int(be.Port()), Weight: 1})
		}
		return s
	}
	web, db := svc("web", pw, a.Addr, b.Addr), svc("db", pd, b.Addr)
	rt := web.Runtime
	rt.MetricsAddress = fmt.Sprintf("127.0.0.1:%d", pm)
	snap := &config.Snapshot{Mode: config.ModeAdvanced, Runtime: rt, Services: []config.Service{web, db}}
	srv := server.New(snap, server.Options{
		Engines: stdEngines,
		Metrics: func(status func() server.Status) http.Handler { return metrics.Handler(status, "test") },
	})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	ka, kb := a.Addr.String(), b.Addr.String()
	configured := []metricstest.Service{
		{Name: "web", Pools: []metricstest.Pool{{Name: "default", Backends: []string{ka, kb}}}},
		{Name: "db", Pools: []metricstest.Pool{{Name: "default", Backends: []string{kb}}}},
	}
	scrape := func() (*metricstest.Exposition, string) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", pm))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		x, err := metricstest.Parse(string(body))
		if err != nil {
			t.Fatalf("%v\n%s", err, body)
		}
		if err := metricstest.CheckServices(x, configured); err != nil {
			t.Fatalf("%v\n%s", err, body)
		}
		return x, string(body)
	}
	x, body := scrape()
	for _, s := range []string{"web", "db"} {
		for _, name := range []string{"bal_connections_active", "bal_connections_total", "bal_protection_mode"} {
			if v, ok := x.Value(name, "service", s); !ok || v != 0 {
				t.Errorf("%s{service=%q} at start-up = %v (present %v), want 0\n%s", name, s, v, ok, body)
			}
		}
	}
	c := dial(t, fmt.Sprintf("127.0.0.1:%d", pd))
	echo(t, c, "0123456789")
	want := []want{
		w(1, "bal_connections_active", "service", "db"), w(0, "bal_connections_active", "service", "web"),
		w(1, "bal_connections_total", "service", "db"), w(0, "bal_connections_total", "service", "web"),
		w(1, "bal_backend_connections_active", "service", "db", "pool", "default", "backend", kb),
		w(0, "bal_backend_connections_active", "service", "web", "pool", "default", "backend", kb),
		w(10, "bal_bytes_total", "service", "db", "direction", "client_to_backend"),
		w(0, "bal_bytes_total", "service", "web", "direction", "client_to_backend"),
	}
	var bad []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		x, body = scrape()
		if bad = mismatch(x, want); len(bad) == 0 {
			return
		}
	}
	t.Fatalf("after a connection to db:\n  %s\n%s", strings.Join(bad, "\n  "), body)
}
