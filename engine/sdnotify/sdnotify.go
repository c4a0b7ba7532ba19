package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// States bal sends (see sd_notify(3)).
const (
	// Ready: start-up finished; after a reload, the reload finished.
	Ready = "READY=1"
	// Stopping: shutdown (drain) began.
	Stopping = "STOPPING=1"
)

// EnvSocket is the environment variable naming the notification socket.
const EnvSocket = "NOTIFY_SOCKET"

// ErrBadSocket: $NOTIFY_SOCKET is neither an absolute path nor an abstract
// socket name ("@name").
var ErrBadSocket = errors.New("sdnotify: NOTIFY_SOCKET is not an absolute path or @abstract name")

// Reloading is the state systemd (Type=notify-reload, and Type=notify since
// v253) expects when a reload begins: RELOADING=1 with the CLOCK_MONOTONIC
// time in microseconds. Send Ready when the reload is over.
func Reloading() string {
	return "RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatUint(monotonicUsec(), 10)
}

// Status is a free-form status line shown by systemctl status.
func Status(s string) string {
	return "STATUS=" + strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

// MainPID tells systemd which process is the service's main process.
func MainPID(pid int) string { return "MAINPID=" + strconv.Itoa(pid) }

// Notify sends the states, one per line, as one datagram to
// $NOTIFY_SOCKET. It reports false (and no error) when the variable is unset:
// not running under systemd is not a failure.
func Notify(states ...string) (bool, error) {
	addr := os.Getenv(EnvSocket)
	if addr == "" {
		return false, nil
	}
	return true, Send(addr, strings.Join(states, "\n"))
}

// Send writes msg as one datagram to the notification socket addr (a path,
// or "@name" for an abstract socket).
func Send(addr, msg string) error {
	switch {
	case strings.HasPrefix(addr, "/"):
	case strings.HasPrefix(addr, "@") && len(addr) > 1:
		addr = "\x00" + addr[1:] // abstract namespace (Linux)
	default:
		return fmt.Errorf("%w: %q", ErrBadSocket, addr)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	// A notification must never block the service: a full socket buffer
	// fails after a second instead.
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}
