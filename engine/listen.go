package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ProbeBind checks that addr is free by binding it without SO_REUSEPORT and
// closing at once. A port held by any other socket — another bal listening
// with SO_REUSEPORT included — fails with an error wrapping ErrAddrInUse, so
// ports are never shared by accident. Port 0 always succeeds.
func ProbeBind(addr netip.AddrPort) error {
	if addr.Port() == 0 {
		return nil
	}
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr))
	if err != nil {
		return WrapListenError(addr, err)
	}
	return ln.Close()
}

// WrapListenError turns a bind error into one naming the address and wrapping
// ErrAddrInUse when the address is taken.
func WrapListenError(addr netip.AddrPort, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listen %s: %w (another process holds the port): %w", addr, ErrAddrInUse, err)
	}
	return fmt.Errorf("listen %s: %w", addr, err)
}

// RejectLog counts rejected connections and logs at most one line a second
// with the count since the last line, so an overload never floods the log.
type RejectLog struct {
	Logger *slog.Logger

	pending atomic.Uint64
	mu      sync.Mutex
	last    time.Time
}

// Note records one rejection with its reason ("max_connections", "fd_headroom").
func (r *RejectLog) Note(reason string, now time.Time) {
	r.pending.Add(1)
	if r.Logger == nil || !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	if now.Sub(r.last) < time.Second {
		return
	}
	r.last = now
	n := r.pending.Swap(0)
	r.Logger.Warn("rejecting connections", "reason", reason, "count", n)
}
