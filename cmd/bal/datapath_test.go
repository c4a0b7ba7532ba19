package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/enginetest"
)

// Black-box tests of the data path: the real binary on loopback with real backends.

// named starts a backend that writes its name on every connection and closes.
func named(t *testing.T, name string) *enginetest.Backend {
	return enginetest.NewBackend(t, func(c *net.TCPConn) { _, _ = io.WriteString(c, name) })
}

// runInstance starts bal with cfg in a fresh BAL_HOME and returns it and
// its config file.
func runInstance(t *testing.T, cfg baltest.Config) (*baltest.Proc, string) {
	t.Helper()
	p := baltest.Start(t, cfg)
	return p, p.ConfigPath
}

func TestDataPathBlackBox(t *testing.T) {
	for _, eng := range baltest.Engines() {
		t.Run(eng, func(t *testing.T) {
			t.Run("RoundRobin", func(t *testing.T) { testRoundRobin(t, eng) })
			t.Run("Weights3to1", func(t *testing.T) { testWeights(t, eng) })
			t.Run("OneBackendDown", func(t *testing.T) { testOneDown(t, eng) })
			t.Run("AllBackendsDown", func(t *testing.T) { testAllBackendsDown(t, eng) })
			t.Run("SIGTERMDuringTransfer", func(t *testing.T) { testTermDuringTransfer(t, eng) })
		})
	}
}

func distribution(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := range n {
		name, err := baltest.Who(addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		got[name]++
	}
	return got
}

func testRoundRobin(t *testing.T, eng string) {
	a, b := named(t, "a"), named(t, "b")
	p, _ := runInstance(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{a.Addr.String(), b.Addr.String()}})
	if got := distribution(t, p.Addr(), 10); got["a"] != 5 || got["b"] != 5 {
		t.Fatalf("10 connections went %v, want 5/5", got)
	}
}

func testWeights(t *testing.T, eng string) {
	a, b := named(t, "a"), named(t, "b")
	p, _ := runInstance(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{a.Addr.String() + " 3", b.Addr.String() + " 1"}})
	if got := distribution(t, p.Addr(), 40); got["a"] != 30 || got["b"] != 10 {
		t.Fatalf("40 connections went %v, want 30/10 (weights 3:1)", got)
	}
}

func testOneDown(t *testing.T, eng string) {
	a := named(t, "a")
	dead := enginetest.DeadAddr(t)
	p, _ := runInstance(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{a.Addr.String(), dead.String()}})
	if got := distribution(t, p.Addr(), 20); got["a"] != 20 {
		t.Fatalf("with one backend's port closed: %v, want every connection served by a", got)
	}
}

func testAllBackendsDown(t *testing.T, eng string) {
	p, _ := runInstance(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{enginetest.DeadAddr(t).String(), enginetest.DeadAddr(t).String()}})
	for i := range 3 {
		c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
		if err != nil {
			t.Fatalf("bal must accept even when every backend is down: %v", err)
		}
		began := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := io.Copy(io.Discard, c)
		c.Close()
		if el := time.Since(began); el >= time.Second || n != 0 {
			t.Fatalf("connection %d: closed after %v with %d bytes (%v), want closed in under 1 s", i, el, n, err)
		}
	}
}

// testTermDuringTransfer: SIGTERM while an 8 MiB download is in flight; the
// download completes byte-exact, new connections are refused, bal exits 0
// and removes its PID file.
func testTermDuringTransfer(t *testing.T, eng string) {
	const size, chunk = 8 << 20, 256 << 10
	slow := enginetest.NewBackend(t, func(c *net.TCPConn) {
		src := enginetest.NewStream(9, size)
		buf := make([]byte, chunk)
		for {
			n, err := src.Read(buf)
			if err != nil {
				break
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
			time.Sleep(40 * time.Millisecond) // about 1.3 s in all
		}
	})
	p, _ := runInstance(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{slow.Addr.String()}})
	if pid, err := os.ReadFile(filepath.Join(p.Home, pidFileName)); err != nil || string(bytes.TrimSpace(pid)) != strconv.Itoa(p.PID()) {
		t.Fatalf("pid file %q, %v; want %d", pid, err, p.PID())
	}
	c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := make([]byte, chunk)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, first); err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGTERM)
	p.WaitLog(0, "shutting down: no new connections; draining", nil, 5*time.Second)
	refused := false
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		nc, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err != nil {
			refused = true
			break
		}
		nc.Close()
	}
	if !refused {
		t.Fatal("new connections still accepted after SIGTERM")
	}
	sum, n, err := enginetest.ReadAllSum(io.MultiReader(bytes.NewReader(first), c))
	if err != nil || n != size || sum != enginetest.StreamSum(9, size) {
		t.Fatalf("transfer during shutdown: %d bytes, sha ok %v, err %v", n, sum == enginetest.StreamSum(9, size), err)
	}
	c.Close()
	if code := p.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d after a clean drain, want 0", code)
	}
	if _, err := os.Stat(filepath.Join(p.Home, pidFileName)); !os.IsNotExist(err) {
		t.Fatalf("pid file left behind: %v", err)
	}
}
