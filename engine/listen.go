package engine

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
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
