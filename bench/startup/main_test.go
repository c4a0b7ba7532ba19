package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"
)

// The test binary doubles as the process being started: with
// STARTUP_TEST_SERVE=addr it sleeps STARTUP_TEST_DELAY and then serves HTTP
// on addr until killed; with STARTUP_TEST_SERVE=exit it exits at once.
func TestMain(m *testing.M) {
	switch addr := os.Getenv("STARTUP_TEST_SERVE"); addr {
	case "":
		os.Exit(m.Run())
	case "exit":
		os.Exit(3)
	default:
		d, _ := time.ParseDuration(os.Getenv("STARTUP_TEST_DELAY"))
		time.Sleep(d)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(4)
		}
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "small")
		}))
		os.Exit(0)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func newProber(addr string) prober {
	return prober{addr: addr, req: []byte("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")}
}

func TestSpawnOnce(t *testing.T) {
	tests := []struct {
		name    string
		serve   string // STARTUP_TEST_SERVE; "" = the free address
		delay   time.Duration
		wantErr error
	}{
		{"answers after a delay", "", 100 * time.Millisecond, nil},
		{"answers at once", "", 0, nil},
		{"exits before answering", "exit", 0, errExited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := freeAddr(t)
			serve := tt.serve
			if serve == "" {
				serve = addr
			}
			t.Setenv("STARTUP_TEST_SERVE", serve)
			t.Setenv("STARTUP_TEST_DELAY", tt.delay.String())
			p := newProber(addr)
			d, err := spawnOnce(context.Background(), p, []string{os.Args[0]}, 10*time.Second, 5*time.Second)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("spawnOnce: %v, want %v", err, tt.wantErr)
			}
			if err == nil && d < tt.delay {
				t.Fatalf("start-up %v shorter than the server's own delay %v", d, tt.delay)
			}
			if p.once() == nil {
				t.Fatal("the spawned server still answers after spawnOnce returned")
			}
		})
	}
}

func TestUntilTimesOut(t *testing.T) {
	p := newProber(freeAddr(t))
	_, err := p.until(context.Background(), time.Now(), 50*time.Millisecond, nil)
	if !errors.Is(err, errTimeout) {
		t.Fatalf("until on a closed port: %v, want errTimeout", err)
	}
}

func TestFormat(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		runs []time.Duration
		want string
	}{
		{"odd count", []time.Duration{30 * ms, 10 * ms, 20 * ms}, "startup_ms=20.000 runs=30.0,10.0,20.0"},
		{"even count", []time.Duration{10 * ms, 40 * ms, 20 * ms, 30 * ms}, "startup_ms=25.000 runs=10.0,40.0,20.0,30.0"},
		{"one", []time.Duration{1500 * time.Microsecond}, "startup_ms=1.500 runs=1.5"},
		{"none", nil, "startup_ms=0.000 runs="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := format(tt.runs); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAlive(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	if !alive(os.Getpid()) {
		t.Fatal("alive(self) = false")
	}
	if alive(1 << 30) {
		t.Fatal("alive of a PID that cannot exist = true")
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "STARTUP_TEST_SERVE=exit")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Wait() })
	// The child exits at once and stays a zombie until waited for.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-watchPID(ctx, cmd.Process.Pid):
	case <-ctx.Done():
		t.Fatal("watchPID did not notice the child's exit")
	}
	if ctx.Err() != nil || alive(cmd.Process.Pid) {
		t.Fatal("exited child still reported alive")
	}
}
