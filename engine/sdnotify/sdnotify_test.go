package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens a datagram socket like systemd's notification socket.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	c := listen(t, path)
	tests := []struct {
		name   string
		states []string
		want   string
	}{
		{"ready", []string{Ready}, "READY=1"},
		{"ready with status", []string{Ready, Status("listening on 127.0.0.1:9295\n(gnet)")}, "READY=1\nSTATUS=listening on 127.0.0.1:9295 (gnet)"},
		{"stopping", []string{Stopping}, "STOPPING=1"},
		{"main pid", []string{MainPID(42), Ready}, "MAINPID=42\nREADY=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvSocket, path)
			sent, err := Notify(tt.states...)
			if !sent || err != nil {
				t.Fatalf("Notify = %v, %v", sent, err)
			}
			if got := receive(t, c); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNotifyAbstract(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("abstract unix sockets are Linux only")
	}
	name := fmt.Sprintf("bal-sdnotify-test-%d-%d", time.Now().UnixNano(), len(t.Name()))
	c := listen(t, "@"+name)
	t.Setenv(EnvSocket, "@"+name)
	if sent, err := Notify(Ready); !sent || err != nil {
		t.Fatalf("Notify = %v, %v", sent, err)
	}
	if got := receive(t, c); got != "READY=1" {
		t.Errorf("got %q", got)
	}
}

func TestNotifyUnsetOrBad(t *testing.T) {
	tests := []struct {
		env     string
		sent    bool
		wantErr error
	}{
		{"", false, nil},
		{"relative.sock", true, ErrBadSocket},
		{"@", true, ErrBadSocket},
		{filepath.Join(t.TempDir(), "nobody-listens"), true, nil}, // an error, not ErrBadSocket
	}
	for _, tt := range tests {
		t.Setenv(EnvSocket, tt.env)
		sent, err := Notify(Ready)
		if sent != tt.sent {
			t.Errorf("%q: sent = %v, want %v", tt.env, sent, tt.sent)
		}
		switch {
		case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
			t.Errorf("%q: err = %v, want %v", tt.env, err, tt.wantErr)
		case tt.env == "" && err != nil:
			t.Errorf("unset: err = %v", err)
		case tt.sent && err == nil:
			t.Errorf("%q: no error", tt.env)
		}
	}
}

func TestReloading(t *testing.T) {
	before := monotonicUsec()
	s := Reloading()
	after := monotonicUsec()
	lines := strings.Split(s, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("Reloading() = %q", s)
	}
	us, err := strconv.ParseUint(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || us < before || us > after || us == 0 {
		t.Errorf("MONOTONIC_USEC = %d (%v), want in [%d, %d]", us, err, before, after)
	}
}
