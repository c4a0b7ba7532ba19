//go:build linux

package gnetengine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/queue"
	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine"
)

// keepAlive is the TCP keepalive idle time set on the listeners (inherited
// by every accepted client socket on Linux).
const keepAlive = 15 * time.Second

// tickEvery is the period of the front's OnTick (fd budget refresh).
const tickEvery = 250 * time.Millisecond

// front is the gnet side: listening, accepting, admission and hand-off.
type front struct {
	gnet.BuiltinEventEngine

	e   *Engine
	log *gnetLogger

	eng       gnet.Engine // set in OnBoot
	readyOnce sync.Once
	ready     chan struct{} // closed by the first OnTick: every listener is up
	runDone   chan struct{} // closed when gnet.Run returned
	runErr    error         // written before runDone is closed

	stopOnce sync.Once
}

func newFront(e *Engine) *front {
	return &front{
		e:       e,
		log:     &gnetLogger{l: e.log.With("component", "gnet")},
		ready:   make(chan struct{}),
		runDone: make(chan struct{}),
	}
}

// protoAddr is the gnet address for a. The IPv6 unspecified address is
// passed without a host so that gnet makes a dual-stack socket, like Go's
// net.Listen and engine.ProbeBind do.
func protoAddr(a netip.AddrPort) string {
	if a.Addr().Is6() && a.Addr().IsUnspecified() {
		return fmt.Sprintf("tcp://:%d", a.Port())
	}
	return "tcp://" + a.String()
}

// start runs gnet and waits until every listener is listening (the first
// OnTick) or gnet gave up.
func (f *front) start(ctx context.Context) error {
	e := f.e
	go func() {
		err := gnet.Run(f, protoAddr(e.addr),
			gnet.WithNumEventLoop(e.nloops),
			gnet.WithReusePort(true),
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithTCPKeepAlive(keepAlive),
			gnet.WithReadBufferCap(1), // never read: the smallest buffer gnet allows
			gnet.WithWriteBufferCap(1),
			gnet.WithTicker(true),
			gnet.WithLogger(f.log),
		)
		f.runErr = err
		close(f.runDone)
		select {
		case <-f.ready: // it was serving: this is a death, not a failed start
		default:
			return
		}
		if err == nil {
			err = errors.New(f.log.lastError())
		}
		e.fail(fmt.Errorf("gnet front on %s: %w: %w", e.addr, ErrListenerLost, err))
	}()
	select {
	case <-f.ready:
		return nil
	case <-f.runDone:
		if f.runErr != nil {
			return fmt.Errorf("gnetengine: listen %s: %w", e.addr, f.runErr)
		}
		return fmt.Errorf("gnetengine: listen %s: gnet stopped during start: %s", e.addr, f.log.lastError())
	case <-ctx.Done():
		e.stopping.Store(true)
		f.stop()
		return ctx.Err()
	}
}

// stop closes the listeners: gnet owns no live connection in this design,
// so stopping it is exactly "stop accepting". It returns once gnet.Run has
// returned (all gnet goroutines gone).
func (f *front) stop() {
	f.stopOnce.Do(func() {
		select {
		case <-f.runDone:
			return
		case <-f.ready:
		}
		// Engine.Stop polls for completion every 500 ms; Run returning is the
		// real signal, so cancel Stop's wait as soon as Run is back.
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() {
			_ = f.eng.Stop(ctx)
			close(stopped)
		}()
		<-f.runDone
		cancel()
		<-stopped
	})
}

// OnBoot keeps the gnet engine handle for Stop.
func (f *front) OnBoot(eng gnet.Engine) gnet.Action {
	f.eng = eng
	return gnet.None
}

// OnTick marks the front ready (the ticker starts after every loop's
// listener is up) and refreshes the process-wide fd estimate.
func (f *front) OnTick() (time.Duration, gnet.Action) {
	f.readyOnce.Do(func() { close(f.ready) })
	budget.refresh()
	return tickEvery, gnet.None
}

// OnOpen admits the connection, detaches its socket (Dup) and hands it to a
// data loop, then lets gnet close its own descriptor. gnet has not read a
// byte yet, so nothing is lost.
func (f *front) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	e := f.e
	now := time.Now()
	p := e.admit(addrPortOf(c.RemoteAddr()), c.Fd(), now)
	if p == nil {
		_ = c.SetLinger(0) // reset: no TIME_WAIT piles up
		return nil, gnet.Close
	}
	fd, err := c.Dup()
	if err != nil {
		e.unadmit(p, now)
		_ = c.SetLinger(0)
		e.log.Warn("detaching an accepted socket failed", "client", p.info.Client.String(), "err", err)
		return nil, gnet.Close
	}
	p.cfd = fd
	if !e.dispatch(p, e.pickLoop(c.EventLoop()), now) {
		_ = c.SetLinger(0)
	}
	return nil, gnet.Close
}

// admit builds the pair of a newly accepted client (socket fd, not yet
// owned by the pair) and asks for admission: descriptor headroom first (an
// accept that fails with EMFILE would stop gnet; a refusal there is
// reported to the policy with Refused), then the policy's Admit. It returns
// nil when refused: the caller resets the client.
func (e *Engine) admit(client netip.AddrPort, fd int, now time.Time) *pair {
	p := newPair()
	p.info.ID = e.nextID.Add(1)
	p.info.Client = client
	p.info.Local = e.localOf(fd)
	p.info.Accepted = now
	if !budget.room(admitFDs, e.cost) {
		e.pol.Refused(&p.info, engine.RejectLimit)
		return nil
	}
	if !e.pol.Admit(&p.info) {
		return nil
	}
	budget.own.Add(pairFDs)
	e.accepted.Add(1)
	e.active.Add(1)
	return p
}

// unadmit undoes admit for a pair that never reached a data loop.
func (e *Engine) unadmit(p *pair, now time.Time) {
	budget.own.Add(-pairFDs)
	e.active.Add(-1)
	e.pol.Closed(&p.info, engine.CloseInfo{Reason: engine.CloseError, Duration: time.Since(now)})
}

// dispatch hands an admitted pair, whose client socket p.cfd it now owns,
// to data loop l. On failure it closes p.cfd, undoes the admission and
// returns false.
func (e *Engine) dispatch(p *pair, l *loop, now time.Time) bool {
	if err := l.poller.Trigger(queue.HighPriority, l.adoptFn, p); err != nil {
		_ = unix.Close(p.cfd)
		e.unadmit(p, now)
		return false
	}
	return true
}

// localOf is the address the client of socket fd connected to: the listen
// address, or the kernel's answer when listening on a wildcard address.
func (e *Engine) localOf(fd int) netip.AddrPort {
	if !e.wildcard {
		return e.addr
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return e.addr
	}
	return sockaddrToAddrPort(sa)
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func sockaddrToAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}
