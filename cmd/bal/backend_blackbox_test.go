//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/control"
)

// Black-box tests of runtime backend administration (docs/operations.md,
// "Take a backend out for a deploy"): the real binary, both engines.

// acceptLog is a NameEcho backend that records when it accepted each
// connection.
type acceptLog struct {
	mu    sync.Mutex
	times []time.Time
}

func (a *acceptLog) handler(name string) func(*net.TCPConn) {
	echo := baltest.NameEcho(name)
	return func(c *net.TCPConn) {
		a.mu.Lock()
		a.times = append(a.times, time.Now())
		a.mu.Unlock()
		echo(c)
	}
}

func (a *acceptLog) since(t time.Time) (n int, last time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, at := range a.times {
		if at.After(t) {
			n++
		}
		if at.After(last) {
			last = at
		}
	}
	return n, last
}

// dialTo opens connections through bal until one reaches the backend
// named want (round robin: a few tries), and returns it with the name line
// read.
func dialTo(t *testing.T, addr, want string) net.Conn {
	t.Helper()
	for range 20 {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		name, err := baltest.ReadName(c)
		_ = c.SetReadDeadline(time.Time{})
		if err == nil && name == want {
			return c
		}
		c.Close()
	}
	t.Fatalf("no connection through bal reached %s in 20 tries", want)
	return nil
}

// longTransfer echoes size bytes through c in two halves, the second sent
// only once resume is closed; done yields nil when every byte came back
// intact.
func longTransfer(c net.Conn, size int64, resume <-chan struct{}) <-chan error {
	done := make(chan error, 1)
	go func() {
		var sent, got [32]byte
		var n int64
		read := make(chan error, 1)
		go func() {
			h := sha256.New()
			var err error
			n, err = io.Copy(h, c)
			copy(got[:], h.Sum(nil))
			read <- err
		}()
		h := sha256.New()
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
		var written int64
		for written < size {
			if written == size/2 {
				<-resume
			}
			chunk[0] = byte(written >> 16) // not every chunk alike
			if _, err := c.Write(chunk); err != nil {
				done <- fmt.Errorf("write after %d bytes: %w", written, err)
				return
			}
			h.Write(chunk)
			written += int64(len(chunk))
		}
		copy(sent[:], h.Sum(nil))
		_ = c.(*net.TCPConn).CloseWrite()
		if err := <-read; err != nil {
			done <- fmt.Errorf("read back: %w", err)
			return
		}
		if n != size || got != sent {
			done <- fmt.Errorf("echoed %d bytes (sum %x), sent %d (sum %x)", n, got[:4], size, sent[:4])
			return
		}
		done <- nil
	}()
	return done
}

// TestBackendDrainUnderLoad: under a steady load of short connections,
// `bal backend drain` takes a backend out: from the moment the command
// returns no new connection reaches it, no client fails, and a long
// transfer it relays finishes byte-exact; `bal backend ready` brings it
// back into round robin.
func TestBackendDrainUnderLoad(t *testing.T) {
	baltest.ForEngine(t, func(t *testing.T, eng string) {
		var drainedLog acceptLog
		b1 := baltest.NewBackend(t, baltest.NameEcho("b1"))
		b2 := baltest.NewBackend(t, drainedLog.handler("b2"))
		b3 := baltest.NewBackend(t, baltest.NameEcho("b3"))
		p, _ := startShortDrain(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng,
			Backends: []string{b1.Addr(), b2.Addr(), b3.Addr()}, Runtime: baltest.QuietHealth()})
		p.WaitHealthRound(10 * time.Second)

		long := dialTo(t, p.Addr(), "b2")
		defer long.Close()
		resume := make(chan struct{})
		const size = 48 << 20
		transfer := longTransfer(long, size, resume)

		load := baltest.StartLoad(t, p.Addr(), baltest.LoadOptions{Rate: 200})
		time.Sleep(time.Second)
		began := time.Now()
		code, out, errOut := p.Run("backend", "drain", b2.Addr())
		returned := time.Now()
		if want := fmt.Sprintf("default/default %s: ready -> drain\n", b2.Addr()); code != 0 || out != want {
			t.Fatalf("bal backend drain: exit %d, stdout %q (want %q), stderr %q", code, out, want, errOut)
		}
		close(resume)
		time.Sleep(1500 * time.Millisecond)
		res := load.Stop()

		before, failedBefore := baltest.Tally(res, time.Time{}, began)
		after, failedAfter := baltest.Tally(res, returned, time.Now().Add(time.Hour))
		if len(failedBefore)+len(failedAfter) > 0 || countFailed(res) > 0 {
			t.Fatalf("%d client connections failed, e.g. %v", countFailed(res), firstFailure(res))
		}
		if before["b2"] == 0 {
			t.Fatalf("b2 got no connection before the drain: %v", before)
		}
		if after["b2"] != 0 || after["b1"] == 0 || after["b3"] == 0 {
			t.Fatalf("connections started after the drain command returned: %v (b2 must get none)", after)
		}
		// Backend side: b2's last accept, a figure. A connection bal picked
		// just before the drain may be accepted (and time-stamped by this
		// test's goroutine) a moment after the command returned; none may
		// come a second later (a generous bound for a loaded machine).
		_, last := drainedLog.since(returned)
		if late, _ := drainedLog.since(returned.Add(time.Second)); late != 0 {
			t.Fatalf("b2 accepted %d connections more than 1 s after the drain command returned", late)
		}
		select {
		case err := <-transfer:
			if err != nil {
				t.Fatalf("the long transfer on the drained backend: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the long transfer on the drained backend did not finish within 60 s")
		}
		total := 0
		for _, n := range after {
			total += n
		}
		baltest.Record(t, 0, fmt.Sprintf("drain command took %v; b2's last accept %v after the command began (%v before it returned); %d connections begun after it returned, 0 to b2; 0 failed of %d; %d MiB transfer byte-exact",
			returned.Sub(began).Round(time.Millisecond), last.Sub(began).Round(time.Millisecond), returned.Sub(last).Round(time.Millisecond), total, len(res), size>>20), true)

		// ready: back into round robin.
		code, out, errOut = p.Run("backend", "ready", b2.Addr())
		readyAt := time.Now()
		if want := fmt.Sprintf("default/default %s: drain -> ready\n", b2.Addr()); code != 0 || out != want {
			t.Fatalf("bal backend ready: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		load = baltest.StartLoad(t, p.Addr(), baltest.LoadOptions{Rate: 200})
		time.Sleep(1500 * time.Millisecond)
		res = load.Stop()
		back, failed := baltest.Tally(res, readyAt, time.Now().Add(time.Hour))
		n := back["b1"] + back["b2"] + back["b3"]
		if len(failed) > 0 || n == 0 || back["b2"]*4 < n {
			t.Fatalf("after ready: %v, %d failed; b2 must be back in the rotation (a third of the connections)", back, len(failed))
		}
	})
}

func countFailed(res []baltest.Outcome) int {
	n := 0
	for _, o := range res {
		if o.Err != nil {
			n++
		}
	}
	return n
}

func firstFailure(res []baltest.Outcome) error {
	for _, o := range res {
		if o.Err != nil {
			return o.Err
		}
	}
	return nil
}

// backendStates is `bal backend list --json`: "service/pool address" →
// state.
func backendStates(t *testing.T, p *baltest.Proc) map[string]string {
	t.Helper()
	code, out, errOut := p.Run("backend", "list", "--json")
	var l control.BackendList
	if err := json.Unmarshal([]byte(out), &l); err != nil || code != 0 {
		t.Fatalf("bal backend list --json: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	m := map[string]string{}
	for _, b := range l.Backends {
		m[b.Service+"/"+b.Pool+" "+b.Address] = b.AdminState
	}
	return m
}

// names reads the backend name of n fresh connections through bal.
func names(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		name, err := baltest.ReadName(c)
		c.Close()
		if err != nil {
			t.Fatalf("connection through bal: %v", err)
		}
		got[name]++
	}
	return got
}

// TestBackendStateSurvives: a drain survives `bal graceful` and `bal stop` +
// `bal start` (the restarted bal sends no connection to the drained
// backend, from its first one on); a reload that removes the backend drops
// its state with a log line.
func TestBackendStateSurvives(t *testing.T) {
	baltest.ForEngine(t, func(t *testing.T, eng string) {
		b1 := baltest.NewBackend(t, baltest.NameEcho("b1"))
		b2 := baltest.NewBackend(t, baltest.NameEcho("b2"))
		cfg := baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{b1.Addr(), b2.Addr()}, Runtime: shortDrain}
		p := baltest.Start(t, cfg)
		t.Cleanup(func() { stopGracefully(p) })
		if code, _, errOut := p.Run("backend", "drain", b1.Addr()); code != 0 {
			t.Fatalf("drain: exit %d: %s", code, errOut)
		}
		key := "default/default " + b1.Addr()
		if code, out, errOut := p.Run("graceful"); code != 0 {
			t.Fatalf("graceful: exit %d: %s%s", code, out, errOut)
		}
		if st := backendStates(t, p)[key]; st != "drain" {
			t.Fatalf("after bal graceful: %s is %q, want drain", key, st)
		}
		if got := names(t, p.Addr(), 10); got["b1"] != 0 {
			t.Fatalf("after bal graceful: %v", got)
		}
		statePath := filepath.Join(p.Home, "state.json")
		if fi, err := os.Stat(statePath); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("state.json: %v %v, want mode 0600", fi, err)
		}

		if code, _, errOut := p.Run("stop"); code != 0 {
			t.Fatalf("bal stop: exit %d: %s", code, errOut)
		}
		p2 := baltest.StartYAML(t, cfg.String(), cfg.Port, baltest.Home(p.Home))
		t.Cleanup(func() { stopGracefully(p2) })
		p2.WaitLog(0, "admin state restored from the state file", map[string]string{"backend": b1.Addr(), "state": "drain"}, 5*time.Second)
		if got := names(t, p2.Addr(), 10); got["b1"] != 0 || got["b2"] != 10 {
			t.Fatalf("after bal stop + bal start: %v, want every connection on b2", got)
		}
		if st := backendStates(t, p2)[key]; st != "drain" {
			t.Fatalf("after a restart: %s is %q, want drain", key, st)
		}

		// A reload that removes b1 drops its state.
		cfg.Backends = []string{b2.Addr()}
		from := p2.LogCount()
		if e := p2.Reload(&cfg); e.Msg != "reloaded" {
			t.Fatalf("reload: %s", e.Msg)
		}
		p2.WaitLog(from, "admin state dropped: the backend is no longer configured in that pool", map[string]string{"backend": b1.Addr()}, 5*time.Second)
		data, err := os.ReadFile(statePath)
		if err != nil || strings.Contains(string(data), b1.Addr()) {
			t.Fatalf("state.json after the reload still names %s: %s %v", b1.Addr(), data, err)
		}
	})
}

// TestBackendBadInput: wrong input on the CLI and on the control socket
// gets a clear error and changes nothing.
func TestBackendBadInput(t *testing.T) {
	b1 := baltest.NewBackend(t, baltest.NameEcho("b1"))
	p, _ := startShortDrain(t, baltest.Config{Port: baltest.FreePort(t), Backends: []string{b1.Addr()}})
	initial := backendStates(t, p)
	cli := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown backend", []string{"backend", "drain", "127.0.0.1:1"}, 1, "backend 127.0.0.1:1 is not configured"},
		{"unknown service", []string{"backend", "drain", b1.Addr(), "--service", "web"}, 1, `no service "web"`},
		{"unknown route", []string{"backend", "maint", b1.Addr(), "--route", "api"}, 1, `no route "api"`},
		{"bad state", []string{"backend", "pause", b1.Addr()}, 2, `unknown subcommand "pause"`},
		{"bad backend", []string{"backend", "drain", "localhost"}, 2, "no port"},
		{"missing backend", []string{"backend", "drain"}, 2, "missing BACKEND"},
		{"extra argument", []string{"backend", "drain", b1.Addr(), "again"}, 2, `unexpected argument "again"`},
		{"bad close-after", []string{"backend", "drain", b1.Addr(), "--close-after", "soon"}, 2, "not a duration"},
		{"negative close-after", []string{"backend", "drain", b1.Addr(), "--close-after=-5s"}, 2, "must be positive"},
		{"close-after with ready", []string{"backend", "ready", b1.Addr(), "--close-after", "5s"}, 2, "drain and maint"},
		{"json with drain", []string{"backend", "drain", b1.Addr(), "--json"}, 2, "--json applies to list"},
		{"no subcommand", []string{"backend"}, 2, "missing subcommand"},
		{"unknown flag", []string{"backend", "list", "--all"}, 2, "unknown flag"},
	}
	for _, tt := range cli {
		t.Run("cli/"+tt.name, func(t *testing.T) {
			code, out, errOut := p.Run(tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.msg) || out != "" {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q (want it to mention %q)", code, tt.code, out, errOut, tt.msg)
			}
		})
	}

	ctl := filepath.Join(p.Home, "bal.sock")
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", ctl)
	}}, Timeout: 5 * time.Second}
	sock := []struct {
		name string
		body string
		code int
		msg  string
	}{
		{"bad JSON", `{"backend": "` + b1.Addr(), 400, "bad JSON"},
		{"bad state", `{"backend":"` + b1.Addr() + `","state":"sleep"}`, 400, "unknown state"},
		{"unknown backend", `{"backend":"127.0.0.1:1","state":"drain"}`, 404, "not configured"},
		{"huge body", `{"backend":"` + b1.Addr() + `","state":"drain","pad":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "over 65536 bytes"},
	}
	for _, tt := range sock {
		t.Run("socket/"+tt.name, func(t *testing.T) {
			resp, err := hc.Post("http://bal/backends/state", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var ea control.ErrorAnswer
			if err := json.NewDecoder(resp.Body).Decode(&ea); err != nil || resp.StatusCode != tt.code || !strings.Contains(ea.Error, tt.msg) {
				t.Fatalf("%d %+v %v, want %d mentioning %q", resp.StatusCode, ea, err, tt.code, tt.msg)
			}
		})
	}
	if got := backendStates(t, p); fmt.Sprint(got) != fmt.Sprint(initial) {
		t.Fatalf("bad input changed the states: %v, was %v", got, initial)
	}
	if _, err := os.Stat(filepath.Join(p.Home, "state.json")); !os.IsNotExist(err) {
		t.Fatalf("bad input wrote state.json (%v)", err)
	}
	if got := names(t, p.Addr(), 3); got["b1"] != 3 {
		t.Fatalf("after bad input: %v", got)
	}

	// No bal running: exit 1 saying so.
	home := t.TempDir()
	code, out, errOut := runBal(t, home, home, "backend", "drain", b1.Addr())
	if code != 1 || out != "" || !strings.Contains(errOut, "not running") {
		t.Fatalf("no bal running: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = runBal(t, home, home, "backend", "list", "--json")
	var l struct {
		Backends []any   `json:"backends"`
		Error    *string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil || code != 1 || l.Error == nil || !strings.Contains(*l.Error, "not running") || l.Backends == nil {
		t.Fatalf("list --json with no bal running: exit %d, %q (%v)", code, out, err)
	}
}

// waitEnded waits until c is closed or reset by bal (a read fails), at
// most within.
func waitEnded(t *testing.T, c net.Conn, within time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	_ = c.SetReadDeadline(began.Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection is still open after %v", within)
	}
	return time.Since(began)
}

// TestBackendResets: `--close-after` resets a drained backend's open
// connections once the delay runs out, and on_backend_down: close resets
// the connections of a backend the health checks mark down; the other
// backends' connections stay, and status counts both.
func TestBackendResets(t *testing.T) {
	baltest.ForEngine(t, func(t *testing.T, eng string) {
		b1 := baltest.NewBackend(t, baltest.NameEcho("b1"))
		b2 := baltest.NewBackend(t, baltest.NameEcho("b2"))
		b3 := baltest.NewBackend(t, baltest.NameEcho("b3"))
		p, _ := startShortDrain(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng,
			Backends: []string{b1.Addr(), b2.Addr(), b3.Addr()},
			Runtime:  []string{"health_check_interval_ms: 200", "health_check_fail_threshold: 1"},
			Extra:    []string{"on_backend_down: close"}})
		c1, c2, c3 := dialTo(t, p.Addr(), "b1"), dialTo(t, p.Addr(), "b2"), dialTo(t, p.Addr(), "b3")
		defer c1.Close()
		defer c2.Close()
		defer c3.Close()

		began := time.Now()
		if code, out, errOut := p.Run("backend", "maint", b1.Addr(), "--close-after", "300ms"); code != 0 || !strings.Contains(out, "ready -> maint") {
			t.Fatalf("maint --close-after: exit %d %q %q", code, out, errOut)
		}
		waitEnded(t, c1, 10*time.Second)
		if after := time.Since(began); after < 300*time.Millisecond {
			t.Fatalf("the drained backend's connection ended %v after the command, before its 300ms delay", after)
		}
		p.WaitLog(0, "connections reset: close-after delay over", map[string]string{"backend": b1.Addr()}, 5*time.Second)

		b2.CloseListener() // its checks are refused; its open connection stays
		waitEnded(t, c2, 10*time.Second)
		p.WaitLog(0, "connections reset: backend down", map[string]string{"backend": b2.Addr(), "reason": "refused"}, 5*time.Second)

		_ = c3.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c3, "still here"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len("still here"))
		if _, err := io.ReadFull(c3, buf); err != nil || string(buf) != "still here" {
			t.Fatalf("b3's connection after the resets: %q %v", buf, err)
		}
		st := p.Status()
		svc := st["services"].([]any)[0].(map[string]any)
		if svc["closed_by_admin"] != 1.0 || svc["closed_on_down"] != 1.0 {
			t.Fatalf("status: closed_by_admin %v closed_on_down %v, want 1 and 1", svc["closed_by_admin"], svc["closed_on_down"])
		}
		for _, b := range st["backends"].([]any) {
			bm := b.(map[string]any)
			if bm["address"] == b2.Addr() && (bm["reachable"] != false || !strings.HasPrefix(fmt.Sprint(bm["last_check_error"]), "refused: ")) {
				t.Fatalf("b2 in status: %v", bm)
			}
		}
	})
}
