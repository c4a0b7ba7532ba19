package stdengine

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/proxyproto"
)

// pair is one proxied connection: the client socket, the backend socket once
// connected, and the two copy directions between them.
type pair struct {
	e      *Engine
	ci     *engine.ConnInfo
	client *net.TCPConn
	t      *engine.Tunables // read once, at accept
	start  time.Time        // ci.Accepted
	// admitted: Admit returned true (counted in Stats, reported Closed).
	// Set before the connection's goroutine starts, or by it.
	admitted bool
	idle     time.Duration // 0 = no idle timeout
	grace    time.Duration
	bytesIn  atomic.Int64 // client → backend
	bytesUp  atomic.Int64 // backend → client

	// Idle tracking, in nanoseconds since start. Every chunk moved touches
	// lastActive; the read deadlines of both sockets are kept at roughly
	// lastActive+idle, re-armed only when they get close.
	lastActive atomic.Int64
	armedUntil atomic.Int64
	strike     atomic.Bool
	copying    atomic.Int32 // directions still copying (2, then 1 after a half-close)

	mu      sync.Mutex
	backend *net.TCPConn
	target  engine.Target
	reason  engine.CloseReason
	aborted bool
}

func (p *pair) now() int64 { return int64(time.Since(p.start)) }

// setReason records the first close reason; later ones are ignored.
func (p *pair) setReason(r engine.CloseReason) {
	p.mu.Lock()
	if p.reason == "" {
		p.reason = r
	}
	p.mu.Unlock()
}

// abort closes both sockets at once; rst sends a reset instead of a FIN.
func (p *pair) abort(r engine.CloseReason, rst bool) {
	p.mu.Lock()
	if p.reason == "" {
		p.reason = r
	}
	p.aborted = true
	b := p.backend
	p.mu.Unlock()
	for _, c := range []*net.TCPConn{p.client, b} {
		if c == nil {
			continue
		}
		if rst {
			_ = c.SetLinger(0)
		}
		_ = c.Close()
	}
}

// run serves a connection that was admitted at accept (a service that
// neither reads a PROXY header nor inspects): nothing is read from the
// client before the relay.
func (p *pair) run() {
	defer p.e.finished(p)
	p.relay(nil)
}

// relay connects a backend, sends it the outbound PROXY header and the
// client bytes already read (first, nil when none were), and copies both
// directions until the connection ends; then it reports Closed.
func (p *pair) relay(first *firstBytes) {
	t := p.t
	p.idle = t.IdleTimeout
	p.grace = min(p.idle/4, time.Second)

	backend, target, err := p.connect(t)
	if err != nil {
		reason, rst := engine.CloseNoBackend, false
		switch {
		case engine.IsLocal(err):
			// Out of descriptors, memory or ports here: reset the client
			// like a refusal.
			// The policy counted and logged it (DialResult).
			reason, rst = engine.CloseError, true
		case !errors.Is(err, engine.ErrNoBackend):
			reason = engine.CloseDrained
		}
		p.abort(reason, rst)
		p.report()
		return
	}
	p.ci.Backend = target
	if first != nil {
		err = p.writeFirst(backend, first)
	} else if t.ProxyProtocol != engine.ProxyOff {
		var buf [proxyproto.MaxLen]byte
		_, err = backend.Write(proxyproto.Append(buf[:0], t.ProxyProtocol, p.ci.Client, p.ci.Local))
	}
	if err != nil {
		p.abort(engine.CloseBackendReset, true)
		p.report()
		return
	}
	p.touch()
	p.copying.Store(2)
	done := make(chan struct{})
	go func() {
		p.direction(backend, p.client, true)
		close(done)
	}()
	p.direction(p.client, backend, false)
	<-done
	p.setReason(engine.CloseDone)
	_ = p.client.Close()
	_ = backend.Close()
	p.report()
}

// writeFirst sends the outbound PROXY header (if any) and the client
// payload read before the backend was chosen, in one write, and releases
// first's buffer.
func (p *pair) writeFirst(backend *net.TCPConn, first *firstBytes) error {
	defer first.release()
	var buf [proxyproto.MaxLen]byte
	hdr := proxyproto.Append(buf[:0], p.t.ProxyProtocol, p.ci.Client, p.ci.Local)
	payload := first.payload()
	if len(hdr)+len(payload) == 0 {
		return nil
	}
	bufs := net.Buffers{hdr, payload}
	n, err := bufs.WriteTo(backend) // consumes bufs
	if moved := n - int64(len(hdr)); moved > 0 {
		p.bytesIn.Add(moved)
		p.e.stats.bytesIn.Add(uint64(moved))
	}
	return err
}

func (p *pair) report() {
	p.mu.Lock()
	info := engine.CloseInfo{
		Backend:  p.target,
		BytesIn:  p.bytesIn.Load(),
		BytesOut: p.bytesUp.Load(),
		Reason:   p.reason,
		Duration: time.Since(p.start),
	}
	p.mu.Unlock()
	p.e.policy.Closed(p.ci, info)
}

// connect asks the policy for backends until one accepts the connection.
// It returns an error wrapping engine.ErrNoBackend when the policy has none
// left, or engine.ErrClosed when the engine is shutting down.
func (p *pair) connect(t *engine.Tunables) (*net.TCPConn, engine.Target, error) {
	d := net.Dialer{Timeout: t.ConnectTimeout}
	for attempt := 0; ; attempt++ {
		target, ok := p.e.policy.Pick(p.ci, attempt)
		if !ok {
			return nil, engine.Target{}, engine.ErrNoBackend
		}
		began := time.Now()
		c, err := d.DialContext(p.e.dialCtx, "tcp", target.Addr.String())
		if p.e.dialCtx.Err() != nil { // shutting down: not the backend's fault
			if c != nil {
				c.Close()
			}
			return nil, engine.Target{}, engine.ErrClosed
		}
		if engine.Classify(err) == engine.FailTimeout && !errors.Is(err, engine.ErrConnectTimeout) {
			err = fmt.Errorf("%w: %w", engine.ErrConnectTimeout, err)
		}
		p.e.policy.DialResult(p.ci, target, err, time.Since(began))
		if engine.IsLocal(err) {
			// bal itself is out of descriptors, memory or ports: every other
			// backend would fail the same way, and a client that
			// "exhausted every backend" would wrongly count as the
			// backends' fault (protection mode). Give up on this
			// connection only.
			return nil, engine.Target{}, err
		}
		if err != nil {
			continue
		}
		tc := c.(*net.TCPConn)
		p.mu.Lock()
		if p.aborted {
			p.mu.Unlock()
			tc.Close()
			return nil, engine.Target{}, engine.ErrClosed
		}
		p.backend, p.target = tc, target
		p.mu.Unlock()
		return tc, target, nil
	}
}

// touch records activity and keeps the read deadlines ahead of it.
func (p *pair) touch() {
	if p.idle <= 0 {
		return
	}
	now := p.now()
	p.lastActive.Store(now)
	p.strike.Store(false)
	if p.armedUntil.Load()-now < int64(p.idle/2) {
		p.arm(now)
	}
}

// arm sets both sockets' read deadline to base+idle.
func (p *pair) arm(base int64) {
	until := base + int64(p.idle)
	p.armedUntil.Store(until)
	dl := p.start.Add(time.Duration(until))
	_ = p.client.SetReadDeadline(dl)
	p.mu.Lock()
	b := p.backend
	p.mu.Unlock()
	if b != nil {
		_ = b.SetReadDeadline(dl)
	}
}

// idleExpired is called when a read deadline fired with nothing moved. The
// other direction may have bytes in flight it has not reported yet, so the
// first strike only waits a short grace; a second strike with still no
// activity means the pair really is idle. After a half-close only the
// caller's direction is left, so there is nothing unreported to wait for.
func (p *pair) idleExpired(src *net.TCPConn) bool {
	now := p.now()
	if now-p.lastActive.Load() < int64(p.idle) {
		p.arm(p.lastActive.Load())
		return false
	}
	if p.copying.Load() <= 1 {
		return true
	}
	if p.strike.CompareAndSwap(false, true) {
		_ = src.SetReadDeadline(time.Now().Add(p.grace))
		return false
	}
	return true
}

// direction copies src → dst until EOF (then half-closes dst), an error
// (then resets both), or the idle timeout.
func (p *pair) direction(dst, src *net.TCPConn, fromClient bool) {
	counter, total := &p.bytesUp, &p.e.stats.bytesOut
	if fromClient {
		counter, total = &p.bytesIn, &p.e.stats.bytesIn
	}
	cp := p.e.copier.newDirection(dst, src)
	for {
		n, eof, err := cp.chunk()
		if n > 0 {
			counter.Add(n)
			total.Add(uint64(n))
			p.touch()
		}
		switch {
		case err == nil && eof:
			_ = dst.CloseWrite()
			p.copying.Add(-1)
			return
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if n == 0 && p.idleExpired(src) {
				p.abort(engine.CloseIdleTimeout, false)
				return
			}
		default:
			p.abort(resetReason(err, fromClient), true)
			return
		}
	}
}

// resetReason guesses which side failed: EPIPE comes from writing to the
// destination, anything else (ECONNRESET mostly) from reading the source.
func resetReason(err error, fromClient bool) engine.CloseReason {
	srcFailed := !errors.Is(err, syscall.EPIPE)
	if srcFailed == fromClient {
		return engine.CloseClientReset
	}
	return engine.CloseBackendReset
}
