package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Helpers for black-box tests that run bal as a real process: start it in
// the foreground with its own BAL_HOME, read its JSON log, signal and stop it.

// testEngines are the engines every data-path black-box test runs against.
func testEngines() []string {
	if runtime.GOOS == "linux" {
		return []string{"gnet", "std"}
	}
	return []string{"std"}
}

// logEntry is one JSON log line of bal.
type logEntry struct {
	Time  time.Time
	Msg   string
	Level string
	Attrs map[string]any
}

// balProc is a bal started by the test.
type balProc struct {
	t    *testing.T
	home string
	cmd  *exec.Cmd
	port int
	done chan struct{}
	exit int

	mu     sync.Mutex
	logs   []logEntry
	raw    strings.Builder
	notify chan struct{}
}

// balConfig writes an advanced-mode config for a test instance: bind
// 127.0.0.1, the given port and engine, backends as "host:port[ weight]",
// plus extra lines (top-level keys or "runtime:"-indented ones via runtime).
type balConfig struct {
	port     int
	engine   string
	method   string
	backends []string // "127.0.0.1:9000" or "127.0.0.1:9000 3" (weight)
	runtime  []string // "key: value" lines under runtime:
	extra    []string // top-level lines
}

func (c balConfig) String() string {
	var b strings.Builder
	method := c.method
	if method == "" {
		method = "round_robin"
	}
	fmt.Fprintf(&b, "mode: advanced\nport: %d\nbind_address: 127.0.0.1\nmethod: %s\nlog_level: debug\n", c.port, method)
	for _, l := range c.extra {
		b.WriteString(l + "\n")
	}
	b.WriteString("runtime:\n")
	if c.engine != "" {
		fmt.Fprintf(&b, "  engine: %s\n", c.engine)
	}
	for _, l := range c.runtime {
		b.WriteString("  " + l + "\n")
	}
	b.WriteString("backends:\n")
	for _, be := range c.backends {
		addr, weight, _ := strings.Cut(be, " ")
		ap := netip.MustParseAddrPort(addr)
		fmt.Fprintf(&b, "  - host: %q\n    port: %d\n", ap.Addr().String(), ap.Port())
		if weight != "" {
			fmt.Fprintf(&b, "    weight: %s\n", weight)
		}
	}
	return b.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startBalProc runs `bal start -c cfgPath` in the foreground with BAL_HOME =
// home and waits until port accepts connections. The cleanup kills it if the
// test did not stop it.
func startBalProc(t *testing.T, home, cfgPath string, port int) *balProc {
	t.Helper()
	p := &balProc{t: t, home: home, port: port, done: make(chan struct{}), notify: make(chan struct{}, 1)}
	p.cmd = exec.Command(balBin, "start", "-c", cfgPath)
	p.cmd.Env = append(os.Environ(), "BAL_HOME="+home, "HOME="+home)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.readLog(stderr)
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("bal log:\n%s", p.rawLog())
		}
	})
	// Ready once it logs "bal started" (after the listener is bound); a
	// probe connection would consume a balancing pick.
	deadline := time.After(10 * time.Second)
	for {
		if _, i := p.findLog(0, "bal started", nil); i >= 0 {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("bal exited with %d before listening:\n%s", p.exit, p.rawLog())
		case <-p.notify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("bal not listening on %d after 10 s:\n%s", port, p.rawLog())
		}
	}
}

func (p *balProc) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var m map[string]any
		e := logEntry{}
		if json.Unmarshal([]byte(line), &m) == nil {
			e.Msg, _ = m["msg"].(string)
			e.Level, _ = m["level"].(string)
			if ts, ok := m["time"].(string); ok {
				e.Time, _ = time.Parse(time.RFC3339Nano, ts)
			}
			e.Attrs = m
		} else {
			e.Msg = line
		}
		p.mu.Lock()
		p.logs = append(p.logs, e)
		p.raw.WriteString(line + "\n")
		p.mu.Unlock()
		select {
		case p.notify <- struct{}{}:
		default:
		}
	}
	err := p.cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		p.exit = ee.ExitCode()
	}
	close(p.done)
}

func (p *balProc) rawLog() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// findLog returns the first log entry from index `from` on with msg whose
// attributes include every key=value in attrs, and its index; -1 if none.
func (p *balProc) findLog(from int, msg string, attrs map[string]string) (logEntry, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := from; i < len(p.logs); i++ {
		e := p.logs[i]
		if e.Msg != msg {
			continue
		}
		ok := true
		for k, v := range attrs {
			if fmt.Sprint(e.Attrs[k]) != v {
				ok = false
				break
			}
		}
		if ok {
			return e, i
		}
	}
	return logEntry{}, -1
}

// logCount is the number of log lines read so far (a cursor for findLog).
func (p *balProc) logCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.logs)
}

// waitLog waits up to timeout for a matching log entry at or after from.
func (p *balProc) waitLog(from int, msg string, attrs map[string]string, timeout time.Duration) logEntry {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		if e, i := p.findLog(from, msg, attrs); i >= 0 {
			return e
		}
		select {
		case <-p.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			p.t.Fatalf("no log %q %v within %v:\n%s", msg, attrs, timeout, p.rawLog())
		}
	}
}

func (p *balProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// reload sends SIGHUP and waits for the reload's log line after from.
func (p *balProc) reload() logEntry {
	p.t.Helper()
	from := p.logCount()
	p.signal(syscall.SIGHUP)
	deadline := time.After(10 * time.Second)
	for {
		if e, i := p.findLog(from, "reloaded", nil); i >= 0 {
			return e
		}
		if e, i := p.findLog(from, "reload rejected; the previous configuration keeps serving", nil); i >= 0 {
			return e
		}
		select {
		case <-p.notify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			p.t.Fatalf("no reload outcome logged within 10 s:\n%s", p.rawLog())
		}
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *balProc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.exit
	case <-time.After(timeout):
		p.t.Fatalf("bal still running %v after being asked to stop:\n%s", timeout, p.rawLog())
		return -1
	}
}

func (p *balProc) addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// pidFile is the instance's PID file.
func (p *balProc) pidFile() string { return filepath.Join(p.home, pidFileName) }
