//go:build linux

package gnetengine

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	gerrors "github.com/panjf2000/gnet/v2/pkg/errors"
	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"github.com/panjf2000/gnet/v2/pkg/queue"
	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine"
)

// loop is one data loop: an epoll poller run by a single goroutine, the
// pairs it relays, their deadlines (a heap armed on a timerfd) and a pool of
// pipes. Everything but the counters and the trigger queue is touched only
// by the loop goroutine.
type loop struct {
	e      *Engine
	id     int
	poller *netpoll.Poller

	tfd   int // timerfd for connect and idle deadlines
	tpa   netpoll.PollAttachment
	armed int64 // deadline the timerfd is armed for; 0 = disarmed

	fds    []*pair // fd → pair, for both sockets of every pair
	timers []*pair // min-heap on pair.deadline
	pool   []pipe  // empty pipes ready for use
	active int     // pairs owned by this loop

	inline [4096]byte // read(2) buffer for urgent data, which splice cannot pass

	draining bool
	drained  chan struct{} // closed once draining and no pair is left
	isDrain  bool          // drained was closed

	adoptFn, drainFn, stopFn queue.Func

	// Counters read by Stats and tests from other goroutines.
	bytesIn, bytesOut atomic.Uint64
	pipesCreated      atomic.Int64
	pipesDestroyed    atomic.Int64
	pipesHeld         atomic.Int64 // held by a direction with bytes in flight
	pipesFull         atomic.Int64 // destroyed while still holding bytes
}

func newLoop(e *Engine, id int) (*loop, error) {
	p, err := netpoll.OpenPoller()
	if err != nil {
		return nil, err
	}
	tfd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		_ = p.Close()
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	l := &loop{e: e, id: id, poller: p, tfd: tfd, drained: make(chan struct{})}
	l.tpa = netpoll.PollAttachment{FD: tfd}
	if err := p.AddRead(&l.tpa, false); err != nil {
		_ = unix.Close(tfd)
		_ = p.Close()
		return nil, err
	}
	l.adoptFn = l.adopt
	l.drainFn = l.drain
	l.stopFn = l.stop
	return l, nil
}

// run is the loop goroutine.
func (l *loop) run() {
	defer l.e.loopWG.Done()
	err := l.poller.Polling(l.handle)
	if errors.Is(err, gerrors.ErrEngineShutdown) {
		return
	}
	// The poller failed on its own: nothing will serve these pairs any more.
	l.closeAll(engine.CloseError)
	l.draining = true
	l.checkDrained()
	l.e.fail(fmt.Errorf("data loop %d: %w: %v", l.id, ErrDataLoop, err))
}

// trigger queues fn on the loop. Safe from any goroutine while the loop's
// poller is open.
func (l *loop) trigger(fn queue.Func) {
	if err := l.poller.Trigger(queue.HighPriority, fn, nil); err != nil {
		l.e.log.Error("queueing a task on a data loop failed", "loop", l.id, "err", err)
	}
}

// release frees the loop's descriptors once its goroutine has returned.
func (l *loop) release() {
	for _, p := range l.pool {
		l.destroyPipe(p)
	}
	l.pool = nil
	_ = unix.Close(l.tfd)
	_ = l.poller.Close()
}

// now is the loop's monotonic clock in nanoseconds since the engine's base.
func (l *loop) now() int64 { return int64(time.Since(l.e.base)) }

// handle dispatches one epoll event.
func (l *loop) handle(fd int, ev netpoll.IOEvent, _ netpoll.IOFlags) error {
	if fd == l.tfd {
		l.onTimer()
		return nil
	}
	if fd < 0 || fd >= len(l.fds) || l.fds[fd] == nil {
		_ = l.poller.Delete(fd) // stale registration
		return nil
	}
	l.fds[fd].onEvent(fd, ev)
	return nil
}

func (l *loop) setFD(fd int, p *pair) {
	if fd >= len(l.fds) {
		n := 2 * len(l.fds)
		if n < 1024 {
			n = 1024
		}
		for n <= fd {
			n *= 2
		}
		fds := make([]*pair, n)
		copy(fds, l.fds)
		l.fds = fds
	}
	l.fds[fd] = p
}

func (l *loop) clearFD(fd int) {
	if fd >= 0 && fd < len(l.fds) {
		l.fds[fd] = nil
	}
}

// adopt takes over an accepted, admitted client socket.
func (l *loop) adopt(a any) error {
	p := a.(*pair)
	p.l = l
	l.active++
	l.setFD(p.cfd, p)
	// Urgent data stays in the stream (see pair.readInline).
	_ = unix.SetsockoptInt(p.cfd, unix.SOL_SOCKET, unix.SO_OOBINLINE, 1)
	t := l.e.opts.Tunables.Load()
	p.connectTimeout = int64(t.ConnectTimeout)
	p.idleTimeout = int64(t.IdleTimeout)
	p.proxy = t.ProxyProtocol
	if l.draining && l.isDrain {
		// Cannot happen (the front stops before the loops), but never leak.
		p.finish(engine.CloseDrained, false, false)
		return nil
	}
	p.connectNext()
	return nil
}

// drain marks the loop draining; drained closes when its last pair closes.
func (l *loop) drain(any) error {
	l.draining = true
	l.checkDrained()
	return nil
}

func (l *loop) checkDrained() {
	if l.draining && l.active == 0 && !l.isDrain {
		l.isDrain = true
		close(l.drained)
	}
}

// stop force-closes every pair and ends the loop.
func (l *loop) stop(any) error {
	l.draining = true
	l.closeAll(engine.CloseDrained)
	l.checkDrained()
	return gerrors.ErrEngineShutdown
}

// closeAll closes every pair of the loop with reason.
func (l *loop) closeAll(reason engine.CloseReason) {
	for fd, p := range l.fds {
		if p != nil && p.cfd == fd {
			p.finish(reason, false, false)
		}
	}
}
