package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine/metrics"
)

func TestListen(t *testing.T) {
	tests := []struct {
		name  string
		plant func(t *testing.T, path string) // what is at the path before Listen
		err   error                           // nil: Listen succeeds
		keeps bool                            // the planted thing must survive
	}{
		{"nothing", func(*testing.T, string) {}, nil, false},
		{"stale socket", func(t *testing.T, p string) {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
		}, nil, false},
		{"live socket", func(t *testing.T, p string) {
			ln, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}, ErrInUse, true},
		{"regular file", func(t *testing.T, p string) {
			if err := os.WriteFile(p, []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsafe, true},
		{"symlink", func(t *testing.T, p string) {
			target := filepath.Join(filepath.Dir(p), "target")
			if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsafe, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "bal.sock")
			tt.plant(t, path)
			before, _ := os.Lstat(path)
			ln, err := Listen(path, nil)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Listen = %v, want %v", err, tt.err)
				}
				after, aerr := os.Lstat(path)
				if tt.keeps && (aerr != nil || !os.SameFile(before, after)) {
					t.Errorf("the planted %s was replaced (%v)", tt.name, aerr)
				}
				if entries, _ := os.ReadDir(dir); len(entries) > 2 {
					t.Errorf("left files behind: %v", entries)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(path)
			if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != SocketMode {
				t.Fatalf("socket file %v, %v; want a socket with mode 0600", fi.Mode(), err)
			}
			accepted := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					c.Close()
				}
				accepted <- err
			}()
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if err := <-accepted; err != nil {
				t.Fatalf("Accept: %v", err)
			}
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("socket file left after Close: %v", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("left files behind: %v", entries)
			}
		})
	}
}

// TestListenCloseKeepsOthersSocket: a socket file that was replaced after
// Listen (another instance took over) is not removed by Close.
func TestListenCloseKeepsOthersSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bal.sock")
	ln, err := Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	other, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("Close removed another listener's socket: %v", err)
	}
}

func TestListenPathTooLong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(filepath.Join(dir, "bal.sock"), nil); !errors.Is(err, ErrPathTooLong) {
		t.Fatalf("Listen = %v, want ErrPathTooLong", err)
	}
}

func TestRoutes(t *testing.T) {
	f := newFixture(t, Options{Version: "v-test"})
	withMetrics := newFixture(t, Options{})
	withMetrics.ctl.o.Metrics = metrics.Handler(withMetrics.srv.Status, "v-test")
	tests := []struct {
		name   string
		fx     *fixture
		req    string
		code   int
		header string // "Name: value" expected in the answer, "" for none
		body   string // substring of the body
	}{
		{"status", f, "GET /status HTTP/1.1\r\nHost: bal\r\n\r\n", 200, "Content-Type: application/json", `"state": "running"`},
		{"status HTTP/1.0", f, "GET /status HTTP/1.0\r\n\r\n", 200, "", `"version": "v-test"`},
		{"status head", f, "HEAD /status HTTP/1.1\r\nHost: bal\r\n\r\n", 200, "", ""},
		{"status post", f, "POST /status HTTP/1.1\r\nHost: bal\r\nContent-Length: 0\r\n\r\n", 405, "Allow: GET, HEAD", "method not allowed"},
		{"reload get", f, "GET /reload HTTP/1.1\r\nHost: bal\r\n\r\n", 405, "Allow: POST", ""},
		{"reload", f, "POST /reload HTTP/1.1\r\nHost: bal\r\nContent-Length: 0\r\n\r\n", 200, "", `"ok": true`},
		{"reload big body", f, "POST /reload HTTP/1.1\r\nHost: bal\r\nContent-Length: 10000\r\n\r\n" + strings.Repeat("x", 10000), 413, "", "too large"},
		{"metrics off", f, "GET /metrics HTTP/1.1\r\nHost: bal\r\n\r\n", 404, "", "not available"},
		{"metrics on", withMetrics, "GET /metrics HTTP/1.1\r\nHost: bal\r\n\r\n", 200, "Content-Type: " + metrics.ContentType, "bal_connections_total{service=\"default\"} 0\n"},
		{"metrics delete", withMetrics, "DELETE /metrics HTTP/1.1\r\nHost: bal\r\n\r\n", 405, "", ""},
		{"unknown path", f, "GET /debug/pprof/ HTTP/1.1\r\nHost: bal\r\n\r\n", 404, "", "serves GET /status"},
		{"trailing slash", f, "GET /status/ HTTP/1.1\r\nHost: bal\r\n\r\n", 404, "", ""},
		{"case", f, "GET /STATUS HTTP/1.1\r\nHost: bal\r\n\r\n", 404, "", ""},
		{"options star", f, "OPTIONS * HTTP/1.1\r\nHost: bal\r\n\r\n", 404, "", ""},
		{"huge header", f, "GET /status HTTP/1.1\r\nHost: bal\r\nX: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431, "", ""},
		{"garbage", f, "\x00\x01\x02 hello\r\n\r\n", 400, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := string(rawRequest(t, tt.fx.ln.Path(), []byte(tt.req)))
			status := fmt.Sprintf(" %d ", tt.code)
			if !strings.HasPrefix(out, "HTTP/1.") || !strings.Contains(firstLine(out), status) {
				t.Fatalf("answer %q, want status %d", clip(out), tt.code)
			}
			if tt.header != "" && !strings.Contains(out, "\r\n"+tt.header+"\r\n") {
				t.Errorf("answer %q lacks header %q", clip(out), tt.header)
			}
			if !strings.Contains(out, tt.body) {
				t.Errorf("answer %q lacks %q", clip(out), tt.body)
			}
		})
	}
	if strings.Contains(f.logs.String(), "panic") {
		t.Errorf("logs mention a panic:\n%s", f.logs.String())
	}
}

func clip(s string) string {
	if len(s) > 400 {
		return s[:400] + "..."
	}
	return s
}

// TestStatusLive: the document reports real, live numbers.
func TestStatusLive(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	st, err := f.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != os.Getpid() || st.ConfigPath != f.cfgPath || st.Port != f.port || st.Listen != fmt.Sprintf("127.0.0.1:%d", f.port) ||
		st.Engine != "std" || st.Method != "round_robin" || st.Mode != "advanced" || st.LogLevel != "debug" || st.DrainTimeoutMS != 1000 {
		t.Errorf("identity fields: %+v", st)
	}
	if st.LastReload != nil || st.Reloads != 0 || st.ActiveConnections != 0 || st.TotalConnections != 0 || st.BackendTotal != 1 {
		t.Errorf("fresh status: %+v", st)
	}
	if st.ProtectionMode.Enabled || st.ProtectionMode.Reason != nil {
		t.Errorf("protection %+v", st.ProtectionMode)
	}
	if st.Limits.NoFileSoft == 0 || st.Limits.FDsPerConnection == 0 {
		t.Errorf("limits %+v", st.Limits)
	}

	held := f.proxied(t)
	f.proxied(t).Close()
	// Wait for the health checker (100 ms rounds) and the closed connection.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err = f.client.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The policy counts a close in its total before the backend's.
		if st.LastCheckTime != nil && st.ActiveConnections == 1 && st.Backends[0].ActiveConnections == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	b := st.Backends[0]
	if st.ActiveConnections != 1 || st.TotalConnections != 2 || b.ActiveConnections != 1 || b.TotalConnections != 2 {
		t.Errorf("connections: active %d total %d, backend %+v", st.ActiveConnections, st.TotalConnections, b)
	}
	if st.LastCheckTime == nil || b.LastCheckTime == nil || !b.Reachable || st.BackendReachable != 1 || b.Address != f.backend.Addr.String() {
		t.Errorf("health: %+v, backend %+v", st, b)
	}
	if st.Bytes.ClientToBackend < 4 || st.Bytes.BackendToClient < 4 { // the closed connection at least
		t.Errorf("bytes %+v, want ≥ 4 each way", st.Bytes)
	}
	held.Close()

	// A reload that changes something, then one that is rejected.
	cfg, _ := os.ReadFile(f.cfgPath)
	if err := os.WriteFile(f.cfgPath, []byte(strings.Replace(string(cfg), "log_level: debug", "log_level: info", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := f.client.Reload(ctx)
	if err != nil || !r.OK || r.Error != nil || len(r.Changes) != 1 || r.Changes[0] != "log_level: debug -> info" {
		t.Fatalf("reload = %+v, %v", r, err)
	}
	if err := os.WriteFile(f.cfgPath, []byte("port: 0\nbogus: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err = f.client.Reload(ctx)
	if err != nil || r.OK || r.Error == nil || !strings.Contains(*r.Error, "bogus") || len(r.Changes) != 0 {
		t.Fatalf("rejected reload = %+v, %v", r, err)
	}
	st, err = f.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Reloads != 1 || st.ReloadFailures != 1 || st.LastReload == nil || st.LastReload.OK || st.LogLevel != "info" {
		t.Errorf("after reloads: reloads %d failures %d last %+v level %s", st.Reloads, st.ReloadFailures, st.LastReload, st.LogLevel)
	}
	// Still serving the old config.
	f.proxied(t)

	f.ctl.SetState(StateDraining)
	if st, err := f.client.Status(ctx); err != nil || st.State != StateDraining {
		t.Errorf("state %v, %v", st, err)
	}
}

// TestStatusJSONShape pins the wire names the CLI depends on.
func TestStatusJSONShape(t *testing.T) {
	f := newFixture(t, Options{})
	f.proxied(t)
	out := rawRequest(t, f.ln.Path(), []byte("GET /status HTTP/1.0\r\n\r\n"))
	i := strings.Index(string(out), "\r\n\r\n")
	var doc map[string]any
	if err := json.Unmarshal(out[i+4:], &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"state", "pid", "config_path", "bind_address", "port", "listen", "method", "engine", "uptime_s",
		"backend_total", "backend_reachable", "backends", "active_connections", "total_connections", "last_check_time",
		"protection_mode", "last_reload", "reloads", "reload_failures", "drain_timeout_ms", "limits", "bytes"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("no %q in %v", k, doc)
		}
	}
	b := doc["backends"].([]any)[0].(map[string]any)
	for _, k := range []string{"address", "reachable", "weight", "active_connections", "total_connections", "last_check_time", "counters"} {
		if _, ok := b[k]; !ok {
			t.Errorf("backend lacks %q: %v", k, b)
		}
	}
	c := b["counters"].(map[string]any)
	if _, ok := c["timeout"]; !ok || len(c) != 3 {
		t.Errorf("counters %v", c)
	}
	if pm := doc["protection_mode"].(map[string]any); pm["enabled"] != false || pm["reason"] != nil {
		t.Errorf("protection_mode %v", pm)
	}
	if doc["last_reload"] != nil {
		t.Errorf("last_reload before any reload: %v", doc["last_reload"])
	}
}

func TestClientNotRunning(t *testing.T) {
	dir := t.TempDir()
	missing := NewClient(filepath.Join(dir, "bal.sock"), time.Second)
	if _, err := missing.Status(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("no socket: %v", err)
	}
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := NewClient(stale, time.Second).Reload(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("stale socket: %v", err)
	}
}

// TestSlowClientsDoNotBlock: clients that connect and send nothing, or half
// a request, do not delay a legitimate status.
func TestSlowClientsDoNotBlock(t *testing.T) {
	f := newFixture(t, Options{})
	for i := range 20 {
		c, err := net.Dial("unix", f.ln.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 {
			_, _ = io.WriteString(c, "GET /status HTTP/1.1\r\nHost: b")
		}
	}
	start := time.Now()
	if _, err := f.client.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("status took %v with stalled clients around", d)
	}
	// A stalled client is dropped after the header timeout.
	c, err := net.Dial("unix", f.ln.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /status HTTP/1.1\r\n")
	_ = c.SetReadDeadline(time.Now().Add(readHeaderTimeout + 5*time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("stalled client not dropped: %v", err)
	}
}

// TestPeerCredentials: a process of another uid is refused even when the
// socket's mode lets it connect. Needs root, to run a client (this test
// binary, copied where nobody can execute it) under another uid.
func TestPeerCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client under another uid")
	}
	f := newFixture(t, Options{})
	// Open the way for nobody: traversable directories (the test's own
	// temporary ones) and a 0666 socket.
	for _, d := range []string{f.dir, filepath.Dir(f.dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(f.ln.Path(), 0o666); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(filepath.Dir(f.dir)); d != "/"; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s is not traversable by others", d)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(f.dir, "peer.test")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(uid uint32) string {
		cmd := exec.Command(bin, "-test.run=^TestPeerHelper$", "-test.v")
		cmd.Env = append(os.Environ(), "BAL_CONTROL_PEER_SOCKET="+f.ln.Path())
		cmd.Dir = f.dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as uid %d: %v\n%s", uid, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if r, ok := strings.CutPrefix(line, "peer-result: "); ok {
				return r
			}
		}
		t.Fatalf("client as uid %d printed no result:\n%s", uid, out)
		return ""
	}
	if got := run(65534); got == "answer" {
		t.Errorf("a client of uid 65534 got an answer")
	}
	if got := run(0); got != "answer" {
		t.Errorf("a client of our uid got %q", got)
	}
	if !strings.Contains(f.logs.String(), "refusing a peer of another user") {
		t.Errorf("no log line for the refused peer:\n%s", f.logs.String())
	}
}

// TestPeerHelper is the client TestPeerCredentials runs under another uid.
func TestPeerHelper(t *testing.T) {
	path := os.Getenv("BAL_CONTROL_PEER_SOCKET")
	if path == "" {
		t.Skip("only run by TestPeerCredentials")
	}
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		fmt.Println("peer-result: error", err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET /status HTTP/1.0\r\n\r\n")
	out, _ := io.ReadAll(c)
	if strings.HasPrefix(string(out), "HTTP/") {
		fmt.Println("peer-result: answer")
		return
	}
	fmt.Println("peer-result: closed")
}
