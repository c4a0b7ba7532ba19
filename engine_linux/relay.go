//go:build linux

package gnetengine

import (
	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine"
)

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
