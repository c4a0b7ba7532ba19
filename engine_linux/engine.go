//go:build linux

package gnetengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/limits"
)

// ErrListenerLost is sent on Done (wrapped) when the gnet front stopped
// serving on its own, e.g. after an accept error such as EMFILE.
var ErrListenerLost = errors.New("listener stopped on its own")

// ErrDataLoop is sent on Done (wrapped) when a data loop's poller failed.
var ErrDataLoop = errors.New("data loop failed")

var _ engine.Engine = (*Engine)(nil)

// New is the engine.Factory of the Linux engine. It validates the options
// (errors wrap engine.ErrInvalidOptions); nothing is bound until Start.
func New(opts engine.Options, p engine.Policy) (engine.Engine, error) {
	if err := engine.CheckNew(opts, p); err != nil {
		return nil, fmt.Errorf("gnetengine: %w", err)
	}
	// Each loop is one gnet goroutine plus one data-loop goroutine, both
	// blocking in epoll_wait. GOMAXPROCS is left alone: on one pinned CPU,
	// one loop with GOMAXPROCS=1 measured cheaper per connection than with
	// GOMAXPROCS=2 (Go 1.26 lets a waking loop take the P of a thread parked
	// in a syscall).
	loops := opts.Loops
	if loops <= 0 {
		loops = runtime.GOMAXPROCS(0)
	}
	log := opts.LoggerFor("gnet")
	e := &Engine{
		opts:   opts,
		pol:    p,
		log:    log,
		nloops: loops,
		cost:   costFor(loops),
		done:   make(chan error, 1),
		base:   time.Now(),
	}
	return e, nil
}

// Engine is the gnet + splice engine. Create it with New.
type Engine struct {
	opts   engine.Options
	pol    engine.Policy
	log    *slog.Logger
	nloops int
	cost   limits.Cost // descriptors: per connection, and spare for nloops
	base   time.Time   // origin of the data loops' monotonic clock

	addr     netip.AddrPort // bound address (port resolved)
	wildcard bool           // listening on an unspecified address: ask the kernel for Local

	loops     []*loop
	loopsView atomic.Pointer[[]*loop] // loops, for Stats from any goroutine
	loopFor   sync.Map                // gnet.EventLoop → *loop
	rr        atomic.Uint32
	loopWG    sync.WaitGroup

	front *front

	nextID   atomic.Uint64
	accepted atomic.Uint64
	active   atomic.Int64

	mu       sync.Mutex // serialises Start, Drain and Close
	state    int
	stopping atomic.Bool // Drain or Close was called: Done stays silent

	doneOnce sync.Once
	done     chan error

	loopsOnce sync.Once
}

const (
	stateNew = iota
	stateRunning
	stateStopped
)

// Addr returns the bound address; valid after Start succeeded.
func (e *Engine) Addr() netip.AddrPort { return e.addr }

// Done yields one error and is closed when the engine stops serving on its
// own. It never fires after Drain or Close was called.
func (e *Engine) Done() <-chan error { return e.done }

// Stats returns lock-free counters.
func (e *Engine) Stats() engine.Stats {
	s := engine.Stats{
		Accepted: e.accepted.Load(),
	}
	if a := e.active.Load(); a > 0 {
		s.Active = uint64(a)
	}
	var loops []*loop
	if v := e.loopsView.Load(); v != nil {
		loops = *v
	}
	for _, l := range loops {
		s.BytesIn += l.bytesIn.Load()
		s.BytesOut += l.bytesOut.Load()
	}
	return s
}

// fail reports an engine death on Done unless a stop was requested.
func (e *Engine) fail(err error) {
	if e.stopping.Load() {
		return
	}
	e.doneOnce.Do(func() {
		e.log.Error("engine stopped serving on its own", "addr", e.addr.String(), "err", err)
		e.done <- err
		close(e.done)
	})
}

// Start binds one SO_REUSEPORT listener per event loop and starts serving.
// It returns once every listener is listening, or with an error (wrapping
// engine.ErrAddrInUse when the port is taken) and nothing left running.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch e.state {
	case stateRunning:
		return errors.New("gnetengine: already started")
	case stateStopped:
		return engine.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	listen := netip.AddrPortFrom(e.opts.Listen.Addr().Unmap(), e.opts.Listen.Port())
	holder := -1
	if listen.Port() == 0 {
		fd, port, err := reservePort(listen)
		if err != nil {
			return engine.WrapListenError(listen, err)
		}
		holder = fd
		listen = netip.AddrPortFrom(listen.Addr(), port)
	} else if err := engine.ProbeBind(listen); err != nil {
		return err
	}
	defer func() {
		if holder >= 0 {
			_ = unix.Close(holder)
		}
	}()
	e.addr = listen
	e.wildcard = listen.Addr().IsUnspecified()
	budget.refresh()

	e.loops = make([]*loop, e.nloops)
	for i := range e.loops {
		l, err := newLoop(e, i)
		if err != nil {
			for _, l := range e.loops[:i] {
				l.release()
			}
			e.loops = nil
			return fmt.Errorf("gnetengine: data loop: %w", err)
		}
		e.loops[i] = l
	}
	e.loopsView.Store(&e.loops)
	for _, l := range e.loops {
		e.loopWG.Add(1)
		go l.run()
	}

	e.front = newFront(e)
	if err := e.front.start(ctx); err != nil {
		e.stopLoops()
		e.state = stateStopped
		if errors.Is(err, unix.EADDRINUSE) {
			return engine.WrapListenError(listen, err)
		}
		return err
	}
	if e.opts.Backlog > 0 {
		n, err := relisten(e.addr, e.opts.Backlog)
		switch {
		case err != nil:
			e.log.Warn("setting the listen backlog failed", "backlog", e.opts.Backlog, "err", err)
		case n != e.nloops:
			e.log.Warn("listen backlog applied to an unexpected number of sockets",
				"backlog", e.opts.Backlog, "sockets", n, "loops", e.nloops)
		}
	}
	e.state = stateRunning
	e.log.Debug("listening", "addr", e.addr.String(), "loops", e.nloops, "backlog", e.opts.Backlog)
	return nil
}

// Drain stops accepting at once, lets open connections finish until ctx is
// done, then force-closes the rest (CloseDrained). It returns when every
// connection is closed and every goroutine and descriptor of the engine is
// gone. It returns nil in both cases; Closed reports which connections were
// cut.
func (e *Engine) Drain(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopping.Store(true)
	if e.state != stateRunning {
		e.state = stateStopped
		return nil
	}
	// Closing a listening socket resets the connections the kernel has
	// already completed but nobody accepted yet. Hold a duplicate of each
	// listener across gnet's stop, then accept what is queued and serve it.
	held, _ := listenersOn(e.addr)
	e.front.stop()
	e.adoptQueued(held)
	for _, l := range e.loops {
		l.trigger(l.drainFn)
	}
	for _, l := range e.loops {
		select {
		case <-l.drained:
			continue
		case <-ctx.Done():
		}
		break
	}
	e.stopLoops()
	e.state = stateStopped
	return nil
}

// Close stops accepting and force-closes every connection at once.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopping.Store(true)
	if e.state != stateRunning {
		e.state = stateStopped
		return nil
	}
	e.front.stop()
	e.stopLoops()
	e.state = stateStopped
	return nil
}

// stopLoops force-closes whatever is still open, stops every data loop and
// frees their descriptors. The front must be stopped first: nothing may
// Trigger a loop afterwards.
func (e *Engine) stopLoops() {
	e.loopsOnce.Do(func() {
		for _, l := range e.loops {
			l.trigger(l.stopFn)
		}
		e.loopWG.Wait()
		for _, l := range e.loops {
			l.release()
		}
	})
}

// pickLoop maps each gnet event loop to one data loop (round robin on first
// sight), so the two stay paired for the engine's life.
func (e *Engine) pickLoop(key any) *loop {
	if v, ok := e.loopFor.Load(key); ok {
		return v.(*loop)
	}
	l := e.loops[int(e.rr.Add(1)-1)%len(e.loops)]
	v, _ := e.loopFor.LoadOrStore(key, l)
	return v.(*loop)
}

// SetBacklog changes the listen(2) backlog of every listening socket of the
// engine (a reload of runtime.tcp_backlog); n <= 0 means the kernel maximum.
func (e *Engine) SetBacklog(n int) error {
	if n <= 0 {
		n = 65535 // the kernel clamps it to net.core.somaxconn
	}
	_, err := relisten(e.addr, n)
	return err
}

// adoptQueued accepts every connection still queued on the listening
// sockets fds (duplicates held across the front's stop), hands each to a
// data loop like the front does, and closes fds. Only a connection that
// completes its handshake in the microseconds between the last accept and
// the close is reset.
func (e *Engine) adoptQueued(fds []int) {
	n := 0
	for _, lfd := range fds {
		for {
			fd, sa, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			if err != nil {
				break // EAGAIN: the queue is empty
			}
			now := time.Now()
			p := e.admit(sockaddrToAddrPort(sa), fd, now)
			if p == nil {
				_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
				_ = unix.Close(fd)
				continue
			}
			p.cfd = fd
			l := e.loops[int(e.rr.Add(1)-1)%len(e.loops)]
			if e.dispatch(p, l, now) {
				n++
			}
		}
		_ = unix.Close(lfd)
	}
	if n > 0 {
		e.log.Debug("accepted connections queued at the listener's close", "count", n)
	}
}
