package stdengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine"
)

// Engine is the portable engine. Create it with New.
type Engine struct {
	opts   engine.Options
	policy engine.Policy
	log    *slog.Logger
	copier copier

	ln     *net.TCPListener
	addr   netip.AddrPort
	nextID atomic.Uint64

	// dialCtx is cancelled by Close and at the drain deadline, aborting connects.
	dialCtx    context.Context
	cancelDial context.CancelFunc

	mu      sync.Mutex
	pairs   map[*pair]struct{}
	closing bool          // Drain or Close called: the listener is closing
	stopped bool          // the listener is closed and its queue served
	idle    chan struct{} // closed when pairs becomes empty after stopped

	conns     sync.WaitGroup // connection goroutines
	acceptEnd chan struct{}
	done      chan error

	room  fdRoom
	stats struct{ accepted, active, bytesIn, bytesOut atomic.Uint64 }
}

var _ engine.Engine = (*Engine)(nil)

// New returns an engine; it does not bind until Start. It satisfies
// engine.Factory; invalid options are an error wrapping
// engine.ErrInvalidOptions.
func New(opts engine.Options, p engine.Policy) (engine.Engine, error) {
	e, err := newEngine(opts, p, defaultCopier)
	if err != nil {
		return nil, err // not a nil *Engine in a non-nil interface
	}
	return e, nil
}

func newEngine(opts engine.Options, p engine.Policy, c copier) (*Engine, error) {
	if err := engine.CheckNew(opts, p); err != nil {
		return nil, fmt.Errorf("stdengine: %w", err)
	}
	log := opts.LoggerFor("std")
	e := &Engine{
		opts:      opts,
		policy:    p,
		log:       log,
		copier:    c,
		pairs:     make(map[*pair]struct{}),
		idle:      make(chan struct{}),
		acceptEnd: make(chan struct{}),
		done:      make(chan error, 1),
	}
	e.dialCtx, e.cancelDial = context.WithCancel(context.Background())
	return e, nil
}

// Start binds the listener and starts accepting.
func (e *Engine) Start(ctx context.Context) error {
	ln, err := listen(ctx, e.opts.Listen, e.opts.Backlog)
	if err != nil {
		return err
	}
	e.ln = ln
	e.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	go e.acceptLoop()
	e.log.Debug("listening", "address", e.addr.String(), "backlog", e.opts.Backlog)
	return nil
}

// Addr returns the bound address.
func (e *Engine) Addr() netip.AddrPort { return e.addr }

// Done never fires for this engine: its accept loop backs off on every error
// and only ends when the listener is closed by Drain or Close.
func (e *Engine) Done() <-chan error { return e.done }

// Stats returns the counters.
func (e *Engine) Stats() engine.Stats {
	return engine.Stats{
		Accepted: e.stats.accepted.Load(),
		Active:   e.stats.active.Load(),
		BytesIn:  e.stats.bytesIn.Load(),
		BytesOut: e.stats.bytesOut.Load(),
	}
}

func (e *Engine) acceptLoop() {
	defer close(e.acceptEnd)
	// One descriptor kept in reserve: when accept fails for lack of
	// descriptors, it is freed to take the waiting connection and reset it,
	// so that clients over the limit are refused at once instead of
	// hanging in the listen backlog until descriptors free up.
	spare := openSpare()
	defer func() {
		if spare >= 0 {
			_ = unix.Close(spare)
		}
	}()
	var backoff time.Duration
	for {
		c, err := e.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if spare >= 0 && engine.LocalCause(err) == engine.LocalFDs {
				_ = unix.Close(spare)
				if e.resetPending() {
					e.policy.Refused(&engine.ConnInfo{Local: e.addr, Accepted: time.Now()}, engine.RejectLimit)
				}
				spare = openSpare()
				continue
			}
			if spare < 0 {
				spare = openSpare() // for the next time
			}
			// ENOBUFS, ENOMEM, no spare...: the listener still works once
			// the pressure ends. Back off instead of spinning; the first
			// failure of a run is a warning, the rest (at most a few a
			// second with the back-off) debug lines.
			level := slog.LevelDebug
			if backoff == 0 {
				level = slog.LevelWarn
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			e.log.Log(context.Background(), level, "accept failed", "error", err, "backoff_ms", backoff.Milliseconds())
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if spare < 0 {
			spare = openSpare()
		}
		e.admit(c)
	}
}

// openSpare opens the reserve descriptor; -1 when even that fails.
func openSpare() int {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// resetPending accepts one waiting connection without blocking and resets
// it (SO_LINGER 0). It reports whether there was one.
func (e *Engine) resetPending() bool {
	rc, err := e.ln.SyscallConn()
	if err != nil {
		return false
	}
	reset := false
	_ = rc.Read(func(fd uintptr) bool {
		nfd, _, err := unix.Accept(int(fd))
		if err == nil {
			_ = unix.SetsockoptLinger(nfd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			_ = unix.Close(nfd)
			reset = true
		}
		return true // one attempt: never wait for a connection here
	})
	return reset
}

func (e *Engine) admit(c *net.TCPConn) {
	now := time.Now()
	peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	ci := &engine.ConnInfo{
		ID:       e.nextID.Add(1),
		Client:   peer,
		Peer:     peer,
		Local:    c.LocalAddr().(*net.TCPAddr).AddrPort(),
		Accepted: now,
	}
	if !e.room.admit(now) {
		// Too few descriptors left for the relay (sockets, pipes) and the
		// rest of bal: reset it now rather than fail half-way.
		e.policy.Refused(ci, engine.RejectLimit)
		resetConn(c)
		return
	}
	t := e.opts.Tunables.Load()
	if t.ProxyIn == engine.ProxyInOff && !t.Inspect {
		// Nothing to read before a backend is chosen: admit here, on the
		// accept loop, and relay.
		if !e.policy.Admit(ci) {
			resetConn(c) // no TIME_WAIT piles up
			return
		}
		p := &pair{e: e, ci: ci, client: c, t: t, start: now, admitted: true}
		if !e.register(p) { // raced with Drain/Close: refuse like a closed listener
			resetConn(c)
			e.policy.Closed(ci, engine.CloseInfo{Reason: engine.CloseDrained})
			return
		}
		go p.run()
		return
	}
	if t.ProxyIn != engine.ProxyInOff && !t.Trusted.Contains(peer.Addr()) {
		// Only a trusted upstream may say who the client is; nothing is
		// read from anyone else.
		e.policy.Refused(ci, engine.RejectProxyHeader)
		resetConn(c)
		return
	}
	// The PROXY header and the ClientHello are read on the connection's
	// own goroutine, which then admits, routes and relays. Until Admit it
	// is tracked (Drain waits for it, Close ends it) but not counted.
	p := &pair{e: e, ci: ci, client: c, t: t, start: now}
	if !e.register(p) {
		resetConn(c)
		return
	}
	go p.serve()
}

// register tracks p until finished, unless the engine already stopped
// accepting. An admitted p is counted in Stats from here.
func (e *Engine) register(p *pair) bool {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return false
	}
	e.pairs[p] = struct{}{}
	e.conns.Add(1)
	e.mu.Unlock()
	if p.admitted {
		e.stats.accepted.Add(1)
		e.stats.active.Add(1)
	}
	return true
}

// resetConn closes c with a reset (SO_LINGER 0).
func resetConn(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

// finished is called once by each pair when both its sockets are closed.
func (e *Engine) finished(p *pair) {
	if p.admitted {
		e.stats.active.Add(^uint64(0))
	}
	e.mu.Lock()
	delete(e.pairs, p)
	if e.stopped && len(e.pairs) == 0 {
		select {
		case <-e.idle:
		default:
			close(e.idle)
		}
	}
	e.mu.Unlock()
	e.conns.Done()
}

// stopAccepting closes the listener once and waits for the accept loop.
// With serveQueue (Drain) the connections the kernel completed but nobody
// accepted yet are accepted and served first, instead of being reset by the
// listener's close.
func (e *Engine) stopAccepting(serveQueue bool) {
	e.mu.Lock()
	first := !e.closing
	e.closing = true
	e.mu.Unlock()
	if e.ln != nil {
		held := -1
		if first && serveQueue {
			held = dupListener(e.ln)
		}
		if first {
			_ = e.ln.Close()
		}
		<-e.acceptEnd
		if held >= 0 {
			e.acceptQueued(held)
		}
	}
	e.mu.Lock()
	e.stopped = true
	if len(e.pairs) == 0 {
		select {
		case <-e.idle:
		default:
			close(e.idle)
		}
	}
	e.mu.Unlock()
}

// acceptQueued admits every connection still queued on the listening
// socket held (a duplicate kept across the listener's close), then closes
// held.
func (e *Engine) acceptQueued(held int) {
	defer unix.Close(held)
	for {
		fd, _, err := unix.Accept(held)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			return // EAGAIN: the queue is empty
		}
		unix.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), "queued")
		c, err := net.FileConn(f)
		_ = f.Close()
		if err != nil {
			continue
		}
		e.admit(c.(*net.TCPConn))
	}
}

// Drain stops accepting, waits for open connections until ctx is done, then
// closes the rest.
func (e *Engine) Drain(ctx context.Context) error {
	e.stopAccepting(true)
	select {
	case <-e.idle:
	case <-ctx.Done():
		e.forceClose(engine.CloseDrained)
	}
	e.conns.Wait()
	e.cancelDial()
	return nil
}

// Close stops accepting and closes every connection at once.
func (e *Engine) Close() error {
	e.stopAccepting(false)
	e.forceClose(engine.CloseDrained)
	e.conns.Wait()
	return nil
}

func (e *Engine) forceClose(reason engine.CloseReason) {
	e.cancelDial()
	e.mu.Lock()
	ps := make([]*pair, 0, len(e.pairs))
	for p := range e.pairs {
		ps = append(ps, p)
	}
	e.mu.Unlock()
	for _, p := range ps {
		p.abort(reason, false)
	}
}
