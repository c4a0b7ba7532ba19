package stdengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/limits"
)

// UDPCost is the UDP engine's use of descriptors: one connected socket per
// flow (the service's socket is part of the process overhead).
func UDPCost() limits.Cost { return limits.Cost{PerConn: 1} }

// udpEngine relays the flows of one UDP service (docs/udp.md). One
// goroutine reads the service's socket and sends each datagram on its
// flow's connected socket; one goroutine per flow waits for the backend's
// replies (holding no buffer while it waits) and sends them from the
// service's socket; one sweeper ends idle flows. Nothing is queued: a send
// that would block is dropped and counted, so a backend or client that
// does not read costs kernel socket buffers only.
type udpEngine struct {
	opts   engine.Options
	policy engine.Policy
	obs    engine.FlowObserver // nil when the policy does not observe replies
	log    *slog.Logger

	conn *net.UDPConn
	raw  syscall.RawConn
	addr netip.AddrPort
	// v6 is set when the socket is AF_INET6: replies need IPv6 socket
	// addresses (IPv4 clients of a socket on :: are IPv4-mapped).
	v6 bool
	// pktinfo is set on a wildcard address: each datagram's destination
	// is read, and the flow's replies leave from it, so that a client
	// that sent to one of the host's addresses hears back from that one.
	pktinfo bool
	base    time.Time // origin of the flows' monotonic timestamps
	nextID  atomic.Uint64
	scratch engine.ConnInfo // the read loop's, for datagrams that may be refused

	mu       sync.Mutex
	flows    map[netip.AddrPort]*flow // by the client's address as read
	draining bool                     // Drain or Close called: no new flow
	idle     chan struct{}            // closed once draining and no flow is left
	idleOnce sync.Once

	flowsWG    sync.WaitGroup // flow goroutines
	readerDone chan struct{}
	sweepStop  chan struct{}
	sweepDone  chan struct{}
	stopOnce   sync.Once
	done       chan error

	room  fdRoom
	stats udpStats
}

type udpStats struct {
	flows, active, bytesIn, bytesOut, dgIn, dgOut atomic.Uint64
	dropped                                       [len(engine.DropCounts{})]atomic.Uint64
}

var _ engine.Engine = (*udpEngine)(nil)

// NewUDP returns the portable UDP engine for one service; it does not bind
// until Start. It satisfies engine.Factory; invalid options (those
// engine.CheckNewUDP refuses) are an error wrapping engine.ErrInvalidOptions.
func NewUDP(opts engine.Options, p engine.Policy) (engine.Engine, error) {
	if err := engine.CheckNewUDP(opts, p); err != nil {
		return nil, fmt.Errorf("stdengine: udp: %w", err)
	}
	e := &udpEngine{
		opts:       opts,
		policy:     p,
		log:        opts.LoggerFor("std").With("protocol", "udp"),
		flows:      make(map[netip.AddrPort]*flow),
		idle:       make(chan struct{}),
		readerDone: make(chan struct{}),
		sweepStop:  make(chan struct{}),
		sweepDone:  make(chan struct{}),
		done:       make(chan error, 1),
		base:       time.Now(),
		room:       fdRoom{cost: UDPCost()},
	}
	e.obs, _ = p.(engine.FlowObserver)
	return e, nil
}

// serviceBuffer is the receive and send buffer asked for the service's
// socket (the kernel caps it at net.core.rmem_max / wmem_max): bursts from
// many clients wait there rather than being dropped by the kernel.
const serviceBuffer = 4 << 20

// Start binds the service's socket (without SO_REUSEADDR: a port another
// socket holds fails with engine.ErrAddrInUse) and starts serving.
func (e *udpEngine) Start(ctx context.Context) error {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, engine.UDPNetwork(e.opts.Listen), e.opts.Listen.String())
	if err != nil {
		return engine.WrapListenError(e.opts.Listen, err)
	}
	c := pc.(*net.UDPConn)
	raw, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return err
	}
	_ = c.SetReadBuffer(serviceBuffer)
	_ = c.SetWriteBuffer(serviceBuffer)
	e.conn, e.raw = c, raw
	e.addr = c.LocalAddr().(*net.UDPAddr).AddrPort()
	e.v6 = !e.opts.Listen.Addr().Is4()
	if e.opts.Listen.Addr().IsUnspecified() {
		if err := e.enablePktinfo(); err != nil {
			c.Close()
			return fmt.Errorf("listen %s: reading datagram destinations: %w", e.opts.Listen, err)
		}
		e.pktinfo = true
	}
	go e.readLoop()
	go e.sweepLoop()
	e.log.Debug("listening", "address", e.addr.String())
	return nil
}

// enablePktinfo asks the kernel for every datagram's destination address.
func (e *udpEngine) enablePktinfo() error {
	if !e.v6 {
		return ipv4.NewPacketConn(e.conn).SetControlMessage(ipv4.FlagDst, true)
	}
	if err := ipv6.NewPacketConn(e.conn).SetControlMessage(ipv6.FlagDst, true); err != nil {
		return err
	}
	// IPv4 clients of a dual-stack socket: their destination comes as
	// IP_PKTINFO where the system supports it on an IPv6 socket.
	_ = ipv4.NewPacketConn(e.conn).SetControlMessage(ipv4.FlagDst, true)
	return nil
}

// Addr returns the bound address.
func (e *udpEngine) Addr() netip.AddrPort { return e.addr }

// Done never fires: the read loop backs off on every error and only ends
// when Drain or Close closes the socket.
func (e *udpEngine) Done() <-chan error { return e.done }

// Stats returns the counters: Accepted and Active count flows.
func (e *udpEngine) Stats() engine.Stats {
	s := engine.Stats{
		Accepted:     e.stats.flows.Load(),
		Active:       e.stats.active.Load(),
		BytesIn:      e.stats.bytesIn.Load(),
		BytesOut:     e.stats.bytesOut.Load(),
		DatagramsIn:  e.stats.dgIn.Load(),
		DatagramsOut: e.stats.dgOut.Load(),
	}
	for i := range s.Dropped {
		s.Dropped[i] = e.stats.dropped[i].Load()
	}
	return s
}

func (e *udpEngine) drop(r engine.DropReason) { e.stats.dropped[r].Add(1) }

// mono is the time since the engine was made: the flows' timestamps.
func (e *udpEngine) mono() int64 { return int64(time.Since(e.base)) }

func (e *udpEngine) readLoop() {
	defer close(e.readerDone)
	buf := make([]byte, engine.DatagramBuffer)
	var oob []byte
	if e.pktinfo {
		oob = make([]byte, 256)
	}
	var backoff time.Duration
	for {
		var (
			n, oobn int
			from    netip.AddrPort
			err     error
		)
		if e.pktinfo {
			n, oobn, _, from, err = e.conn.ReadMsgUDPAddrPort(buf, oob)
		} else {
			n, from, err = e.conn.ReadFromUDPAddrPort(buf)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ENOBUFS, ENOMEM...: the socket still works once the
			// pressure ends. Back off instead of spinning; the first
			// failure of a run is a warning, the rest debug lines.
			level := slog.LevelDebug
			if backoff == 0 {
				level = slog.LevelWarn
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			e.log.Log(context.Background(), level, "receive failed", "error", err, "backoff_ms", backoff.Milliseconds())
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		e.dispatch(buf[:n], from, oob[:oobn])
	}
}

// dispatch sends one client datagram on its flow, opening the flow when
// the client has none. A flow that ended meanwhile (expiry, ICMP) gives the
// datagram to a new one.
func (e *udpEngine) dispatch(b []byte, from netip.AddrPort, oob []byte) {
	for range 2 {
		e.mu.Lock()
		f := e.flows[from]
		e.mu.Unlock()
		if f == nil {
			if f = e.open(from, oob); f == nil {
				return // refused or dropped, and counted
			}
		}
		if f.toBackend(b) != sendGone {
			return
		}
	}
	e.drop(engine.DropSendError) // its flow ended under it twice (a new one included)
}

// open admits a new flow from the client from, picks its backend and
// connects its socket; nil when the datagram is dropped (counted here or,
// when refused, by the policy).
func (e *udpEngine) open(from netip.AddrPort, oob []byte) *flow {
	now := time.Now()
	client := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	local := e.addr
	if e.pktinfo {
		if dst, ok := packetDst(oob); ok {
			local = netip.AddrPortFrom(dst.Unmap(), e.addr.Port())
		}
	}
	e.mu.Lock()
	draining := e.draining
	e.mu.Unlock()
	if draining {
		e.drop(engine.DropDraining)
		return nil
	}
	// A refused datagram costs no allocation: the policy keeps nothing of
	// a ConnInfo it refused, so the read loop's scratch one serves until
	// Admit says yes.
	ask := &e.scratch
	*ask = engine.ConnInfo{ID: e.nextID.Add(1), Client: client, Peer: client, Local: local, Accepted: now}
	if !e.room.admit(now) {
		// No descriptor for the flow's socket without eating the reserve
		// the rest of bal needs: refused like a flow over the limit.
		e.policy.Refused(ask, engine.RejectLimit)
		return nil
	}
	if !e.policy.Admit(ask) {
		return nil
	}
	ci := new(engine.ConnInfo)
	*ci = *ask
	*ask = engine.ConnInfo{}
	timeout := e.opts.Tunables.Load().UDPIdleTimeout
	var conn *net.UDPConn
	for attempt := 0; ; attempt++ {
		t, ok := e.policy.Pick(ci, attempt)
		if !ok {
			e.drop(engine.DropNoBackend)
			e.policy.Closed(ci, engine.CloseInfo{Reason: engine.CloseNoBackend, Duration: time.Since(now)})
			return nil
		}
		began := time.Now()
		c, err := dialFlow(t.Addr)
		e.policy.DialResult(ci, t, err, time.Since(began))
		if err == nil {
			conn, ci.Backend = c, t
			break
		}
		if engine.IsLocal(err) {
			e.drop(engine.DropLocal)
			e.log.Debug("flow socket failed", "client", client.String(), "backend", t.Name, "error", err)
			e.policy.Closed(ci, engine.CloseInfo{Reason: engine.CloseError, Duration: time.Since(now)})
			return nil
		}
	}
	f, err := newFlow(e, ci, conn, from, timeout)
	if err != nil {
		conn.Close()
		e.drop(engine.DropLocal)
		e.policy.Closed(ci, engine.CloseInfo{Backend: ci.Backend, Reason: engine.CloseError, Duration: time.Since(now)})
		return nil
	}
	e.mu.Lock()
	if e.draining { // raced with Drain or Close
		e.mu.Unlock()
		conn.Close()
		e.drop(engine.DropDraining)
		e.policy.Closed(ci, engine.CloseInfo{Backend: ci.Backend, Reason: engine.CloseDrained, Duration: time.Since(now)})
		return nil
	}
	e.flows[from] = f
	e.flowsWG.Add(1)
	e.mu.Unlock()
	e.stats.flows.Add(1)
	e.stats.active.Add(1)
	go f.run()
	return f
}

// dialFlow opens a flow's socket, connected to the backend: the kernel
// then delivers only datagrams from that address:port to it, and reports
// ICMP errors about it.
func dialFlow(to netip.AddrPort) (*net.UDPConn, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil && errors.Is(err, syscall.EAGAIN) {
		// Linux's way of saying that no ephemeral port is left.
		err = fmt.Errorf("%w: %w", syscall.EADDRNOTAVAIL, err)
	}
	return c, err
}

// packetDst is the destination address in a datagram's control messages
// (IP_PKTINFO, IP_RECVDSTADDR or IPV6_PKTINFO).
func packetDst(oob []byte) (netip.Addr, bool) {
	if len(oob) == 0 {
		return netip.Addr{}, false
	}
	var c6 ipv6.ControlMessage
	if c6.Parse(oob) == nil && c6.Dst != nil {
		if a, ok := netip.AddrFromSlice(c6.Dst); ok && !a.IsUnspecified() {
			return a, true
		}
	}
	var c4 ipv4.ControlMessage
	if c4.Parse(oob) == nil && c4.Dst != nil {
		if a, ok := netip.AddrFromSlice(c4.Dst.To4()); ok && !a.IsUnspecified() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// replyOOB is the control message that makes a reply leave from local
// (wildcard binds only). An IPv4 reply takes IP_PKTINFO also on a
// dual-stack socket: Linux ignores the source of an IPV6_PKTINFO towards an
// IPv4-mapped address.
func replyOOB(local netip.Addr) []byte {
	if local.Is4() {
		return (&ipv4.ControlMessage{Src: local.AsSlice()}).Marshal()
	}
	return (&ipv6.ControlMessage{Src: local.AsSlice()}).Marshal()
}

// sweepPeriod is how often idle flows are looked for: a quarter of the idle
// timeout, between 5 ms and 250 ms, so that a flow ends at most 250 ms
// after its timeout.
func sweepPeriod(timeout time.Duration) time.Duration {
	return min(max(timeout/4, 5*time.Millisecond), 250*time.Millisecond)
}

func (e *udpEngine) sweepLoop() {
	defer close(e.sweepDone)
	t := time.NewTimer(sweepPeriod(e.opts.Tunables.Load().UDPIdleTimeout))
	defer t.Stop()
	var expired []*flow
	for {
		select {
		case <-e.sweepStop:
			return
		case <-t.C:
		}
		now := e.mono()
		e.mu.Lock()
		for _, f := range e.flows {
			if now-f.last.Load() >= f.timeout {
				expired = append(expired, f)
			}
		}
		e.mu.Unlock()
		for i, f := range expired {
			f.end(engine.CloseIdleTimeout, nil)
			expired[i] = nil
		}
		expired = expired[:0]
		t.Reset(sweepPeriod(e.opts.Tunables.Load().UDPIdleTimeout))
	}
}

// forget removes f from the flow table (when it is still f's entry).
func (e *udpEngine) forget(f *flow) {
	e.mu.Lock()
	if e.flows[f.key] == f {
		delete(e.flows, f.key)
	}
	empty := e.draining && len(e.flows) == 0
	e.mu.Unlock()
	if empty {
		e.idleOnce.Do(func() { close(e.idle) })
	}
}

// Drain stops taking new flows at once (their datagrams are dropped,
// counted as engine.DropDraining), lets the existing ones relay until they
// expire, then — or once ctx is done, closing the rest — closes the socket.
// It returns when every flow has ended.
func (e *udpEngine) Drain(ctx context.Context) error {
	e.mu.Lock()
	e.draining = true
	empty := len(e.flows) == 0
	e.mu.Unlock()
	if empty {
		e.idleOnce.Do(func() { close(e.idle) })
	}
	select {
	case <-e.idle:
	case <-ctx.Done():
	}
	e.stop()
	return nil
}

// Close stops serving and ends every flow at once.
func (e *udpEngine) Close() error {
	e.stop()
	return nil
}

// stop closes the socket, ends the flows left (CloseDrained) and waits for
// every goroutine of the engine.
func (e *udpEngine) stop() {
	e.stopOnce.Do(func() {
		e.mu.Lock()
		e.draining = true
		e.mu.Unlock()
		if e.conn == nil { // never started
			return
		}
		_ = e.conn.Close()
		<-e.readerDone // no flow opens after this
		close(e.sweepStop)
		<-e.sweepDone
		e.mu.Lock()
		left := make([]*flow, 0, len(e.flows))
		for _, f := range e.flows {
			left = append(left, f)
		}
		e.mu.Unlock()
		for _, f := range left {
			f.end(engine.CloseDrained, nil)
		}
	})
	e.flowsWG.Wait()
}
