package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// nodePath returns node, or skips the test with a clear message.
func nodePath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: skipping the sample backend test (.ci/run installs nodejs)")
	}
	return p
}

func sampleDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", "..", "sample"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// lines collects a process's output lines and lets a test wait for one.
type lines struct {
	ch chan string
}

func readLines(r io.Reader) *lines {
	l := &lines{ch: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.ch <- sc.Text()
		}
		close(l.ch)
	}()
	return l
}

func (l *lines) waitFor(t *testing.T, sub string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s, ok := <-l.ch:
			if !ok {
				t.Fatalf("output ended before a line containing %q", sub)
			}
			if strings.Contains(s, sub) {
				return s
			}
		case <-deadline:
			t.Fatalf("no line containing %q within 10s", sub)
		}
	}
}

// TestSampleBackend runs sample/backend.js with node: it answers HTTP with
// JSON naming its port and the X-Backend-Server header, logs each request,
// and exits 0 on SIGTERM.
func TestSampleBackend(t *testing.T) {
	node := nodePath(t)
	port := baltest.FreePort(t)
	cmd := exec.Command(node, filepath.Join(sampleDir(t), "backend.js"), strconv.Itoa(port))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	out := readLines(stdout)
	go func() {
		done <- cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // a no-op once it has exited
		<-exited
	})
	out.waitFor(t, fmt.Sprintf("backend-%d listening on http://127.0.0.1:%d", port, port))

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/some/path?a=1&b=two", port))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("backend-%d", port)
	if resp.StatusCode != 200 || resp.Header.Get("X-Backend-Server") != id || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("status %d, X-Backend-Server %q, Content-Type %q", resp.StatusCode, resp.Header.Get("X-Backend-Server"), resp.Header.Get("Content-Type"))
	}
	var reply struct {
		Status    string `json:"status"`
		Message   string `json:"message"`
		Timestamp string `json:"timestamp"`
		Request   struct {
			Method string            `json:"method"`
			Path   string            `json:"path"`
			Query  map[string]string `json:"query"`
		} `json:"request"`
		Server struct {
			ID   string `json:"id"`
			Port int    `json:"port"`
		} `json:"server"`
	}
	if err := json.Unmarshal(body, &reply); err != nil {
		t.Fatalf("reply is not JSON (%v): %s", err, body)
	}
	if _, err := time.Parse(time.RFC3339, reply.Timestamp); err != nil {
		t.Errorf("timestamp %q: %v", reply.Timestamp, err)
	}
	if reply.Status != "ok" || reply.Message != "Hello from "+id+"!" || reply.Server.ID != id || reply.Server.Port != port ||
		reply.Request.Method != "GET" || reply.Request.Path != "/some/path" || reply.Request.Query["a"] != "1" || reply.Request.Query["b"] != "two" {
		t.Errorf("reply = %+v", reply)
	}
	out.waitFor(t, id+" 127.0.0.1:")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("backend.js after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("backend.js still running 10s after SIGTERM")
	}
}

// TestSampleRunScript: run.js start records PIDs and waits for the ports;
// stop ends exactly the processes it recorded and leaves any other process
// named in a stale PID file alone.
func TestSampleRunScript(t *testing.T) {
	node := nodePath(t)
	pidDir := t.TempDir()
	runJS := filepath.Join(sampleDir(t), "run.js")
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, append([]string{runJS}, args...)...)
		cmd.Env = append(os.Environ(), "SAMPLE_PID_DIR="+pidDir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run.js %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	p1, p2 := baltest.FreePort(t), baltest.FreePort(t)
	pids := map[int]int{}
	t.Cleanup(func() { // whatever happened, end the backends still running
		for _, pid := range pids {
			if cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cl), runJS[:len(runJS)-len("run.js")]+"backend.js") {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	out := run("start", strconv.Itoa(p1), strconv.Itoa(p2))
	for _, p := range []int{p1, p2} {
		data, err := os.ReadFile(filepath.Join(pidDir, fmt.Sprintf("backend-%d.pid", p)))
		if err != nil {
			t.Fatalf("no PID file for %d: %v\n%s", p, err, out)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		pids[p] = pid
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), 2*time.Second)
		if err != nil {
			t.Fatalf("backend %d not accepting after start: %v", p, err)
		}
		c.Close()
	}

	// A stale PID file naming a live process that is not a backend (a
	// sleep we own) must not lead to that process being signalled.
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	stale := filepath.Join(pidDir, "backend-1.pid")
	if err := os.WriteFile(stale, []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	out = run("stop")
	for p, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) && !zombie(pid) {
			t.Errorf("backend %d (pid %d) still running after stop: %v\n%s", p, pid, err, out)
		}
		if _, err := os.Stat(filepath.Join(pidDir, fmt.Sprintf("backend-%d.pid", p))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("PID file of %d left behind", p)
		}
	}
	if err := syscall.Kill(sleeper.Process.Pid, 0); err != nil {
		t.Errorf("the process named in a stale PID file was signalled: %v", err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) || !strings.Contains(out, "backend-1: stale pid file removed") {
		t.Errorf("stale PID file not removed (%v)\n%s", err, out)
	}
	if out := run("stop"); !strings.Contains(out, "no sample backend recorded") {
		t.Errorf("second stop: %s", out)
	}
}

// zombie reports a process that exited but was not reaped (its parent, the
// detached run.js, is gone; reaping is up to init).
func zombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}
