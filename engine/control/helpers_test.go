package control

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/enginetest"
	"github.com/bal-lb/bal/engine/server"
	stdengine "github.com/bal-lb/bal/engine_darwin"
)

// After answering a request whose body it did not read to the end (413),
// net/http keeps the connection's goroutine for its 500 ms reset-avoidance
// delay before closing: that is by design, not a leak.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}

// stdEngines runs the portable engine, the one the fixture's config names.
func stdEngines(name string) (server.Engine, error) {
	if name != config.EngineStd {
		return server.Engine{}, fmt.Errorf("runtime.engine %q: not available in these tests", name)
	}
	return server.Engine{Name: config.EngineStd, New: stdengine.New, Cost: stdengine.Cost()}, nil
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// configYAML is an advanced config on 127.0.0.1:port with the std engine
// and fast health checks.
func configYAML(port int, backends ...netip.AddrPort) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode: advanced\nport: %d\nbind_address: 127.0.0.1\nlog_level: debug\nruntime:\n  engine: std\n  health_check_interval_ms: 100\n  drain_timeout_ms: 1000\nbackends:\n", port)
	for _, a := range backends {
		fmt.Fprintf(&b, "  - host: %q\n    port: %d\n", a.Addr().String(), a.Port())
	}
	return b.String()
}

// syncBuffer is a log destination tests can read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is a real running bal (std engine, one echo backend) with its
// control socket served.
type fixture struct {
	dir     string
	cfgPath string
	port    int
	backend *enginetest.Backend
	srv     *server.Server
	ctl     *Server
	ln      *Listener
	client  *Client
	logs    *syncBuffer
}

func newFixture(t testing.TB, o Options) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), port: freePort(t), logs: &syncBuffer{}}
	f.backend = enginetest.NewBackend(t, enginetest.Echo)
	f.cfgPath = filepath.Join(f.dir, "config.yaml")
	if err := os.WriteFile(f.cfgPath, []byte(configYAML(f.port, f.backend.Addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	snap, err := config.Load(f.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.srv = server.New(snap, server.Options{Engines: stdEngines, Logger: log})
	if err := f.srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.srv.Close() })
	o.Logger = log
	f.ctl = New(f.srv, o)
	f.ln, err = Listen(filepath.Join(f.dir, "bal.sock"), log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.ctl.Serve(f.ln) }()
	t.Cleanup(func() {
		_ = f.ctl.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	f.client = NewClient(f.ln.Path(), 5*time.Second)
	return f
}

// proxied opens a connection through bal and proves it reached the backend.
func (f *fixture) proxied(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", f.port), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through bal: %q, %v", buf, err)
	}
	return c
}

// rawRequest writes req on a fresh connection to the socket, half-closes,
// and returns everything the server answered.
func rawRequest(t testing.TB, path string, req []byte) []byte {
	t.Helper()
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write(req) // the server may close early on garbage
	_ = c.(*net.UnixConn).CloseWrite()
	out, _ := io.ReadAll(io.LimitReader(c, 1<<20))
	return out
}
