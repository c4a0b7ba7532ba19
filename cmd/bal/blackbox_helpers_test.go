package main

import (
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// Helpers shared by the black-box tests of the balancing methods, the PROXY
// protocol and the metrics, on top of baltest.Proc: instances that stop
// within a second, and backends that hold the connections they accept.

// shortDrain are the runtime lines every startShortDrain instance gets: a
// short drain so that stopping an instance with held connections takes a
// second, not 30.
var shortDrain = []string{"drain_timeout_ms: 1000"}

// startShortDrain writes cfg, starts bal in a fresh BAL_HOME and makes sure
// it is ended: SIGTERM at cleanup, then a wait, then SIGKILL if it did not
// exit.
func startShortDrain(t *testing.T, cfg baltest.Config) (*baltest.Proc, string) {
	t.Helper()
	return startShortDrainOn(t, cfg, "")
}

// startShortDrainOn is startShortDrain with another bind_address than
// 127.0.0.1 ("" keeps it).
func startShortDrainOn(t *testing.T, cfg baltest.Config, bind string) (*baltest.Proc, string) {
	t.Helper()
	cfg.Runtime = append(append([]string(nil), shortDrain...), cfg.Runtime...)
	if bind != "" {
		cfg.Bind = bind
	}
	p := baltest.Start(t, cfg)
	t.Cleanup(func() { stopGracefully(p) })
	return p, p.ConfigPath
}

// stopGracefully sends SIGTERM and waits up to 10 s, then kills. It returns
// the exit code (-1 when it had to kill).
func stopGracefully(p *baltest.Proc) int {
	select {
	case <-p.Done():
		return p.ExitCode()
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Done():
		return p.ExitCode()
	case <-time.After(10 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.Done()
		return -1
	}
}

// freePort6 returns a free port on ::1.
func freePort6(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// nameThenHold is a backend handler that says its name and then holds the
// connection until the client closes it.
func nameThenHold(name string) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		if _, err := io.WriteString(c, name); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c)
	}
}

// dialHeld connects to addr (through bal); the connection is closed when
// the test ends.
func dialHeld(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("connect to bal: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// holdOpen connects through bal to a holding backend and returns the open
// connection and the name of the backend it reached.
func holdOpen(t *testing.T, addr string) (net.Conn, string) {
	t.Helper()
	c := dialHeld(t, addr)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("held connection: no backend name: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, string(buf)
}

// releaseHeld ends a held connection and waits until the whole chain has
// closed: our FIN reaches the backend, it closes, and bal closes us.
func releaseHeld(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
		t.Fatalf("releasing a held connection: %d bytes, %v", n, err)
	}
	c.Close()
}

// shares formats a distribution as "a 301 (75.2 %) b 99 (24.8 %)".
func shares(got map[string]int, names ...string) string {
	total := 0
	for _, n := range got {
		total += n
	}
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "%s %d (%.1f %%) ", name, got[name], 100*float64(got[name])/float64(max(total, 1)))
	}
	return strings.TrimSpace(b.String())
}
