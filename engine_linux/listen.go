//go:build linux

package gnetengine

import (
	"errors"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// reservePort binds a socket to addr with port 0 (SO_REUSEADDR and
// SO_REUSEPORT, not listening) and returns it with the port the kernel
// chose. While it is held, gnet's reuseport listeners can all bind that same
// port, yet it is never handed out to anyone else; it takes no connection
// because it never listens. gnet would otherwise bind every loop's listener
// to a different random port.
func reservePort(addr netip.AddrPort) (fd int, port uint16, err error) {
	family := unix.AF_INET
	if addr.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, 0, os.NewSyscallError("socket", err)
	}
	fail := func(op string, e error) (int, uint16, error) {
		_ = unix.Close(fd)
		return -1, 0, os.NewSyscallError(op, e)
	}
	if err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt", err)
	}
	if err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail("setsockopt", err)
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Addr: addr.Addr().As4()}
	} else {
		// Same socket flavour gnet makes: dual-stack for "::", v6-only otherwise.
		v6only := 1
		if addr.Addr().IsUnspecified() {
			v6only = 0
		}
		if err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only); err != nil {
			return fail("setsockopt", err)
		}
		sa = &unix.SockaddrInet6{Addr: addr.Addr().As16()}
	}
	if err = unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return fd, sockaddrToAddrPort(got).Port(), nil
}

// relisten calls listen(2) again with backlog on every listening TCP socket
// of this process bound to addr: Linux then changes the accept queue limit
// of a listening socket. gnet listens with somaxconn and only exposes loop
// 0's listener, so its sockets are found through /proc/self/fd. It returns
// how many sockets it changed.
func relisten(addr netip.AddrPort, backlog int) (int, error) {
	fds, err := listenersOn(addr)
	if err != nil {
		return 0, err
	}
	var n int
	var errs []error
	for _, fd := range fds {
		if err := unix.Listen(fd, backlog); err != nil {
			errs = append(errs, os.NewSyscallError("listen", err))
		} else {
			n++
		}
		_ = unix.Close(fd)
	}
	return n, errors.Join(errs...)
}

// listenersOn returns a duplicate of every listening TCP socket of this
// process bound to addr; the caller closes them. Each candidate descriptor
// is dup'ed before it is inspected, so one closed and reused concurrently is
// never mistaken for another.
func listenersOn(addr netip.AddrPort) ([]int, error) {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	_ = f.Close()
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			continue
		}
		if isListenerOn(dup, addr) {
			fds = append(fds, dup)
		} else {
			_ = unix.Close(dup)
		}
	}
	return fds, nil
}

// isListenerOn reports whether fd is a listening TCP socket bound to addr.
func isListenerOn(fd int, addr netip.AddrPort) bool {
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 1 {
		return false
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || v != unix.SOCK_STREAM {
		return false
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || v != unix.IPPROTO_TCP {
		return false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return false
	}
	return sockaddrToAddrPort(sa) == addr
}
