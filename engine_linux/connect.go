//go:build linux

package gnetengine

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/proxyproto"
)

// ---- connect and failover ----

// connectNext asks the policy for the next backend and connects to it,
// until a connect is in flight or succeeded, or the policy has none left.
func (p *pair) connectNext() {
	for {
		t, ok := p.l.e.pol.Pick(&p.info, p.attempt)
		if !ok {
			p.finish(engine.CloseNoBackend, false, false)
			return
		}
		p.target = t
		p.dialStart = p.l.now()
		err := p.dial(t)
		switch {
		case err == nil:
			p.connected()
			return
		case errors.Is(err, unix.EINPROGRESS):
			p.state = stConnecting
			p.setMask(p.bfd, &p.bpa, &p.bmask, evWrite)
			if p.connectTimeout > 0 {
				p.l.schedule(p, p.dialStart+p.connectTimeout)
			}
			return
		case engine.IsLocal(err):
			// Out of descriptors, memory or local ports here: not the
			// backend's fault, and every other backend would fail the same
			// way, so the client is reset now rather than walked through
			// the whole pool (which protection mode would count as every
			// backend failing). The policy counts and logs it as a local
			// failure.
			p.l.e.pol.DialResult(&p.info, t, err, time.Duration(p.l.now()-p.dialStart))
			p.closeBackend(true)
			p.finish(engine.CloseError, true, false)
			return
		default:
			p.failAttempt(fmt.Errorf("connect %s: %w", t.Addr, err))
		}
	}
}

// dial opens a non-blocking socket and starts connecting it to t.
func (p *pair) dial(t engine.Target) error {
	if !t.Addr.IsValid() || t.Addr.Port() == 0 {
		return fmt.Errorf("invalid backend address %q: %w", t.Name, unix.EDESTADDRREQ)
	}
	addr := netip2sockaddr(t)
	family := unix.AF_INET
	if _, ok := addr.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_OOBINLINE, 1)
	p.bfd = fd
	p.bpa = netpoll.PollAttachment{FD: fd}
	p.l.setFD(fd, p)
	for {
		err = unix.Connect(fd, addr)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return os.NewSyscallError("connect", err)
	}
	return nil
}

// failAttempt reports a failed connect and moves to the next pick.
// connectNext's loop continues when called from there.
func (p *pair) failAttempt(err error) {
	rtt := time.Duration(p.l.now() - p.dialStart)
	p.closeBackend(false)
	p.l.e.pol.DialResult(&p.info, p.target, err, rtt)
	p.attempt++
}

// onConnect handles the end of a non-blocking connect (EPOLLOUT or error).
func (p *pair) onConnect() {
	soerr, err := unix.GetsockoptInt(p.bfd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && soerr != 0 {
		err = unix.Errno(soerr)
	}
	if err != nil {
		p.l.unschedule(p)
		p.failAttempt(fmt.Errorf("connect %s: %w", p.target.Addr, os.NewSyscallError("connect", err)))
		p.connectNext()
		return
	}
	p.connected()
}

// connected: report success, send the PROXY header if any, start relaying.
func (p *pair) connected() {
	l := p.l
	l.unschedule(p)
	l.e.pol.DialResult(&p.info, p.target, nil, time.Duration(l.now()-p.dialStart))
	p.info.Backend = p.target
	p.lastActive = l.now()
	if p.idleTimeout > 0 {
		l.schedule(p, p.lastActive+p.idleTimeout)
	}
	if p.proxy != engine.ProxyOff {
		p.hdr = proxyproto.Append(make([]byte, 0, proxyproto.MaxLen), p.proxy, p.info.Client, p.info.Local)
		p.state = stHeader
		p.writeHeader()
		return
	}
	p.startRelay()
}

// writeHeader writes what is left of the PROXY header (partial writes wait
// for EPOLLOUT); the relay starts once all of it is out.
func (p *pair) writeHeader() {
	for len(p.hdr) > 0 {
		n, err := unix.Write(p.bfd, p.hdr)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			p.setMask(p.bfd, &p.bpa, &p.bmask, evWrite)
			return
		case err != nil:
			p.finish(engine.CloseBackendReset, true, false)
			return
		}
		p.hdr = p.hdr[n:]
	}
	p.hdr = nil
	p.startRelay()
}

func (p *pair) startRelay() {
	p.state = stRelay
	p.up = dir{src: p.cfd, dst: p.bfd}
	p.down = dir{src: p.bfd, dst: p.cfd}
	// Most protocols are client-first: the request is likely waiting already.
	if !p.pump(&p.up, false) {
		return
	}
	p.update()
}

// ---- helpers ----

// netip2sockaddr converts a target address; IPv4-mapped addresses dial IPv4.
func netip2sockaddr(t engine.Target) unix.Sockaddr {
	a := t.Addr.Addr().Unmap()
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4(), Port: int(t.Addr.Port())}
	}
	sa := &unix.SockaddrInet6{Addr: a.As16(), Port: int(t.Addr.Port())}
	if z := a.Zone(); z != "" {
		if n, err := strconv.Atoi(z); err == nil {
			sa.ZoneId = uint32(n)
		} else if ifi, err := net.InterfaceByName(z); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	return sa
}
