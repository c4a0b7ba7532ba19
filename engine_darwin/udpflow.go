package stdengine

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine"
)

// datagrams are the receive buffers of the flows' goroutines. A flow takes
// one only while its socket has a datagram to read, so idle flows hold none.
var datagrams = sync.Pool{New: func() any { b := make([]byte, engine.DatagramBuffer); return &b }}

// flow is one client address:port and its connected socket to the backend.
type flow struct {
	e       *udpEngine
	ci      *engine.ConnInfo
	conn    *net.UDPConn
	raw     syscall.RawConn
	key     netip.AddrPort // the client as read from the service's socket
	to      unix.Sockaddr  // the client, for replies
	oob     []byte         // the source of replies (wildcard binds), else nil
	timeout int64          // udp_idle_timeout in nanoseconds, as of the flow's start

	last              atomic.Int64 // e.mono() of the latest datagram either way
	bytesIn, bytesOut atomic.Int64

	// ending is claimed once, by whoever ends the flow; reason is written
	// before closed is closed, and read after.
	ending atomic.Bool
	reason engine.CloseReason
	closed chan struct{}

	// The read loop's side (toBackend): the datagram being sent.
	out     []byte
	outErr  error
	writeFn func(fd uintptr) bool

	// The flow goroutine's side: the datagram received and being replied.
	buf            *[]byte
	inN            int
	inErr, sendErr error
	readFn         func(fd uintptr) bool
	replyFn        func(fd uintptr) bool
}

func newFlow(e *udpEngine, ci *engine.ConnInfo, conn *net.UDPConn, key netip.AddrPort, timeout time.Duration) (*flow, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	f := &flow{e: e, ci: ci, conn: conn, raw: raw, key: key, timeout: int64(timeout), closed: make(chan struct{})}
	f.to = sockaddr(key, e.v6)
	if e.pktinfo && ci.Local.Addr().IsValid() && !ci.Local.Addr().IsUnspecified() {
		f.oob = replyOOB(ci.Local.Addr())
	}
	f.writeFn, f.readFn, f.replyFn = f.writeOnce, f.readOnce, f.replyOnce
	f.last.Store(e.mono())
	return f, nil
}

// sockaddr is a as the service's socket sends to it.
func sockaddr(a netip.AddrPort, v6 bool) unix.Sockaddr {
	if !v6 {
		return &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().Unmap().As4()}
	}
	sa := &unix.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16()}
	if z := a.Addr().Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		} else if n, err := strconv.ParseUint(z, 10, 32); err == nil {
			sa.ZoneId = uint32(n)
		}
	}
	return sa
}

type sendResult uint8

const (
	sendDone    sendResult = iota // sent
	sendDropped                   // dropped and counted
	sendGone                      // the flow has ended: the datagram needs a new one
)

// toBackend sends one client datagram on the flow's socket, without ever
// waiting: a full send buffer drops it (engine.DropBackendBusy). A pending
// ICMP port unreachable ends the flow (the datagram was not sent).
func (f *flow) toBackend(b []byte) sendResult {
	f.out = b
	err := f.raw.Write(f.writeFn)
	f.out = nil
	if err != nil {
		return sendGone // closed by expiry or ICMP meanwhile
	}
	e := f.e
	switch err := f.outErr; {
	case err == nil:
		f.last.Store(e.mono())
		f.bytesIn.Add(int64(len(b)))
		e.stats.bytesIn.Add(uint64(len(b)))
		e.stats.dgIn.Add(1)
		return sendDone
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.ENOBUFS):
		e.drop(engine.DropBackendBusy)
		return sendDropped
	case unreachable(err):
		f.end(engine.CloseBackendUnreachable, err)
		return sendGone
	default:
		e.drop(engine.DropSendError)
		e.log.Debug("send to backend failed", "client", f.ci.Client.String(), "backend", f.ci.Backend.Name, "bytes", len(b), "error", err)
		return sendDropped
	}
}

func (f *flow) writeOnce(fd uintptr) bool {
	for {
		f.outErr = unix.Sendto(int(fd), f.out, 0, nil)
		if f.outErr != unix.EINTR {
			return true // never wait for room: UDP may drop
		}
	}
}

// unreachable reports the errors an ICMP message about the backend leaves
// on a connected UDP socket.
func unreachable(err error) bool {
	return errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.EHOSTUNREACH) ||
		errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTDOWN)
}

// run relays the backend's replies to the client until the flow ends, then
// reports it Closed.
func (f *flow) run() {
	e := f.e
	replied := false
	for {
		if err := f.raw.Read(f.readFn); err != nil {
			break // the socket was closed: the flow has ended
		}
		if err := f.inErr; err != nil {
			f.inErr = nil
			if unreachable(err) {
				f.end(engine.CloseBackendUnreachable, err)
			} else {
				e.log.Debug("receive from backend failed", "client", f.ci.Client.String(), "backend", f.ci.Backend.Name, "error", err)
				f.end(engine.CloseError, nil)
			}
			continue
		}
		n := f.inN
		if err := e.raw.Write(f.replyFn); err != nil {
			f.sendErr = err // the service's socket is closed: Close or the drain deadline
		}
		datagrams.Put(f.buf)
		f.buf = nil
		switch err := f.sendErr; {
		case err == nil:
			f.last.Store(e.mono())
			f.bytesOut.Add(int64(n))
			e.stats.bytesOut.Add(uint64(n))
			e.stats.dgOut.Add(1)
			if !replied {
				replied = true
				if e.obs != nil {
					e.obs.Replied(f.ci)
				}
			}
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.ENOBUFS):
			e.drop(engine.DropClientBusy)
		default:
			e.drop(engine.DropSendError)
			e.log.Debug("send to client failed", "client", f.ci.Client.String(), "bytes", n, "error", err)
		}
		f.sendErr = nil
	}
	f.end(engine.CloseError, nil) // nothing closes a socket but end: a no-op, unless the runtime failed the read
	<-f.closed
	e.forget(f)
	e.stats.active.Add(^uint64(0))
	e.policy.Closed(f.ci, engine.CloseInfo{
		Backend:  f.ci.Backend,
		BytesIn:  f.bytesIn.Load(),
		BytesOut: f.bytesOut.Load(),
		Reason:   f.reason,
		Duration: time.Since(f.ci.Accepted),
	})
	e.flowsWG.Done()
}

// readOnce reads one datagram when the socket has one, into a pooled
// buffer; on EAGAIN it gives the buffer back and lets the runtime wait.
func (f *flow) readOnce(fd uintptr) bool {
	if f.buf == nil {
		f.buf = datagrams.Get().(*[]byte)
	}
	for {
		n, err := unix.Read(int(fd), *f.buf)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			datagrams.Put(f.buf)
			f.buf = nil
			return false
		}
		f.inN, f.inErr = n, err
		if err != nil {
			datagrams.Put(f.buf)
			f.buf = nil
		}
		return true
	}
}

// replyOnce sends the datagram read to the client from the service's
// socket, without waiting for room.
func (f *flow) replyOnce(fd uintptr) bool {
	b := (*f.buf)[:f.inN]
	for {
		if f.oob != nil {
			_, f.sendErr = unix.SendmsgN(int(fd), b, f.oob, f.to, 0)
		} else {
			f.sendErr = unix.Sendto(int(fd), b, 0, f.to)
		}
		if f.sendErr != unix.EINTR {
			return true
		}
	}
}

// end ends the flow once, for reason: an ICMP error (cause) is reported to
// the policy as a refused connect first; then the flow leaves the table
// and its socket is closed, which ends its goroutine. Later calls do
// nothing.
func (f *flow) end(reason engine.CloseReason, cause error) {
	if !f.ending.CompareAndSwap(false, true) {
		return
	}
	f.reason = reason
	if cause != nil {
		f.e.policy.DialResult(f.ci, f.ci.Backend, cause, 0)
	}
	f.e.forget(f)
	_ = f.conn.Close()
	close(f.closed)
}
