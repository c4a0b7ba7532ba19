package stdengine

import (
	"context"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine"
)

// listen binds addr with SO_REUSEADDR (Go's default) and, when backlog > 0,
// calls listen(2) again with that backlog: Go always uses the kernel maximum.
func listen(ctx context.Context, addr netip.AddrPort, backlog int) (*net.TCPListener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr.String())
	if err != nil {
		return nil, engine.WrapListenError(addr, err)
	}
	tl := ln.(*net.TCPListener)
	if backlog > 0 {
		if err := relisten(tl, backlog); err != nil {
			tl.Close()
			return nil, err
		}
	}
	return tl, nil
}

func relisten(tl *net.TCPListener, backlog int) error {
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = unix.Listen(int(fd), backlog) }); err != nil {
		return err
	}
	if lerr != nil {
		return &net.OpError{Op: "listen", Net: "tcp", Addr: tl.Addr(), Err: lerr}
	}
	return nil
}

// SetBacklog changes the listen(2) backlog of the listening socket (a reload
// of runtime.tcp_backlog); n <= 0 means the kernel maximum.
func (e *Engine) SetBacklog(n int) error {
	if n <= 0 {
		n = 65535 // the kernel clamps it to its own maximum
	}
	if e.ln == nil {
		return engine.ErrClosed
	}
	return relisten(e.ln, n)
}

// dupListener returns a duplicate of the listener's socket (-1 on failure),
// which keeps the socket and its accept queue alive after ln.Close.
func dupListener(ln *net.TCPListener) int {
	rc, err := ln.SyscallConn()
	if err != nil {
		return -1
	}
	dup := -1
	_ = rc.Control(func(fd uintptr) {
		if d, err := unix.Dup(int(fd)); err == nil {
			unix.CloseOnExec(d)
			dup = d
		}
	})
	return dup
}
