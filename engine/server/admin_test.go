package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine/adminstate"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/enginetest"
	"github.com/bal-lb/bal/engine/pool"
)

// logLines collects JSON log lines for assertions.
type logLines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logLines) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range bytes.Split(l.b.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["msg"] == msg {
			n++
		}
	}
	return n
}

type adminFixture struct {
	snap      *config.Snapshot
	statePath string
	a, b      *enginetest.Backend
	log       *logLines
}

// newAdminFixture: service web over A and B, service db over A; the state
// file in a temporary BAL_HOME.
func newAdminFixture(t *testing.T) *adminFixture {
	f := &adminFixture{statePath: filepath.Join(t.TempDir(), adminstate.FileName), log: &logLines{}}
	f.a, f.b = enginetest.NewBackend(t, enginetest.Echo), enginetest.NewBackend(t, enginetest.Echo)
	f.snap = snapOf(time.Second, svcCfg("web", 0, f.a.Addr, f.b.Addr), svcCfg("db", 0, f.a.Addr))
	return f
}

func (f *adminFixture) start(t *testing.T, snap *config.Snapshot) *Server {
	t.Helper()
	s := New(snap, Options{Engines: stdEngines, StatePath: f.statePath,
		Logger: slog.New(slog.NewJSONHandler(io.MultiWriter(f.log, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func states(s *Server) []string {
	var out []string
	for _, b := range s.Backends() {
		out = append(out, b.Service+"/"+b.Pool+" "+b.Address+" "+b.Admin.String())
	}
	return out
}

func fileStates(t *testing.T, path string) []string {
	t.Helper()
	f, err := adminstate.Load(path)
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	var out []string
	for _, e := range f.Backends {
		out = append(out, e.Service+"/"+e.Pool+" "+e.Backend+" "+e.State)
	}
	return out
}

// TestSetBackendState: the scope of a request, its changes, the state file,
// and that every bad request changes nothing.
func TestSetBackendState(t *testing.T) {
	f := newAdminFixture(t)
	s := f.start(t, f.snap)
	A, B := f.a.Addr.String(), f.b.Addr.String()
	ch, warn, err := s.SetBackendState(StateRequest{Backend: A, State: pool.Drain})
	if err != nil || warn != "" || len(ch) != 2 || ch[0] != (StateChange{"web", "default", A, pool.Ready, pool.Drain}) || ch[1] != (StateChange{"db", "default", A, pool.Ready, pool.Drain}) {
		t.Fatalf("drain A everywhere: %+v %q %v", ch, warn, err)
	}
	ch, _, err = s.SetBackendState(StateRequest{Backend: A, Service: "db", Route: "default", State: pool.Maint})
	if err != nil || len(ch) != 1 || ch[0] != (StateChange{"db", "default", A, pool.Drain, pool.Maint}) {
		t.Fatalf("maint A in db: %+v %v", ch, err)
	}
	want := []string{"web/default " + A + " drain", "web/default " + B + " ready", "db/default " + A + " maint"}
	if got := states(s); !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	wantFile := []string{"web/default " + A + " drain", "db/default " + A + " maint"}
	if got := fileStates(t, f.statePath); !slices.Equal(got, wantFile) {
		t.Fatalf("state file %v, want %v", got, wantFile)
	}
	before, _ := os.ReadFile(f.statePath)

	bad := []struct {
		name string
		req  StateRequest
		err  error
		msg  string
	}{
		{"unknown backend", StateRequest{Backend: "127.0.0.1:1", State: pool.Drain}, ErrUnknownBackend, "is not configured"},
		{"backend not in that service", StateRequest{Backend: B, Service: "db", State: pool.Drain}, ErrUnknownBackend, "in service db"},
		{"unknown service", StateRequest{Backend: A, Service: "nope", State: pool.Drain}, ErrUnknownBackend, `no service "nope" (services: web, db)`},
		{"unknown route", StateRequest{Backend: A, Route: "api", State: pool.Drain}, ErrUnknownBackend, `no route "api"`},
		{"not host:port", StateRequest{Backend: "localhost", State: pool.Drain}, ErrBadStateRequest, "no port"},
		{"close-after with ready", StateRequest{Backend: A, State: pool.Ready, CloseAfter: time.Second}, ErrBadStateRequest, "drain and maint"},
		{"negative close-after", StateRequest{Backend: A, State: pool.Drain, CloseAfter: -time.Second}, ErrBadStateRequest, "negative"},
		{"unknown state", StateRequest{Backend: A, State: pool.AdminState(7)}, ErrBadStateRequest, "unknown state"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			ch, _, err := s.SetBackendState(tt.req)
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.msg) || ch != nil {
				t.Fatalf("got %+v, %v; want %v mentioning %q", ch, err, tt.err, tt.msg)
			}
			if got := states(s); !slices.Equal(got, want) {
				t.Fatalf("a rejected request changed the states: %v", got)
			}
			if after, _ := os.ReadFile(f.statePath); !bytes.Equal(after, before) {
				t.Fatal("a rejected request rewrote the state file")
			}
		})
	}
}

// TestStatesSurviveRestartAndReload: a new server on the same state file
// starts with the states (before its first client); a state whose backend
// is gone is dropped with a log line, at start and at a reload.
func TestStatesSurviveRestartAndReload(t *testing.T) {
	f := newAdminFixture(t)
	A, B := f.a.Addr.String(), f.b.Addr.String()
	s := f.start(t, f.snap)
	for _, r := range []StateRequest{{Backend: A, Service: "web", State: pool.Drain}, {Backend: A, Service: "db", State: pool.Maint}, {Backend: B, State: pool.Maint}} {
		if _, _, err := s.SetBackendState(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart with db gone: web's states come back, db's is dropped.
	s2 := f.start(t, snapOf(time.Second, svcCfg("web", 0, f.a.Addr, f.b.Addr)))
	if got, want := states(s2), []string{"web/default " + A + " drain", "web/default " + B + " maint"}; !slices.Equal(got, want) {
		t.Fatalf("after a restart: %v, want %v", got, want)
	}
	if n := f.log.count("admin state dropped: the backend is no longer configured in that pool"); n != 1 {
		t.Fatalf("%d drop log lines, want 1 (db's)", n)
	}
	if got, want := fileStates(t, f.statePath), []string{"web/default " + A + " drain", "web/default " + B + " maint"}; !slices.Equal(got, want) {
		t.Fatalf("state file after the restart %v, want %v", got, want)
	}
	// Traffic avoids both: nothing is in service.
	if _, err := net.DialTimeout("tcp", s2.Addr().String(), time.Second); err != nil {
		t.Fatal(err)
	}

	// A reload that keeps A and removes B: A keeps its state, B's is
	// dropped from the file with a log line.
	if _, err := s2.Reload(context.Background(), snapOf(time.Second, svcCfg("web", 0, f.a.Addr))); err != nil {
		t.Fatal(err)
	}
	if got, want := states(s2), []string{"web/default " + A + " drain"}; !slices.Equal(got, want) {
		t.Fatalf("after a reload: %v, want %v", got, want)
	}
	if got, want := fileStates(t, f.statePath), []string{"web/default " + A + " drain"}; !slices.Equal(got, want) {
		t.Fatalf("state file after the reload %v, want %v", got, want)
	}
	if n := f.log.count("admin state dropped: the backend is no longer configured in that pool"); n != 2 {
		t.Fatalf("%d drop log lines, want 2", n)
	}
}

// TestBadStateFile: a corrupt, symlinked or unwritable state file is logged
// and ignored: bal starts, serves, and the states work in memory.
func TestBadStateFile(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
		warn  bool // SetBackendState reports that the file was not written
	}{
		{"garbage", func(t *testing.T, path string) { os.WriteFile(path, []byte("\x00garbage{"), 0o600) }, false},
		{"truncated", func(t *testing.T, path string) {
			os.WriteFile(path, []byte(`{"version":1,"backends":[{"service":"web","pool":"def`), 0o600)
		}, false},
		{"symlink", func(t *testing.T, path string) {
			target := filepath.Join(t.TempDir(), "target.json")
			os.WriteFile(target, []byte(`{"version":1,"backends":[]}`), 0o600)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"unwritable", func(t *testing.T, path string) {
			// The directory is a regular file: nothing can be created there.
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAdminFixture(t)
			if tt.name == "unwritable" {
				dir := filepath.Join(t.TempDir(), "home")
				os.WriteFile(dir, nil, 0o600)
				f.statePath = filepath.Join(dir, adminstate.FileName)
			}
			tt.setup(t, f.statePath)
			s := f.start(t, f.snap)
			if n := f.log.count("state file ignored: every backend starts ready"); tt.name != "unwritable" && n != 1 {
				t.Fatalf("%d 'state file ignored' lines, want 1", n)
			}
			c, err := net.DialTimeout("tcp", s.Addr().String(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			for range 2 {
				_, warn, err := s.SetBackendState(StateRequest{Backend: f.a.Addr.String(), State: pool.Drain})
				if err != nil || (warn != "") != tt.warn {
					t.Fatalf("SetBackendState: warning %q, error %v (want a warning: %v)", warn, err, tt.warn)
				}
				_, _, _ = s.SetBackendState(StateRequest{Backend: f.a.Addr.String(), State: pool.Maint})
			}
			if tt.warn {
				if n := f.log.count("state file not written: the admin states are in force but will not survive a restart"); n != 1 {
					t.Fatalf("the write error was logged %d times, want once", n)
				}
			}
			if s.Backends()[0].Admin != pool.Maint {
				t.Fatal("the state is not in force")
			}
		})
	}
}

// TestCloseAfterResetsConnections: drain with a close-after delay resets
// the backend's open connections in the running engine; another backend's
// connection stays.
func TestCloseAfterResetsConnections(t *testing.T) {
	f := newAdminFixture(t)
	s := f.start(t, snapOf(time.Second, svcCfg("web", 0, f.a.Addr, f.b.Addr)))
	var conns []net.Conn
	for i := range 2 {
		c, err := net.DialTimeout("tcp", s.Addr().String(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		echo(t, c, []byte{byte('a' + i)})
		conns = append(conns, c)
	}
	waitFor(t, func() bool { return s.Status().Services[0].Policy.Active == 2 })
	if _, _, err := s.SetBackendState(StateRequest{Backend: f.a.Addr.String(), State: pool.Drain, CloseAfter: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.Status().Services[0].Policy.ClosedByAdmin == 1 })
	resets := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			echo(t, c, []byte("still"))
			continue
		}
		resets++
	}
	if resets != 1 {
		t.Fatalf("%d connections ended, want exactly the drained backend's", resets)
	}
}

// TestOnBackendDownResets: a backend whose checks fail is marked down and,
// with on_backend_down: close, its relayed connections are reset.
func TestOnBackendDownResets(t *testing.T) {
	f := newAdminFixture(t)
	a := newEchoBackend(t)
	svc := svcCfg("web", 0, a.Addr)
	svc.OnBackendDown = config.OnDownClose
	svc.Runtime.HealthCheckFailThreshold = 1
	svc.Runtime.HealthCheckInterval = 50 * time.Millisecond
	s := f.start(t, snapOf(time.Second, svc))
	c, err := net.DialTimeout("tcp", s.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, []byte("x"))
	a.ln.Close() // the open connection stays, new connects are refused
	waitFor(t, func() bool { return s.Status().Services[0].Policy.ClosedOnDown == 1 })
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection of a backend marked down still reads")
	}
	b := s.Status().Services[0].Policy.Pools[0].Backends[0]
	if b.Reachable || !strings.HasPrefix(b.CheckError, "refused: ") {
		t.Fatalf("backend after its checks failed: reachable %v error %q", b.Reachable, b.CheckError)
	}
}

// TestMetricsListenerServesWeb: with Options.Web, runtime.metrics_address
// serves it on every path but /metrics.
func TestMetricsListenerServesWeb(t *testing.T) {
	b := enginetest.NewBackend(t, enginetest.Echo)
	snap := snapOf(time.Second, svcCfg("web", 0, b.Addr))
	snap.Runtime.MetricsAddress = "127.0.0.1:0"
	s := New(snap, Options{Engines: stdEngines,
		Metrics: func(func() Status) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/metrics" {
					http.NotFound(w, r)
					return
				}
				io.WriteString(w, "metrics")
			})
		},
		Web: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "web "+r.URL.Path) }),
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for path, want := range map[string]string{"/metrics": "metrics", "/": "web /", "/status": "web /status"} {
		resp, err := http.Get("http://" + s.MetricsAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != want {
			t.Errorf("GET %s = %q, want %q", path, body, want)
		}
	}
}

func echo(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo %q: %q %v", msg, got, err)
	}
}

// echoBackend is an echo server whose listener can close while its
// connections stay open.
type echoBackend struct {
	ln   net.Listener
	Addr netip.AddrPort
	wg   sync.WaitGroup
}

func newEchoBackend(t *testing.T) *echoBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &echoBackend{ln: ln, Addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	var mu sync.Mutex
	var conns []net.Conn
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			b.wg.Go(func() { _, _ = io.Copy(c, c); c.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		b.wg.Wait()
	})
	return b
}
