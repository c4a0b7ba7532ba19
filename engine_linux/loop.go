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

// ---- pipes ----

// pipeSize is the capacity asked for every pipe: the most bytes in flight
// per direction (SPEC §3.1 targets ≤ 64 KiB).
const pipeSize = 64 << 10

// maxPooledPipes bounds the empty pipes a loop keeps for reuse.
const maxPooledPipes = 32

type pipe struct{ r, w int }

// getPipe takes an empty pipe from the pool or makes one.
func (l *loop) getPipe() (pipe, error) {
	if n := len(l.pool); n > 0 {
		p := l.pool[n-1]
		l.pool = l.pool[:n-1]
		l.pipesHeld.Add(1)
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return pipe{-1, -1}, os.NewSyscallError("pipe2", err)
	}
	// Best effort: an unprivileged user past fs.pipe-user-pages-soft gets a
	// smaller pipe, which only costs more splice calls.
	_, _ = unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, pipeSize)
	budget.own.Add(2)
	l.pipesCreated.Add(1)
	l.pipesHeld.Add(1)
	return pipe{fds[0], fds[1]}, nil
}

// putPipe returns an empty pipe to the pool.
func (l *loop) putPipe(p pipe) {
	l.pipesHeld.Add(-1)
	if len(l.pool) < maxPooledPipes {
		l.pool = append(l.pool, p)
		return
	}
	l.destroyPipe(p)
}

// dropPipe destroys a held pipe that may still contain bytes.
func (l *loop) dropPipe(p pipe) {
	l.pipesHeld.Add(-1)
	l.pipesFull.Add(1)
	l.destroyPipe(p)
}

func (l *loop) destroyPipe(p pipe) {
	_ = unix.Close(p.r)
	_ = unix.Close(p.w)
	budget.own.Add(-2)
	l.pipesDestroyed.Add(1)
}
