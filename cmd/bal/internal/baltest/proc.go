package baltest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LogEntry is one JSON log line of bal.
type LogEntry struct {
	Time  time.Time
	Msg   string
	Level string
	Attrs map[string]any
}

// Attr returns an attribute as a string ("" when absent).
func (e LogEntry) Attr(k string) string {
	if v, ok := e.Attrs[k]; ok {
		return fmt.Sprint(v)
	}
	return ""
}

// Option changes how Start runs bal.
type Option func(*Proc)

// AsUser runs bal with this uid/gid (the test must run as root); BAL_HOME
// and the config are handed to that user.
func AsUser(uid, gid int) Option { return func(p *Proc) { p.uid, p.gid = uid, gid } }

// InNetNS runs bal inside the named network namespace (see NetNS).
func InNetNS(ns string) Option { return func(p *Proc) { p.netns = ns } }

// Env adds environment variables ("K=V").
func Env(kv ...string) Option { return func(p *Proc) { p.env = append(p.env, kv...) } }

// Binary runs this bal binary instead of Bin (e.g. RaceBinary's).
func Binary(path string) Option { return func(p *Proc) { p.bin = path } }

// Home uses this BAL_HOME instead of a fresh temporary one.
func Home(dir string) Option { return func(p *Proc) { p.Home = dir } }

// Proc is a bal started in the foreground by a test.
type Proc struct {
	T          testing.TB
	Home       string // BAL_HOME
	ConfigPath string
	Port       int
	Cmd        *exec.Cmd

	uid, gid int
	bin      string // "" = Bin
	netns    string
	env      []string

	done chan struct{}
	exit int

	mu     sync.Mutex
	logs   []LogEntry
	raw    strings.Builder
	notify chan struct{}
}

// Start writes cfg and runs `bal start -c` in the foreground with its own
// BAL_HOME, and waits until bal logs "bal started" (it is listening). The
// cleanup kills it if the test did not stop it, and dumps its log on failure.
func Start(t testing.TB, cfg Config, opts ...Option) *Proc {
	t.Helper()
	return StartYAML(t, cfg.String(), cfg.Port, opts...)
}

// StartYAML is Start with a config file written verbatim (for what Config
// cannot express, such as hostname backends); port is the config's port.
func StartYAML(t testing.TB, yaml string, port int, opts ...Option) *Proc {
	t.Helper()
	NeedBinary(t)
	p := &Proc{T: t, Port: port, uid: -1, gid: -1, done: make(chan struct{}), notify: make(chan struct{}, 1)}
	for _, o := range opts {
		o(p)
	}
	var dir string
	if p.uid >= 0 {
		dir = SharedTempDir(t) // the other user must reach its files
	} else {
		dir = t.TempDir()
	}
	defaultHome := p.Home == ""
	if defaultHome {
		p.Home = filepath.Join(dir, "home")
	}
	p.ConfigPath = filepath.Join(dir, "config.yaml")
	WriteFile(t, p.ConfigPath, yaml)
	if p.uid >= 0 {
		if err := os.Chown(p.ConfigPath, p.uid, p.gid); err != nil {
			t.Fatalf("chown %s: %v", p.ConfigPath, err)
		}
		if defaultHome {
			MkdirAs(t, p.Home, 0o700, p.uid, p.gid) // bal refuses a home another uid owns
		}
	}
	p.start(t)
	return p
}

func (p *Proc) command(args ...string) *exec.Cmd {
	name := Bin
	if p.bin != "" {
		name = p.bin
	}
	if p.netns != "" {
		args = append([]string{"netns", "exec", p.netns, name}, args...)
		name = "ip"
	}
	c := exec.Command(name, args...)
	c.Env = append(os.Environ(), "BAL_HOME="+p.Home, "HOME="+p.Home)
	c.Env = append(c.Env, p.env...)
	if p.uid >= 0 {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(p.uid), Gid: uint32(p.gid)}}
	}
	return c
}

func (p *Proc) start(t testing.TB) {
	t.Helper()
	p.Cmd = p.command("start", "-c", p.ConfigPath)
	stderr, err := p.Cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.readLog(stderr)
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.Cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("bal log:\n%s", p.RawLog())
		}
	})
	deadline := time.After(15 * time.Second)
	for {
		if _, i := p.FindLog(0, "bal started", nil); i >= 0 {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("bal exited with %d before listening:\n%s", p.exit, p.RawLog())
		case <-p.notify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("bal not started after 15 s:\n%s", p.RawLog())
		}
	}
}

func (p *Proc) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		e := LogEntry{Msg: line}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			e.Msg, _ = m["msg"].(string)
			e.Level, _ = m["level"].(string)
			if ts, ok := m["time"].(string); ok {
				e.Time, _ = time.Parse(time.RFC3339Nano, ts)
			}
			e.Attrs = m
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
	err := p.Cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		p.exit = ee.ExitCode()
	}
	close(p.done)
}

// PID is bal's process ID.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Addr is "127.0.0.1:port".
func (p *Proc) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.Port) }

// RawLog is everything bal wrote to stderr so far.
func (p *Proc) RawLog() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// LogCount is the number of log lines so far (a cursor for FindLog).
func (p *Proc) LogCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.logs)
}

// Logs returns the entries with msg from index from on.
func (p *Proc) Logs(from int, msg string) []LogEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []LogEntry
	for _, e := range p.logs[min(from, len(p.logs)):] {
		if e.Msg == msg {
			out = append(out, e)
		}
	}
	return out
}

// FindLog returns the first entry at or after from with msg and every
// attribute in attrs, and its index (-1 when none).
func (p *Proc) FindLog(from int, msg string, attrs map[string]string) (LogEntry, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := from; i < len(p.logs); i++ {
		e := p.logs[i]
		if e.Msg != msg {
			continue
		}
		ok := true
		for k, v := range attrs {
			if e.Attr(k) != v {
				ok = false
				break
			}
		}
		if ok {
			return e, i
		}
	}
	return LogEntry{}, -1
}

// WaitLog waits up to timeout for a matching entry at or after from.
func (p *Proc) WaitLog(from int, msg string, attrs map[string]string, timeout time.Duration) LogEntry {
	p.T.Helper()
	deadline := time.After(timeout)
	for {
		if e, i := p.FindLog(from, msg, attrs); i >= 0 {
			return e
		}
		select {
		case <-p.notify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			p.T.Fatalf("no log %q %v within %v:\n%s", msg, attrs, timeout, p.RawLog())
		}
	}
}

// Signal sends sig to bal.
func (p *Proc) Signal(sig syscall.Signal) {
	p.T.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		p.T.Fatalf("signal %v: %v", sig, err)
	}
}

// Reload writes cfg (when not nil) to the config file, sends SIGHUP and
// returns the outcome's log entry ("reloaded" or the rejection).
func (p *Proc) Reload(cfg *Config) LogEntry {
	p.T.Helper()
	if cfg != nil {
		WriteFile(p.T, p.ConfigPath, cfg.String())
	}
	from := p.LogCount()
	p.Signal(syscall.SIGHUP)
	deadline := time.After(10 * time.Second)
	for {
		if e, i := p.FindLog(from, "reloaded", nil); i >= 0 {
			return e
		}
		if e, i := p.FindLog(from, RejectedMsg, nil); i >= 0 {
			return e
		}
		select {
		case <-p.notify:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			p.T.Fatalf("no reload outcome logged within 10 s:\n%s", p.RawLog())
		}
	}
}

// RejectedMsg is the log message of a rejected reload.
const RejectedMsg = "reload rejected; the previous configuration keeps serving"

// ExitCode is bal's exit code once Done is closed.
func (p *Proc) ExitCode() int {
	<-p.done
	return p.exit
}

// Done is closed when bal has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for bal to exit and returns its exit code.
func (p *Proc) Wait(timeout time.Duration) int {
	p.T.Helper()
	select {
	case <-p.done:
		return p.exit
	case <-time.After(timeout):
		p.T.Fatalf("bal still running %v after being asked to stop:\n%s", timeout, p.RawLog())
		return -1
	}
}

// Stop sends SIGTERM and waits up to timeout; it returns the exit code.
func (p *Proc) Stop(timeout time.Duration) int {
	p.T.Helper()
	select {
	case <-p.done:
		return p.exit
	default:
	}
	p.Signal(syscall.SIGTERM)
	return p.Wait(timeout)
}

// Run runs a bal CLI command (status, stop, graceful, doctor...) against
// this instance's BAL_HOME and returns its exit code and output.
func (p *Proc) Run(args ...string) (code int, stdout, stderr string) {
	p.T.Helper()
	c := p.command(args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	code, err := ExitCode(c.Run())
	if err != nil {
		p.T.Fatalf("bal %v: %v", args, err)
	}
	return code, out.String(), errb.String()
}

// Status runs `bal status --json` and decodes it.
func (p *Proc) Status() map[string]any {
	p.T.Helper()
	code, out, errOut := p.Run("status", "--json")
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		p.T.Fatalf("bal status --json (exit %d): %v\n%s%s", code, err, out, errOut)
	}
	return m
}

// FDs is the number of open file descriptors of bal.
func (p *Proc) FDs() int { return FDs(p.T, p.PID()) }

// RSS is bal's resident memory in KiB.
func (p *Proc) RSS() int64 { return statusField(p.T, p.PID(), "VmRSS") }

// Threads is bal's thread count.
func (p *Proc) Threads() int64 { return statusField(p.T, p.PID(), "Threads") }

// FDs counts /proc/<pid>/fd.
func FDs(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatalf("fds of %d: %v", pid, err)
	}
	return len(ents)
}

func statusField(t testing.TB, pid int, key string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("status of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(v)
			n, _ := strconv.ParseInt(f[0], 10, 64)
			return n
		}
	}
	t.Fatalf("%s not in /proc/%d/status", key, pid)
	return 0
}
