//go:build linux

package gnetengine

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine"
)

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
