//go:build linux

package baltest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NameEcho is a handler that writes name and a newline, then echoes until
// EOF: short clients read the name and close, long ones keep echoing.
func NameEcho(name string) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		if _, err := io.WriteString(c, name+"\n"); err != nil {
			return
		}
		_, _ = io.Copy(c, c)
	}
}

// TCP states of tcp_info (include/net/tcp_states.h).
const (
	tcpClose     = 7
	tcpCloseWait = 8
)

// TCPState returns the kernel's TCP state of c (1 established, 7 closed
// (reset), 8 close-wait (peer sent FIN), ...) and the bytes waiting in its
// receive queue, without reading from it.
func TCPState(c *net.TCPConn) (state uint8, unread int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		if info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); gerr != nil {
			return
		}
		state = info.State
		unread, gerr = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	}); err != nil {
		return 0, 0, err
	}
	return state, unread, gerr
}

// Hang is a handler for a backend that accepts and then never reads, writes
// or closes on its own (hivecommons/hive#3872): it only watches the socket's
// TCP state (no read) and returns — the backend then closes — once the peer
// (bal) closed or reset it, reporting when that was seen and how many bytes
// it had been sent (and never read): 0 for a health check's bare connect.
// It also returns when the backend is killed.
func Hang(closed func(accepted, seen time.Time, unread int)) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		accepted := time.Now()
		for {
			st, unread, err := TCPState(c)
			if err != nil {
				return // closed by Kill
			}
			if st == tcpCloseWait || st == tcpClose {
				if closed != nil {
					closed(accepted, time.Now(), unread)
				}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// CloseListener stops accepting (new connects are refused) but leaves the
// open connections alone; Start listens again on the same port. A flapping
// backend alternates the two.
func (b *Backend) CloseListener() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ln != nil {
		b.ln.Close()
		b.ln = nil
	}
}

// Port is the backend's port.
func (b *Backend) Port() int { return b.port }

// helperEnv makes the test binary a backend process (see HelperMain).
const helperEnv = "BALTEST_BACKEND_PROCESS"

// HelperMain turns this test binary into a backend process when started by
// StartProcBackend; otherwise it returns at once. Call it first in TestMain.
func HelperMain() {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		return
	}
	name, addr, _ := strings.Cut(spec, " ")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "backend process:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	h := NameEcho(name)
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			h(c.(*net.TCPConn))
			c.Close()
		}()
	}
}

// ProcBackend is a backend in its own process (this test binary, see
// HelperMain) serving NameEcho(name), so that faults are real process
// faults: SIGKILL, SIGSTOP/SIGCONT. The cleanup kills it.
type ProcBackend struct {
	t    testing.TB
	name string
	addr string
	ns   string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProcBackend starts the process listening on addr (inside namespace
// ns when not "") and waits until it listens.
func StartProcBackend(t testing.TB, name, addr, ns string) *ProcBackend {
	t.Helper()
	b := &ProcBackend{t: t, name: name, addr: addr, ns: ns}
	b.Start()
	t.Cleanup(b.Kill)
	return b
}

// Addr is the listening address.
func (b *ProcBackend) Addr() string { return b.addr }

// PID is the running process's ID (0 when killed).
func (b *ProcBackend) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// Start (re)starts the process; the port may linger briefly after a kill.
func (b *ProcBackend) Start() {
	b.t.Helper()
	var last string
	for range 50 {
		self, err := os.Executable()
		if err != nil {
			b.t.Fatal(err)
		}
		args := []string{self, "-test.run=^$"}
		if b.ns != "" {
			args = append([]string{"ip", "netns", "exec", b.ns}, args...)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), helperEnv+"="+b.name+" "+b.addr)
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.t.Fatal(err)
		}
		var errb strings.Builder
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			b.t.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line == "ready\n" {
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			b.mu.Lock()
			b.cmd, b.done = cmd, done
			b.mu.Unlock()
			return
		}
		_ = cmd.Wait()
		last = errb.String()
		time.Sleep(20 * time.Millisecond)
	}
	b.t.Fatalf("backend process on %s did not start: %s", b.addr, last)
}

// Kill sends SIGKILL and waits for the process to be gone.
func (b *ProcBackend) Kill() {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Signal sends sig (SIGSTOP, SIGCONT...) to the process.
func (b *ProcBackend) Signal(sig syscall.Signal) {
	b.t.Helper()
	b.mu.Lock()
	cmd := b.cmd
	b.mu.Unlock()
	if cmd == nil {
		b.t.Fatalf("backend %s not running", b.name)
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		b.t.Fatal(err)
	}
}
