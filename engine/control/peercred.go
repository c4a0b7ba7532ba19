//go:build linux || darwin

package control

import "net"

// peerUID is the connecting process's uid, from the kernel (peerUIDOf is
// SO_PEERCRED on Linux, LOCAL_PEERCRED on macOS).
func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var uid int
	var gerr error
	if err := raw.Control(func(fd uintptr) { uid, gerr = peerUIDOf(int(fd)) }); err != nil {
		return 0, err
	}
	return uid, gerr
}
