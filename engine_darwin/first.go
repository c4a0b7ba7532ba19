package stdengine

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/proxyproto"
	"github.com/bal-lb/bal/engine/tlshello"
)

// A service that reads a PROXY header or inspects the ClientHello reads the
// client's first bytes before it chooses a backend, into a pooled buffer:
// first one of headerBufs (enough for any PROXY header, and for the
// ClientHellos of common clients, which stay under 2 KiB), moved to one of
// inspectBufs (engine.MaxInspect, a header and the largest hello) only when
// a hello needs more. Every byte after the PROXY header is client payload
// and goes to the backend first, unchanged. The buffer goes back to its
// pool once those bytes are written, so at most one buffer of at most
// engine.MaxInspect bytes is held per connection, and only until its
// backend is connected.
var (
	headerBufs  = sync.Pool{New: func() any { b := make([]byte, proxyproto.MaxV2Len); return &b }}
	inspectBufs = sync.Pool{New: func() any { b := make([]byte, engine.MaxInspect); return &b }}
)

// errProxyHeader is a PROXY header that does not parse or is not accepted.
var errProxyHeader = errors.New("malformed PROXY header")

// firstBytes is the buffer a connection read its first bytes into.
type firstBytes struct {
	buf  *[]byte
	pool *sync.Pool
	n    int // bytes read into *buf
	off  int // where the client payload starts (after the PROXY header)
}

func newFirstBytes() *firstBytes {
	return &firstBytes{buf: headerBufs.Get().(*[]byte), pool: &headerBufs}
}

// grow moves the bytes read so far into a buffer of engine.MaxInspect
// bytes; false when they already are in one.
func (f *firstBytes) grow() bool {
	if f.pool == &inspectBufs {
		return false
	}
	big := inspectBufs.Get().(*[]byte)
	copy(*big, (*f.buf)[:f.n])
	f.pool.Put(f.buf)
	f.buf, f.pool = big, &inspectBufs
	return true
}

// payload is the client payload read so far.
func (f *firstBytes) payload() []byte { return (*f.buf)[f.off:f.n] }

// release returns the buffer to its pool; payload is invalid afterwards.
func (f *firstBytes) release() {
	if f.buf != nil {
		f.pool.Put(f.buf)
		f.buf = nil
	}
}

// readMore reads once into the free part of the buffer. A read that
// returned bytes is not an error even if it also failed: the failure
// repeats on the next read.
func (f *firstBytes) readMore(p *pair) (int, error) {
	n, err := p.client.Read((*f.buf)[f.n:])
	f.n += n
	if n > 0 {
		return n, nil
	}
	return 0, err
}

// serve runs a connection of a service that reads a PROXY header or
// inspects: PROXY header, Admit, inspection and Route, then the relay.
func (p *pair) serve() {
	defer p.e.finished(p)
	t := p.t
	first := newFirstBytes()
	defer first.release()
	if t.ProxyIn != engine.ProxyInOff {
		if err := p.readProxyHeader(first); err != nil {
			if p.isAborted() {
				return // Close or the drain deadline: not a refusal
			}
			p.e.log.Debug("PROXY header refused", "peer", p.ci.Peer.String(), "error", err)
			p.e.policy.Refused(p.ci, engine.RejectProxyHeader)
			resetConn(p.client)
			return
		}
	}
	if !p.e.policy.Admit(p.ci) {
		resetConn(p.client)
		return
	}
	p.admitted = true
	p.e.stats.accepted.Add(1)
	p.e.stats.active.Add(1)
	if t.Inspect {
		if !p.inspect(first) {
			p.ci.Hello.Result = engine.InspectClosed
			p.abort(engine.CloseClientGone, false)
			p.report()
			return
		}
		if !p.e.policy.Route(p.ci) {
			p.abort(engine.CloseNoRoute, true)
			p.report()
			return
		}
	}
	_ = p.client.SetReadDeadline(time.Time{})
	p.relay(first)
}

// proxyAccept maps the service's mode to the versions the parser accepts.
func proxyAccept(m engine.ProxyIn) proxyproto.Accept {
	switch m {
	case engine.ProxyInV1:
		return proxyproto.AcceptV1
	case engine.ProxyInV2:
		return proxyproto.AcceptV2
	case engine.ProxyInAny:
		return proxyproto.AcceptAny
	}
	return 0
}

// readProxyHeader reads the PROXY header within the header timeout (counted
// from accept) and sets Client and Local from it. The bytes read after it
// stay in first as client payload.
func (p *pair) readProxyHeader(first *firstBytes) error {
	_ = p.client.SetReadDeadline(p.ci.Accepted.Add(p.t.ProxyHeaderTimeout))
	accept := proxyAccept(p.t.ProxyIn)
	for {
		if _, err := first.readMore(p); err != nil {
			return fmt.Errorf("reading the PROXY header: %w", err)
		}
		h, n, st := proxyproto.Parse((*first.buf)[:first.n], accept)
		switch {
		case st == proxyproto.Done:
			first.off = n
			if !h.Local {
				p.ci.Client, p.ci.Local = h.Source, h.Destination
			}
			return nil
		case st == proxyproto.Malformed:
			return fmt.Errorf("%w: %s", errProxyHeader, h.Reason)
		case first.n == len(*first.buf): // the parser decides before this
			return fmt.Errorf("%w: longer than %d bytes", errProxyHeader, first.n)
		}
	}
}

// inspect reads the client's first bytes until the ClientHello parser
// decides, engine.MaxInspect bytes are held or the inspect timeout passes,
// and fills ci.Hello. It returns false when the client closed or reset the
// connection first (or the engine closed it).
func (p *pair) inspect(first *firstBytes) bool {
	_ = p.client.SetReadDeadline(time.Now().Add(p.t.InspectTimeout))
	for {
		if first.n > first.off {
			h, st := tlshello.Parse(first.payload())
			if st != tlshello.NeedMore {
				p.ci.Hello = helloOf(h, st)
				return true
			}
			if first.n == len(*first.buf) && !first.grow() { // full: the parser decides before MaxInspect
				p.ci.Hello = engine.Hello{Result: engine.InspectTooLarge}
				return true
			}
		}
		if _, err := first.readMore(p); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !p.isAborted() {
				p.ci.Hello = engine.Hello{Result: engine.InspectTimeout}
				return true
			}
			return false
		}
	}
}

// helloOf is the engine's view of a decided parse.
func helloOf(h tlshello.Hello, st tlshello.Status) engine.Hello {
	switch st {
	case tlshello.Done:
		r := engine.InspectSNI
		if h.SNI == "" {
			r = engine.InspectNoSNI
		}
		return engine.Hello{Result: r, SNI: h.SNI, ALPN: h.ALPN}
	case tlshello.NotTLS:
		return engine.Hello{Result: engine.InspectNotTLS}
	case tlshello.TooLarge:
		return engine.Hello{Result: engine.InspectTooLarge}
	}
	return engine.Hello{Result: engine.InspectMalformed}
}

func (p *pair) isAborted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.aborted
}
