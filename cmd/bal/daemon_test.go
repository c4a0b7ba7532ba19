package main

import (
	"bytes"
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
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/control"
	"github.com/bal-lb/bal/engine/enginetest"
	"github.com/bal-lb/bal/engine/pidfile"
)

// Black-box tests of bal as a service — start -d, the control
// socket, status, doctor, graceful, stop, the log file, sd_notify.

// daemonEnv is one test's bal home and config directory.
type daemonEnv struct {
	t    *testing.T
	dir  string // working directory of every bal command; holds the config
	home string // BAL_HOME (created by bal, 0700)
	cfg  string // config file name, relative to dir
	port int
}

// newDaemonEnv writes cfg as dir/config.yaml. bal is not started; the
// cleanup kills whatever bal the home's PID file names, so no daemon
// outlives the test even when it fails half-way.
func newDaemonEnv(t *testing.T, cfg baltest.Config) *daemonEnv {
	t.Helper()
	baltest.NeedBinary(t) // every daemon test runs the real binary
	d := &daemonEnv{t: t, dir: t.TempDir(), cfg: "config.yaml", port: cfg.Port}
	d.home = filepath.Join(t.TempDir(), "home")
	d.write(cfg.String())
	t.Cleanup(d.kill)
	return d
}

// in is d for subtest t: what fails in its helpers fails t, from t's own
// goroutine.
func (d *daemonEnv) in(t *testing.T) *daemonEnv {
	c := *d
	c.t = t
	return &c
}

func (d *daemonEnv) write(content string) {
	baltest.WriteFile(d.t, filepath.Join(d.dir, d.cfg), content)
}

func (d *daemonEnv) bal(args ...string) (int, string, string) {
	d.t.Helper()
	return runBal(d.t, d.dir, d.home, args...)
}

func (d *daemonEnv) path(name string) string { return filepath.Join(d.home, name) }

func (d *daemonEnv) addr() string { return fmt.Sprintf("127.0.0.1:%d", d.port) }

// start runs bal start -d with the relative config and returns the daemon's
// PID. It requires exit 0.
func (d *daemonEnv) start() int {
	d.t.Helper()
	code, stdout, stderr := d.bal("start", "-d", "-c", d.cfg)
	if code != 0 {
		d.t.Fatalf("start -d: exit %d\nstdout: %s\nstderr: %s\nlog: %s", code, stdout, stderr, d.log())
	}
	pid, err := pidfile.Read(d.path(pidFileName))
	if err != nil {
		d.t.Fatalf("no pid file after start -d: %v", err)
	}
	if !strings.Contains(stdout, fmt.Sprintf("daemon started (PID %d), listening on %s", pid, d.addr())) {
		d.t.Errorf("start -d stdout %q", stdout)
	}
	return pid
}

func (d *daemonEnv) log() string {
	data, _ := os.ReadFile(d.path(logFileName))
	return string(data)
}

// kill ends the daemon named by the PID file, if it is a bal, and waits
// until it is gone.
func (d *daemonEnv) kill() {
	pid, err := pidfile.Running(d.path(pidFileName))
	if err != nil {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !waitGone(pid, 10*time.Second) {
		d.t.Errorf("daemon %d still alive after SIGKILL", pid)
	}
}

// statusDoc decodes bal status --json into a generic map (to check that
// every stable field is present, null or not) and into typed values.
func (d *daemonEnv) status() (int, map[string]any, statusWire) {
	d.t.Helper()
	code, stdout, stderr := d.bal("status", "--json")
	var doc map[string]any
	var w statusWire
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		d.t.Fatalf("status --json is not one JSON document (%v): %q, stderr %q", err, stdout, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &w); err != nil {
		d.t.Fatal(err)
	}
	return code, doc, w
}

// statusWire is what the tests read of bal status --json.
type statusWire struct {
	Running          bool    `json:"running"`
	PID              *int    `json:"pid"`
	ConfigPath       string  `json:"config_path"`
	BindAddress      *string `json:"bind_address"`
	Port             *int    `json:"port"`
	Method           *string `json:"method"`
	Engine           *string `json:"engine"`
	UptimeS          *int64  `json:"uptime_s"`
	BackendTotal     *int    `json:"backend_total"`
	BackendReachable *int    `json:"backend_reachable"`
	Backends         []struct {
		Address       string     `json:"address"`
		Reachable     bool       `json:"reachable"`
		Weight        int        `json:"weight"`
		Active        int64      `json:"active_connections"`
		Total         uint64     `json:"total_connections"`
		LastCheckTime *time.Time `json:"last_check_time"`
		Counters      struct {
			Timeout, Refused, Other *uint64
		} `json:"counters"`
	} `json:"backends"`
	Active         *int64     `json:"active_connections"`
	Total          *uint64    `json:"total_connections"`
	LastCheckTime  *time.Time `json:"last_check_time"`
	ProtectionMode *struct {
		Enabled bool    `json:"enabled"`
		Reason  *string `json:"reason"`
	} `json:"protection_mode"`
	LastReload *struct {
		OK      bool      `json:"ok"`
		Time    time.Time `json:"time"`
		Error   *string   `json:"error"`
		Changes []string  `json:"changes"`
	} `json:"last_reload"`
	Reloads        *uint64 `json:"reloads"`
	ReloadFailures *uint64 `json:"reload_failures"`
	State          *string `json:"state"`
}

// stableStatusFields are the status JSON names that must not change (docs/operations.md#bal-status).
var stableStatusFields = []string{"running", "pid", "config_path", "bind_address", "port", "method", "engine", "uptime_s",
	"backend_total", "backend_reachable", "backends", "active_connections", "total_connections", "last_check_time",
	"protection_mode", "last_reload", "reloads", "reload_failures"}

// holdEcho opens a connection through bal and proves it reached the echo
// backend; the connection stays open until the test ends.
func holdEcho(t *testing.T, addr string) net.Conn {
	t.Helper()
	c := dialHeld(t, addr)
	echo(t, c, "ping")
	return c
}

// waitStatus polls status --json until ok accepts it (5 s).
func (d *daemonEnv) waitStatus(what string, ok func(statusWire) bool) (map[string]any, statusWire) {
	d.t.Helper()
	var doc map[string]any
	var w statusWire
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		if _, doc, w = d.status(); ok(w) {
			return doc, w
		}
	}
	d.t.Fatalf("status never showed %s; last: %v", what, doc)
	return nil, w
}

// daemonConfig is a config for one backend with fast health checks and a
// connection limit every engine's descriptors fit in; runtime lines (as
// "key: value") add to or override those.
func daemonConfig(t *testing.T, backend string, runtime ...string) baltest.Config {
	lines := baltest.Override([]string{"health_check_interval_ms: 100", "max_concurrent_connections: 1000"}, runtime...)
	return baltest.Config{Port: baltest.FreePort(t), Engine: baltest.Engines()[0], Backends: []string{backend}, Runtime: lines}
}

// TestDaemonLifecycle walks one daemon through start -d, status, doctor,
// graceful, log reopening and stop, one subtest per step. Every step after
// the first needs the daemon it starts; the steps that edit the config put
// it back even when they fail, so one failure does not cascade.
func TestDaemonLifecycle(t *testing.T) {
	be := enginetest.NewBackend(t, enginetest.Echo)
	env := newDaemonEnv(t, daemonConfig(t, be.Addr.String(), "drain_timeout_ms: 5000"))
	var pid int

	if !t.Run("start -d", func(t *testing.T) {
		d := env.in(t)
		// start -d returns only once the daemon listens: the very first
		// connection succeeds, no retry.
		pid = d.start()
		holdEcho(t, d.addr()).Close()
	}) {
		t.Fatal("no daemon: the other steps need it")
	}

	// keepConfig restores the config file when subtest t ends.
	keepConfig := func(t *testing.T, d *daemonEnv) string {
		data, err := os.ReadFile(filepath.Join(d.dir, d.cfg))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.write(string(data)) })
		return string(data)
	}

	t.Run("files", func(t *testing.T) {
		d := env.in(t)
		wantMode := map[string]fs.FileMode{"": fs.ModeDir | 0o700, sockName: fs.ModeSocket | 0o600, pidFileName: 0o644, logFileName: 0o640}
		for name, mode := range wantMode {
			fi, err := os.Lstat(d.path(name))
			if err != nil || fi.Mode() != mode {
				t.Errorf("%s: mode %v (%v), want %v", d.path(name), fi.Mode(), err, mode)
			}
		}
		if data, _ := os.ReadFile(d.path(pidFileName)); string(data) != strconv.Itoa(pid)+"\n" {
			t.Errorf("pid file %q, want %d", data, pid)
		}
		if !strings.Contains(d.log(), `"msg":"bal started"`) {
			t.Errorf("bal.log lacks the start line:\n%s", d.log())
		}
		if !isProcessInDir(pid, "/") {
			t.Errorf("the daemon's working directory is not /")
		}
		if got, ok := stderrOf(pid); ok && got != d.path(logFileName) {
			t.Errorf("the daemon's stderr is %s, want bal.log (crash reports)", got)
		}
	})

	t.Run("second start refused", func(t *testing.T) {
		d := env.in(t)
		for _, args := range [][]string{{"start", "-d", "-c", d.cfg}, {"start", "-c", d.cfg}} {
			code, _, stderr := d.bal(args...)
			if code != 1 || !strings.Contains(stderr, "bal is already running") || !strings.Contains(stderr, strconv.Itoa(pid)) {
				t.Errorf("%v: exit %d, stderr %q; want 1 and 'already running'", args, code, stderr)
			}
		}
		holdEcho(t, d.addr()).Close()
		if now, err := pidfile.Read(d.path(pidFileName)); err != nil || now != pid {
			t.Errorf("pid file now names %d (%v), want %d", now, err, pid)
		}
	})

	t.Run("status live values", func(t *testing.T) {
		d := env.in(t)
		held := holdEcho(t, d.addr())
		holdEcho(t, d.addr()).Close()
		// 2 earlier connections, the held one, the closed one.
		doc, w := d.waitStatus("1 active and 4 total connections", func(w statusWire) bool {
			return w.Active != nil && *w.Active == 1 && *w.Total == 4 && w.LastCheckTime != nil
		})
		for _, k := range stableStatusFields {
			if _, ok := doc[k]; !ok {
				t.Errorf("status --json lacks %q", k)
			}
		}
		abs := filepath.Join(d.dir, d.cfg)
		if !w.Running || *w.PID != pid || w.ConfigPath != abs || *w.BindAddress != "127.0.0.1" || *w.Port != d.port ||
			*w.Method != "round_robin" || *w.Engine != baltest.Engines()[0] || *w.UptimeS < 0 || *w.BackendTotal != 1 || *w.BackendReachable != 1 {
			t.Errorf("status identity: %+v", doc)
		}
		if len(w.Backends) != 1 {
			t.Fatalf("backends %v", doc["backends"])
		}
		b := w.Backends[0]
		if b.Address != be.Addr.String() || !b.Reachable || b.Weight != 1 || b.Active != 1 || b.Total != 4 || b.LastCheckTime == nil ||
			b.Counters.Timeout == nil || *b.Counters.Timeout != 0 || *b.Counters.Refused != 0 || *b.Counters.Other != 0 {
			t.Errorf("backend %+v", doc["backends"])
		}
		if got := doc["backends"].([]any)[0].(map[string]any)["addresses"]; fmt.Sprint(got) != "["+be.Addr.String()+"]" {
			t.Errorf("backend addresses %v, want [%s]", got, be.Addr)
		}
		if doc["local_connect_failures"] != float64(0) || doc["no_backend_connections"] != float64(0) {
			t.Errorf("local_connect_failures %v, no_backend_connections %v", doc["local_connect_failures"], doc["no_backend_connections"])
		}
		if w.ProtectionMode == nil || w.ProtectionMode.Enabled || w.ProtectionMode.Reason != nil {
			t.Errorf("protection_mode %v", doc["protection_mode"])
		}
		if w.LastReload != nil || *w.Reloads != 0 || *w.ReloadFailures != 0 {
			t.Errorf("reloads before any reload: %v %v %v", doc["last_reload"], doc["reloads"], doc["reload_failures"])
		}
		held.Close()
		d.waitStatus("0 active connections", func(w statusWire) bool { return *w.Active == 0 && w.Backends[0].Active == 0 })

		code, stdout, _ := d.bal("status")
		if code != 0 || !strings.Contains(stdout, fmt.Sprintf("  overall: OK\n  daemon: running (pid=%d)\n  backends: 1/1 reachable\n", pid)) {
			t.Errorf("status: exit %d\n%s", code, stdout)
		}
		code, stdout, _ = d.bal("status", "--brief")
		if code != 0 || !strings.HasPrefix(stdout, fmt.Sprintf("OK running pid=%d on %s", pid, d.addr())) {
			t.Errorf("status --brief: exit %d %q", code, stdout)
		}
	})

	t.Run("metrics on the control socket", func(t *testing.T) {
		d := env.in(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		body, err := control.NewClient(d.path(sockName), 5*time.Second).Metrics(ctx)
		if err != nil || !strings.Contains(string(body), "\nbal_connections_total{service=\"default\"} ") || !strings.Contains(string(body), `bal_backend_up{service="default",pool="default",backend="`+be.Addr.String()+`"} 1`) {
			t.Errorf("GET /metrics: %v\n%s", err, body)
		}
	})

	t.Run("doctor healthy", func(t *testing.T) {
		d := env.in(t)
		code, stdout, _ := d.bal("doctor", "--json")
		var doc struct {
			Overall string        `json:"overall"`
			Checks  []doctorCheck `json:"checks"`
			PM      *struct {
				Enabled bool    `json:"enabled"`
				Reason  *string `json:"reason"`
			} `json:"protection_mode"`
		}
		if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
			t.Fatalf("doctor --json: %v\n%s", err, stdout)
		}
		var names []string
		for _, c := range doc.Checks {
			names = append(names, c.Name)
			if c.Level != checkOK {
				t.Errorf("check %s: %s %s", c.Name, c.Level, c.Summary)
			}
		}
		if code != 0 || doc.Overall != levelOK || strings.Join(names, " ") != "pid config bind backend limits control" || doc.PM == nil || doc.PM.Enabled {
			t.Errorf("doctor: exit %d, %s", code, stdout)
		}
		if !strings.Contains(stdout, "is held by the running bal") {
			t.Errorf("bind check does not recognise the running bal:\n%s", stdout)
		}
	})

	t.Run("graceful", func(t *testing.T) {
		d := env.in(t)
		good := keepConfig(t, d)
		d.write(strings.Replace(good, "health_check_interval_ms: 100", "health_check_interval_ms: 150", 1))
		code, stdout, stderr := d.bal("graceful")
		if code != 0 || stdout != "reloaded: runtime.health_check_interval_ms: 100 -> 150\n" || stderr != "" {
			t.Errorf("graceful: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		code, stdout, _ = d.bal("graceful")
		if code != 0 || stdout != "reloaded: no changes\n" {
			t.Errorf("graceful without changes: exit %d, stdout %q", code, stdout)
		}

		// A bad file: rejected with the reason, the old config serves on.
		d.write(good + "bogus: 1\n")
		code, stdout, stderr = d.bal("graceful")
		if code != 1 || stdout != "" || !strings.Contains(stderr, `unknown key "bogus"`) || !strings.Contains(stderr, "the previous configuration keeps serving") {
			t.Errorf("graceful with a bad file: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		holdEcho(t, d.addr()).Close()
		_, _, w := d.status()
		if w.LastReload == nil || w.LastReload.OK || w.LastReload.Error == nil || !strings.Contains(*w.LastReload.Error, "bogus") ||
			*w.Reloads != 2 || *w.ReloadFailures != 1 {
			t.Errorf("status after a rejected reload: %+v reloads %v failures %v", w.LastReload, *w.Reloads, *w.ReloadFailures)
		}
		code, stdout, _ = d.bal("status")
		if code != 0 || !strings.Contains(stdout, "  overall: WARN\n") || !strings.Contains(stdout, "what_happened: the last reload was rejected") {
			t.Errorf("status after a rejected reload: exit %d\n%s", code, stdout)
		}
	})

	t.Run("SIGUSR1 reopens the log", func(t *testing.T) {
		d := env.in(t)
		if err := os.Rename(d.path(logFileName), d.path(logFileName+".1")); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(d.log(), "log file reopened"); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no new bal.log after SIGUSR1")
			}
		}
		if code, _, stderr := d.bal("graceful"); code != 0 {
			t.Fatalf("graceful: %s", stderr)
		}
		old, _ := os.ReadFile(d.path(logFileName + ".1"))
		if !strings.Contains(d.log(), `"msg":"reloaded"`) || strings.Contains(string(old), "log file reopened") {
			t.Errorf("new log:\n%s\nrotated log:\n%s", d.log(), old)
		}
		if fi, err := os.Lstat(d.path(logFileName)); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("new bal.log mode %v (%v)", fi.Mode(), err)
		}
		if got, ok := stderrOf(pid); ok && got != d.path(logFileName) {
			t.Errorf("after SIGUSR1 the daemon's stderr is %s, want the new bal.log", got)
		}
	})

	t.Run("log_level applies live", func(t *testing.T) {
		d := env.in(t)
		good := keepConfig(t, d)
		d.write(strings.Replace(good, "log_level: debug", "log_level: error", 1))
		if code, _, stderr := d.bal("graceful"); code != 0 {
			t.Fatalf("graceful: %s", stderr)
		}
		before := strings.Count(d.log(), `"msg":"reloaded"`)
		if code, _, stderr := d.bal("graceful"); code != 0 { // an info line that must not be written now
			t.Fatalf("graceful: %s", stderr)
		}
		if n := strings.Count(d.log(), `"msg":"reloaded"`); n != before {
			t.Errorf("info lines logged at log_level error")
		}
		d.write(good)
		if code, _, stderr := d.bal("graceful"); code != 0 {
			t.Fatalf("graceful: %s", stderr)
		}
		if code, _, _ := d.bal("graceful"); code != 0 || strings.Count(d.log(), `"msg":"reloaded"`) <= before {
			t.Errorf("info lines not logged again at log_level debug")
		}
	})

	t.Run("stop", func(t *testing.T) {
		d := env.in(t)
		code, stdout, stderr := d.bal("stop")
		if code != 0 || !strings.HasPrefix(stdout, fmt.Sprintf("bal stop: stopped (PID %d)", pid)) {
			t.Fatalf("stop: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		if !gone(pid) {
			t.Errorf("PID %d still running after stop returned", pid)
		}
		for _, name := range []string{pidFileName, sockName} {
			if _, err := os.Lstat(d.path(name)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s left behind: %v", name, err)
			}
		}
		if _, err := net.DialTimeout("tcp", d.addr(), time.Second); err == nil {
			t.Errorf("still accepting after stop")
		}
		code, doc, w := d.status()
		if code != exitNotRunning || w.Running || w.PID != nil || w.ConfigPath != filepath.Join(d.home, "config.yaml") {
			t.Errorf("status after stop: exit %d, %v", code, doc)
		}
		for _, k := range stableStatusFields {
			v, ok := doc[k]
			if !ok {
				t.Errorf("stopped status lacks %q", k)
			}
			if k != "running" && k != "config_path" && k != "backends" && v != nil {
				t.Errorf("stopped status: %s = %v, want null", k, v)
			}
		}
		if code, _, stderr := d.bal("graceful"); code != 1 || !strings.Contains(stderr, "not running") {
			t.Errorf("graceful when stopped: exit %d, %q", code, stderr)
		}
		if code, _, stderr := d.bal("stop"); code != 1 || !strings.Contains(stderr, "not running") {
			t.Errorf("second stop: exit %d, %q", code, stderr)
		}
		if !strings.Contains(d.log(), `"msg":"bal stopped"`) {
			t.Errorf("no stop line in the log:\n%s", d.log())
		}
	})
}

// isProcessInDir reports whether pid's working directory is dir (Linux;
// true elsewhere).
func isProcessInDir(pid int, dir string) bool {
	if runtime.GOOS != "linux" {
		return true
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	return err == nil && cwd == dir
}

// stderrOf is where pid's fd 2 points (Linux only; ok false elsewhere).
func stderrOf(pid int) (string, bool) {
	if runtime.GOOS != "linux" {
		return "", false
	}
	p, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/2", pid))
	return p, err == nil
}

// TestDaemonStartFails: start -d exits 1 with the daemon's reason and leaves
// nothing behind.
func TestDaemonStartFails(t *testing.T) {
	be := enginetest.NewBackend(t, enginetest.Echo)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name   string
		config func(cfg baltest.Config) string
		args   []string
		stderr []string
	}{
		{"port in use", func(c baltest.Config) string { c.Port = takenPort; return c.String() }, nil,
			[]string{fmt.Sprintf("listen 127.0.0.1:%d", takenPort), "address already in use"}},
		{"invalid config", func(c baltest.Config) string { return c.String() + "wat: 1\n" }, nil,
			[]string{"bal start: invalid config", `unknown key "wat"`}},
		{"missing config", func(c baltest.Config) string { return c.String() }, []string{"start", "-d", "-c", "elsewhere.yaml"},
			[]string{"bal start: config file not found:", "elsewhere.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := daemonConfig(t, be.Addr.String())
			d := newDaemonEnv(t, cfg)
			d.write(tt.config(cfg))
			args := tt.args
			if args == nil {
				args = []string{"start", "-d", "-c", d.cfg}
			}
			code, stdout, stderr := d.bal(args...)
			if code != 1 || stdout != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, stdout)
			}
			for _, want := range tt.stderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr %q lacks %q", stderr, want)
				}
			}
			for _, name := range []string{pidFileName, sockName} {
				if _, err := os.Lstat(d.path(name)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s left behind: %v", name, err)
				}
			}
			if code, _, _ := d.bal("status"); code != exitNotRunning {
				t.Errorf("status after a failed start: exit %d", code)
			}
		})
	}
}

// TestDaemonPidSymlink: a symlink planted at bal.pid makes start fail and
// leaves its target untouched.
func TestDaemonPidSymlink(t *testing.T) {
	be := enginetest.NewBackend(t, enginetest.Echo)
	d := newDaemonEnv(t, daemonConfig(t, be.Addr.String()))
	if err := os.MkdirAll(d.home, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "victim")
	baltest.WriteFile(t, victim, "precious\n")
	if err := os.Symlink(victim, d.path(pidFileName)); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"start", "-d", "-c", d.cfg}, {"start", "-c", d.cfg}} {
		code, _, stderr := d.bal(args...)
		if code != 1 || !strings.Contains(stderr, "unsafe pid file") {
			t.Errorf("%v: exit %d, stderr %q; want 1 and 'unsafe pid file'", args, code, stderr)
		}
	}
	if data, _ := os.ReadFile(victim); string(data) != "precious\n" {
		t.Errorf("victim changed: %q", data)
	}
	if fi, err := os.Lstat(d.path(pidFileName)); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the planted symlink was replaced: %v %v", fi, err)
	}
	code, stdout, _ := d.bal("doctor", "--json", "-c", d.cfg)
	if code != 1 || !strings.Contains(stdout, "unsafe pid file") {
		t.Errorf("doctor with a planted symlink: exit %d\n%s", code, stdout)
	}
}

// TestStopStalePid: a PID file naming a live process that is not bal: stop
// exits 1 without signalling it, status says not running, doctor is critical,
// and start replaces the file.
func TestStopStalePid(t *testing.T) {
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = sleeper.Wait(); close(exited) }()
	t.Cleanup(func() { _ = sleeper.Process.Kill(); <-exited })

	be := enginetest.NewBackend(t, enginetest.Echo)
	d := newDaemonEnv(t, daemonConfig(t, be.Addr.String()))
	if err := os.MkdirAll(d.home, 0o700); err != nil {
		t.Fatal(err)
	}
	baltest.WriteFile(t, d.path(pidFileName), strconv.Itoa(sleeper.Process.Pid)+"\n")

	code, _, stderr := d.bal("stop", "--timeout", "2s")
	if code != 1 || !strings.Contains(stderr, "is not bal") {
		t.Errorf("stop: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := d.bal("status"); code != exitNotRunning {
		t.Errorf("status: exit %d, want %d", code, exitNotRunning)
	}
	code, stdout, _ := d.bal("doctor", "--brief", "-c", d.cfg)
	if code != 1 || !strings.Contains(stdout, "pid: stale pid file detected (PID "+strconv.Itoa(sleeper.Process.Pid)+" is alive but is not bal)") {
		t.Errorf("doctor: exit %d %q", code, stdout)
	}
	select {
	case <-exited:
		t.Fatal("the process named in the stale pid file was signalled")
	case <-time.After(200 * time.Millisecond):
	}
	// start replaces the stale file and the sleeper lives on.
	pid := d.start()
	if pid == sleeper.Process.Pid {
		t.Fatal("pid file not replaced")
	}
	if code, _, stderr := d.bal("stop"); code != 0 {
		t.Errorf("stop: %s", stderr)
	}
	select {
	case <-exited:
		t.Fatal("the unrelated process was signalled")
	default:
	}
}

// TestStopDuringTransfer: bal stop during an 8 MiB download lets it finish
// byte-exact, refuses new connections at once, and exits 0.
func TestStopDuringTransfer(t *testing.T) {
	const size = 8 << 20
	be := enginetest.NewBackend(t, func(c *net.TCPConn) {
		_, _ = io.Copy(c, enginetest.NewStream(6, size))
	})
	d := newDaemonEnv(t, daemonConfig(t, be.Addr.String(), "drain_timeout_ms: 20000"))
	pid := d.start()
	bin := baltest.NeedBinary(t)

	c, err := net.DialTimeout("tcp", d.addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(c, first); err != nil {
		t.Fatal(err)
	}

	type result struct {
		code           int
		stdout, stderr string
	}
	stopped := make(chan result, 1)
	go func() {
		cmd := exec.Command(bin, "stop")
		cmd.Env = append(os.Environ(), "BAL_HOME="+d.home)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		code, _ := baltest.ExitCode(cmd.Run()) // -1: it did not run
		stopped <- result{code, out.String(), errb.String()}
	}()

	refused := false
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		nc, err := net.DialTimeout("tcp", d.addr(), time.Second)
		if err != nil {
			refused = errors.Is(err, syscall.ECONNREFUSED)
			break
		}
		nc.Close()
	}
	if !refused {
		t.Error("new connections still accepted after bal stop")
	}
	select {
	case r := <-stopped:
		t.Fatalf("bal stop returned during the transfer: %+v", r)
	default:
	}
	sum, n, err := enginetest.ReadAllSum(io.MultiReader(bytes.NewReader(first), c))
	if err != nil || n != size || sum != enginetest.StreamSum(6, size) {
		t.Fatalf("transfer during stop: %d bytes (want %d), sha ok %v, err %v", n, size, sum == enginetest.StreamSum(6, size), err)
	}
	c.Close()
	select {
	case r := <-stopped:
		if r.code != 0 || !strings.HasPrefix(r.stdout, fmt.Sprintf("bal stop: stopped (PID %d)", pid)) {
			t.Errorf("bal stop: %+v", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("bal stop did not return after the transfer ended")
	}
	if !gone(pid) {
		t.Errorf("daemon %d still running", pid)
	}
}

// TestStopTimeout: at the timeout, stop leaves the draining daemon running
// and says so; a second stop closes everything at once.
func TestStopTimeout(t *testing.T) {
	be := enginetest.NewBackend(t, enginetest.Echo)
	d := newDaemonEnv(t, daemonConfig(t, be.Addr.String(), "drain_timeout_ms: 60000"))
	pid := d.start()
	held := holdEcho(t, d.addr())

	code, _, stderr := d.bal("stop", "--timeout", "300ms")
	if code != 1 || !strings.Contains(stderr, fmt.Sprintf("PID %d is still running after 300ms", pid)) {
		t.Fatalf("stop --timeout 300ms: exit %d, stderr %q", code, stderr)
	}
	if gone(pid) {
		t.Fatal("the daemon exited although a connection was open")
	}
	echo(t, held, "still here")
	if _, _, w := d.status(); w.State == nil || *w.State != "draining" || !w.Running {
		t.Errorf("status while draining: %+v", w)
	}
	code, stdout, stderr := d.bal("stop", "--timeout", "10s")
	if code != 0 || !strings.Contains(stdout, "stopped") {
		t.Errorf("second stop: exit %d, %q %q", code, stdout, stderr)
	}
	_ = held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil {
		t.Error("held connection still open after the second stop")
	}
	if !strings.Contains(d.log(), "second signal: closing every connection now") {
		t.Errorf("log:\n%s", d.log())
	}
}

// TestNotifySocket: under systemd (Type=notify) bal reports READY=1 once
// listening, RELOADING=1 and READY=1 around a reload, and STOPPING=1 on stop.
func TestNotifySocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	next := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := nc.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}

	be := enginetest.NewBackend(t, enginetest.Echo)
	cfg := daemonConfig(t, be.Addr.String())
	p := baltest.Start(t, cfg)
	home := p.Home

	ready := next()
	if !strings.Contains(ready, "READY=1") || !strings.Contains(ready, fmt.Sprintf("MAINPID=%d", p.PID())) {
		t.Errorf("first notification %q", ready)
	}
	code, _, stderr := runBal(t, t.TempDir(), home, "graceful")
	if code != 0 {
		t.Fatalf("graceful: %s", stderr)
	}
	if got := next(); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("reload start %q", got)
	}
	if got := next(); !strings.HasPrefix(got, "READY=1\n") {
		t.Errorf("reload end %q", got)
	}
	code, stdout, stderr := runBal(t, t.TempDir(), home, "stop")
	if code != 0 || !strings.Contains(stdout, "stopped") {
		t.Errorf("stop: exit %d %q %q", code, stdout, stderr)
	}
	if got := next(); got != "STOPPING=1" {
		t.Errorf("stop notification %q", got)
	}
	if code := p.Wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// TestRestartAfterKill9: a daemon killed with SIGKILL leaves a stale PID
// file and control socket; the next start replaces both at once.
func TestRestartAfterKill9(t *testing.T) {
	be := enginetest.NewBackend(t, enginetest.Echo)
	d := newDaemonEnv(t, daemonConfig(t, be.Addr.String()))
	pid := d.start()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitGone(pid, 5*time.Second) {
		t.Fatal("not gone after SIGKILL")
	}
	for _, name := range []string{pidFileName, sockName} {
		if _, err := os.Lstat(d.path(name)); err != nil {
			t.Fatalf("a killed daemon should leave %s behind: %v", name, err)
		}
	}
	if code, _, _ := d.bal("status"); code != exitNotRunning {
		t.Errorf("status with stale files: exit %d", code)
	}
	code, stdout, _ := d.bal("doctor", "--json")
	if code != 1 || !strings.Contains(stdout, "stale pid file detected (PID "+strconv.Itoa(pid)+" is dead)") || !strings.Contains(stdout, "a stale "+d.path(sockName)) {
		t.Errorf("doctor with stale files: exit %d\n%s", code, stdout)
	}
	start := time.Now()
	if again := d.start(); again == pid {
		t.Fatalf("same PID %d", again)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("restart took %v", took)
	}
	holdEcho(t, d.addr()).Close()
}

// TestControlSocketGone: with its control socket removed, a running daemon
// is still "running" for status (WARN, exit 0), critical for doctor, and
// bal stop still finds it through the PID file.
func TestControlSocketGone(t *testing.T) {
	be := enginetest.NewBackend(t, enginetest.Echo)
	d := newDaemonEnv(t, daemonConfig(t, be.Addr.String(), "drain_timeout_ms: 1000"))
	pid := d.start()
	if err := os.Remove(d.path(sockName)); err != nil {
		t.Fatal(err)
	}
	code, doc, w := d.status()
	if code != 0 || !w.Running || w.PID == nil || *w.PID != pid || doc["overall"] != levelWarn || doc["active_connections"] != nil {
		t.Errorf("status: exit %d %v", code, doc)
	}
	code, stdout, _ := d.bal("doctor", "--brief")
	if code != 1 || !strings.Contains(stdout, fmt.Sprintf("control: bal (PID %d) runs but %s does not answer", pid, d.path(sockName))) {
		t.Errorf("doctor: exit %d %q", code, stdout)
	}
	if code, _, stderr := d.bal("graceful"); code != 1 || !strings.Contains(stderr, "not running") {
		t.Errorf("graceful: exit %d %q", code, stderr)
	}
	if code, stdout, stderr := d.bal("stop"); code != 0 || !strings.Contains(stdout, "stopped") {
		t.Errorf("stop: exit %d %q %q", code, stdout, stderr)
	}
}

// TestDoctorWithoutDaemon: with nothing running, doctor probes what a start
// would need.
func TestDoctorWithoutDaemon(t *testing.T) {
	up := enginetest.NewBackend(t, enginetest.Echo).Addr.String()
	down := enginetest.DeadAddr(t).String()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	tests := []struct {
		name     string
		backends []string
		runtime  []string
		port     int // 0: a free one
		homeMode fs.FileMode
		code     int
		overall  string
		levels   map[string]string // check name -> level (others not checked)
		summary  string            // substring of the output
	}{
		{"healthy", []string{up}, nil, 0, 0, 0, levelWarn,
			map[string]string{"pid": "ok", "config": "ok", "bind": "ok", "backend": "ok", "limits": "ok", "control": "warn"}, "bal is not running (no control socket)"},
		{"one backend down", []string{up, down}, nil, 0, 0, 0, levelWarn,
			map[string]string{"backend": "warn"}, "Unreachable: " + down},
		{"every backend down", []string{down}, nil, 0, 0, 1, levelFailed,
			map[string]string{"backend": "critical"}, "reachable 0/1"},
		{"port held by another process", []string{up}, nil, taken.Addr().(*net.TCPAddr).Port, 0, 1, levelFailed,
			map[string]string{"bind": "critical"}, "is already in use by another process"},
		{"limits", []string{up}, []string{"max_concurrent_connections: 5000000", "tcp_backlog: 65535"}, 0, 0, 0, levelWarn,
			map[string]string{"limits": "warn"}, "descriptors max_concurrent_connections 5000000 needs"},
		{"home writable by others", []string{up}, nil, 0, 0o777, 1, levelFailed,
			map[string]string{"pid": "critical"}, "is writable by others (mode 0777)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := daemonConfig(t, tt.backends[0], tt.runtime...)
			cfg.Backends = tt.backends
			if tt.port != 0 {
				cfg.Port = tt.port
			}
			d := newDaemonEnv(t, cfg)
			if tt.homeMode != 0 {
				if err := os.Mkdir(d.home, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(d.home, tt.homeMode); err != nil {
					t.Fatal(err)
				}
			}
			code, stdout, stderr := d.bal("doctor", "--json", "-c", d.cfg)
			var doc doctorJSON
			if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
				t.Fatalf("doctor --json (%v): %q %q", err, stdout, stderr)
			}
			if code != tt.code || doc.Overall != tt.overall || len(doc.Checks) != 6 || !strings.Contains(stdout, tt.summary) {
				t.Errorf("exit %d (want %d), overall %s (want %s), output lacks %q?\n%s", code, tt.code, doc.Overall, tt.overall, tt.summary, stdout)
			}
			for _, c := range doc.Checks {
				if want, ok := tt.levels[c.Name]; ok && c.Level != want {
					t.Errorf("%s: %s (%s), want %s", c.Name, c.Level, c.Summary, want)
				}
			}
		})
	}
}
