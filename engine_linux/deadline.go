//go:build linux

package gnetengine

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine"
)

// ---- deadlines: a min-heap of pairs armed on the timerfd ----

// schedule sets p's deadline (absolute, loop clock) and re-arms the timerfd
// when it became the earliest.
func (l *loop) schedule(p *pair, deadline int64) {
	p.deadline = deadline
	if p.tidx < 0 {
		p.tidx = len(l.timers)
		l.timers = append(l.timers, p)
		l.up(p.tidx)
	} else if !l.down(p.tidx) {
		l.up(p.tidx)
	}
	if l.timers[0] == p && (l.armed == 0 || deadline < l.armed) {
		l.arm(deadline)
	}
}

// unschedule removes p from the heap. The timer may then fire early and
// find nothing to do; it re-arms for the next deadline.
func (l *loop) unschedule(p *pair) {
	i := p.tidx
	if i < 0 {
		return
	}
	last := len(l.timers) - 1
	if i != last {
		l.swap(i, last)
	}
	l.timers[last] = nil
	l.timers = l.timers[:last]
	p.tidx = -1
	if i != last {
		if !l.down(i) {
			l.up(i)
		}
	}
}

func (l *loop) swap(i, j int) {
	l.timers[i], l.timers[j] = l.timers[j], l.timers[i]
	l.timers[i].tidx = i
	l.timers[j].tidx = j
}

func (l *loop) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if l.timers[parent].deadline <= l.timers[i].deadline {
			return
		}
		l.swap(i, parent)
		i = parent
	}
}

func (l *loop) down(i0 int) bool {
	i, n := i0, len(l.timers)
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && l.timers[r].deadline < l.timers[c].deadline {
			c = r
		}
		if l.timers[i].deadline <= l.timers[c].deadline {
			break
		}
		l.swap(i, c)
		i = c
	}
	return i > i0
}

// arm sets the timerfd to fire at deadline (loop clock).
func (l *loop) arm(deadline int64) {
	d := deadline - l.now()
	if d <= 0 {
		d = 1 // 0 would disarm
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(d)}
	if err := unix.TimerfdSettime(l.tfd, 0, &spec, nil); err != nil {
		l.e.log.Error("arming the data loop timer failed", "loop", l.id, "err", err)
		return
	}
	l.armed = deadline
}

// onTimer runs every deadline that has passed, then re-arms.
func (l *loop) onTimer() {
	var buf [8]byte
	_, _ = unix.Read(l.tfd, buf[:])
	l.armed = 0
	now := l.now()
	for len(l.timers) > 0 {
		p := l.timers[0]
		if p.deadline > now {
			break
		}
		p.onDeadline(now)
		if len(l.timers) > 0 && l.timers[0] == p && p.deadline <= now {
			// Defensive: a handler that did not move its deadline would spin.
			l.unschedule(p)
		}
	}
	if len(l.timers) > 0 {
		l.arm(l.timers[0].deadline)
	}
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
