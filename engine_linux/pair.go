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

// Pair states.
const (
	stConnecting uint8 = iota // non-blocking connect in progress
	stHeader                  // writing the PROXY header
	stRelay                   // splicing both ways
	stClosed
)

// Epoll interest masks.
const (
	evRead  uint32 = netpoll.ReadEvents
	evWrite uint32 = netpoll.WriteEvents
)

// relayBudget bounds the bytes one direction moves per event, so that one
// fast pair cannot starve the others of its loop (level-triggered epoll
// reports the source again).
const relayBudget = 1 << 20

// dir is one direction of a pair: src → pipe → dst.
type dir struct {
	src, dst int
	pipe     pipe // valid while held (buffered > 0, or during a pump)
	held     bool
	buffered int  // bytes in the pipe
	eof      bool // src returned EOF
	shut     bool // shutdown(dst, SHUT_WR) done
}

// reading: the direction wants EPOLLIN on its source.
func (d *dir) reading() bool { return !d.eof && d.buffered == 0 }

// done: EOF seen, everything delivered, FIN forwarded.
func (d *dir) done() bool { return d.shut }

// pair is one proxied connection: a client socket and a backend socket.
type pair struct {
	l    *loop
	info engine.ConnInfo

	cfd, bfd     int
	cpa, bpa     netpoll.PollAttachment
	cmask, bmask uint32
	state        uint8

	attempt   int
	target    engine.Target
	dialStart int64

	connectTimeout, idleTimeout int64
	proxy                       engine.ProxyProtocol
	hdr                         []byte // PROXY header bytes still to write

	up, down   dir // client→backend, backend→client
	bytesIn    int64
	bytesOut   int64
	lastActive int64

	deadline int64
	tidx     int
}

func newPair() *pair {
	return &pair{cfd: -1, bfd: -1, tidx: -1}
}

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
		case errLocal(err):
			// Out of descriptors, memory or local ports here: not the
			// backend's fault, and every other backend would fail the same
			// way, so the client is reset now rather than walked through
			// the whole pool (which protection mode would count as every
			// backend failing).
			if errCounted(err) {
				p.l.e.pol.DialResult(&p.info, t, err, time.Duration(p.l.now()-p.dialStart))
			}
			p.closeBackend(true)
			p.l.e.localFails.Note("local_"+localWhat(err), time.Now())
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

// ---- relay ----

// onEvent handles an epoll event on one of the pair's sockets.
func (p *pair) onEvent(fd int, ev uint32) {
	switch p.state {
	case stConnecting:
		if fd == p.bfd {
			p.onConnect()
		}
		return
	case stHeader:
		if fd == p.bfd {
			p.writeHeader()
		}
		return
	case stClosed:
		return
	}
	const errEv = netpoll.ErrEvents
	in := ev&(evRead|errEv) != 0
	out := ev&(evWrite|errEv) != 0
	src, dst := &p.up, &p.down // fd is the client: it is up's source, down's destination
	if fd == p.bfd {
		src, dst = &p.down, &p.up
	}
	if in && src.reading() {
		if !p.pump(src, true) {
			return
		}
	}
	if out && dst.buffered > 0 {
		if !p.pump(dst, false) {
			return
		}
	}
	if p.up.done() && p.down.done() {
		p.finish(engine.CloseDone, false, false)
		return
	}
	p.update()
}

// pump moves bytes for one direction until its source has nothing more,
// its destination is blocked, or the per-event budget is spent. It returns
// false when the pair was closed.
//
// Epoll is level-triggered, so pump may stop early without losing data: a
// read shorter than the pipe has most likely emptied the socket, and the
// next read is left to the next EPOLLIN instead of a sure EAGAIN; a partial
// write means the send buffer is full, so EPOLLOUT is awaited at once.
func (p *pair) pump(d *dir, readable bool) bool {
	l := p.l
	moved, short := 0, false
	for {
		if d.buffered > 0 {
			n, err := spliceOnce(d.pipe.r, d.dst, d.buffered)
			if n > 0 {
				d.buffered -= n
				moved += n
				p.account(d, n)
			}
			switch {
			case err == unix.EAGAIN:
				return true // wait for EPOLLOUT on dst, stop polling src
			case err != nil:
				p.failSide(d.dst)
				return false
			case d.buffered > 0:
				return true // partial write: the send buffer is full
			}
		}
		// The pipe is empty.
		if d.eof {
			if d.held {
				d.held = false
				l.putPipe(d.pipe)
			}
			if !d.shut {
				d.shut = true
				_ = unix.Shutdown(d.dst, unix.SHUT_WR)
			}
			return true
		}
		if short || moved >= relayBudget {
			if d.held {
				d.held = false
				l.putPipe(d.pipe)
			}
			return true
		}
		if !d.held {
			pp, err := l.getPipe()
			if err != nil {
				l.e.log.Warn("cannot open a pipe", "err", err)
				p.finish(engine.CloseError, false, false)
				return false
			}
			d.pipe, d.held = pp, true
		}
		n, err := spliceOnce(d.src, d.pipe.w, pipeSize)
		if err == unix.EAGAIN && readable && moved == 0 {
			// Epoll said readable yet splice has nothing: TCP urgent data.
			// splice stops at the urgent mark for good; read through it
			// (the sockets are SO_OOBINLINE, so the byte stays in place).
			n, err = p.readInline(d)
		}
		switch {
		case err == unix.EAGAIN:
			d.held = false
			l.putPipe(d.pipe)
			return true
		case err != nil:
			p.failSide(d.src)
			return false
		case n == 0:
			d.eof = true
		default:
			d.buffered = n
			short = n < pipeSize
			p.lastActive = l.now()
		}
	}
}

// readInline moves one small read of d.src into d's (empty) pipe with
// read(2)/write(2); used only where splice cannot proceed.
func (p *pair) readInline(d *dir) (int, error) {
	buf := p.l.inline[:]
	n, err := unix.Read(d.src, buf)
	for err == unix.EINTR {
		n, err = unix.Read(d.src, buf)
	}
	if err != nil || n <= 0 {
		return 0, err
	}
	// An empty pipe always has room for one page.
	if w, err := unix.Write(d.pipe.w, buf[:n]); err != nil || w != n {
		if err == nil {
			err = unix.EIO
		}
		return 0, err
	}
	return n, nil
}

// account counts n bytes delivered by d.
func (p *pair) account(d *dir, n int) {
	if d == &p.up {
		p.bytesIn += int64(n)
		p.l.bytesIn.Add(uint64(n))
	} else {
		p.bytesOut += int64(n)
		p.l.bytesOut.Add(uint64(n))
	}
	p.lastActive = p.l.now()
}

// failSide closes the pair after an I/O error on fd, resetting the other
// side (reset propagation).
func (p *pair) failSide(fd int) {
	if fd == p.cfd {
		p.finish(engine.CloseClientReset, false, true)
	} else {
		p.finish(engine.CloseBackendReset, true, false)
	}
}

// spliceOnce moves up to n bytes with one splice(2), retrying EINTR.
func spliceOnce(from, to, n int) (int, error) {
	for {
		m, err := unix.Splice(from, nil, to, nil, n, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
		if err == unix.EINTR {
			continue
		}
		if m < 0 {
			m = 0
		}
		return int(m), err
	}
}

// update registers exactly the events the pair waits for.
func (p *pair) update() {
	var cm, bm uint32
	if p.up.reading() {
		cm |= evRead
	}
	if p.down.buffered > 0 {
		cm |= evWrite
	}
	if p.down.reading() {
		bm |= evRead
	}
	if p.up.buffered > 0 {
		bm |= evWrite
	}
	p.setMask(p.cfd, &p.cpa, &p.cmask, cm)
	p.setMask(p.bfd, &p.bpa, &p.bmask, bm)
}

// setMask moves fd's epoll registration from *cur to want. netpoll has no
// "modify to write-only", so that transition is a delete and an add.
func (p *pair) setMask(fd int, pa *netpoll.PollAttachment, cur *uint32, want uint32) {
	if *cur == want || fd < 0 {
		return
	}
	pa.FD = fd
	po := p.l.poller
	var err error
	switch {
	case want == 0:
		err = po.Delete(fd)
	case *cur == 0:
		switch want {
		case evRead:
			err = po.AddRead(pa, false)
		case evWrite:
			err = po.AddWrite(pa, false)
		default:
			err = po.AddReadWrite(pa, false)
		}
	case want == evRead:
		err = po.ModRead(pa, false)
	case want == evWrite:
		if err = po.Delete(fd); err == nil {
			err = po.AddWrite(pa, false)
		}
	default:
		err = po.ModReadWrite(pa, false)
	}
	if err != nil {
		p.l.e.log.Error("epoll_ctl failed", "fd", fd, "err", err)
		*cur = 0
		return
	}
	*cur = want
}

// ---- timers ----

// onDeadline runs when the pair's deadline passed: a connect timeout, or an
// idle check (the real idle deadline moves with every byte).
func (p *pair) onDeadline(now int64) {
	switch p.state {
	case stConnecting:
		p.l.unschedule(p)
		p.failAttempt(fmt.Errorf("connect %s: %w", p.target.Addr, engine.ErrConnectTimeout))
		p.connectNext()
	case stHeader, stRelay:
		if p.idleTimeout <= 0 {
			p.l.unschedule(p)
			return
		}
		if exp := p.lastActive + p.idleTimeout; exp > now {
			p.l.schedule(p, exp)
			return
		}
		p.finish(engine.CloseIdleTimeout, false, false)
	default:
		p.l.unschedule(p)
	}
}

// ---- closing ----

// closeBackend closes the backend socket (after a failed attempt or at the
// end), with a reset when rst is set.
func (p *pair) closeBackend(rst bool) {
	if p.bfd < 0 {
		return
	}
	p.closeFD(p.bfd, &p.bmask, rst)
	p.bfd = -1
}

func (p *pair) closeFD(fd int, mask *uint32, rst bool) {
	if *mask != 0 {
		_ = p.l.poller.Delete(fd)
		*mask = 0
	}
	if rst {
		_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	p.l.clearFD(fd)
	_ = unix.Close(fd)
}

// finish closes the pair once and reports it. rstClient / rstBackend send
// a reset instead of a FIN on that side.
func (p *pair) finish(reason engine.CloseReason, rstClient, rstBackend bool) {
	if p.state == stClosed {
		return
	}
	p.state = stClosed
	l := p.l
	l.unschedule(p)
	for _, d := range [...]*dir{&p.up, &p.down} {
		if d.held {
			d.held = false
			if d.buffered > 0 {
				l.dropPipe(d.pipe)
			} else {
				l.putPipe(d.pipe)
			}
			d.buffered = 0
		}
	}
	p.closeBackend(rstBackend)
	if p.cfd >= 0 {
		p.closeFD(p.cfd, &p.cmask, rstClient)
		p.cfd = -1
	}
	budget.own.Add(-pairFDs)
	l.active--
	l.e.active.Add(-1)
	l.e.pol.Closed(&p.info, engine.CloseInfo{
		Backend:  p.info.Backend,
		BytesIn:  p.bytesIn,
		BytesOut: p.bytesOut,
		Reason:   reason,
		Duration: time.Since(p.info.Accepted),
	})
	l.checkDrained()
}

// ---- helpers ----

// errLocal reports errors that are this host's resource limits: no
// descriptor, no memory, no free local port (EADDRNOTAVAIL from connect).
func errLocal(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
		errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) ||
		errors.Is(err, unix.EADDRNOTAVAIL)
}

// errCounted: local failures reported to the policy (descriptors and
// ports), which counts descriptor shortages as local_connect_failures
// without blaming the backend. Memory errors are not reported, so that they
// are never blamed on a backend.
func errCounted(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.EADDRNOTAVAIL)
}

// localWhat names a local failure for the rate-limited log.
func localWhat(err error) string {
	switch {
	case errors.Is(err, unix.EADDRNOTAVAIL):
		return "ports"
	case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
		return "fds"
	}
	return "memory"
}

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
