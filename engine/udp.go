package engine

import (
	"fmt"
	"net"
	"net/netip"
)

// UDP services run on engines built by a separate factory (server.Engine's
// NewUDP), with the same Engine and Policy interfaces as TCP ones: a flow —
// every datagram from one client address:port, and its backend's replies —
// is what a connection is to a TCP engine (docs/udp.md).
//
// For every datagram from a client that has no flow the engine builds a
// ConnInfo and calls Admit; a refused datagram is dropped and the policy
// counts it (so refusals are counted per datagram), and the client's next
// datagram asks again (a policy keeps nothing of a ConnInfo it refused:
// engines reuse it for the next datagram). An admitted flow gets Pick and
// DialResult like a TCP
// connection (a UDP connect only fails locally); the flow's socket is
// connected to its backend, so only that backend's address:port can reply.
// An ICMP port unreachable on that socket is reported with DialResult as a
// refused connect (ECONNREFUSED) and ends the flow (Closed with
// CloseBackendUnreachable): the client's next datagram starts a new flow
// and picks again. Closed is called once per admitted flow: at expiry
// (CloseIdleTimeout), at the drain deadline or Close (CloseDrained), when
// no backend took it (CloseNoBackend), or after ICMP.

// CloseBackendUnreachable: a UDP flow's backend answered with ICMP port
// unreachable (the flow's socket got ECONNREFUSED).
const CloseBackendUnreachable CloseReason = "backend_unreachable"

// MaxDatagram is the largest UDP payload over IPv4 (65,535 − 20 − 8);
// engines relay datagrams of 0 to MaxDatagram bytes whole.
const MaxDatagram = 65507

// DatagramBuffer is the receive buffer UDP engines use: larger than any
// UDP payload (IPv6 allows 65,527 bytes), so nothing is ever truncated.
const DatagramBuffer = 64 << 10

// DropReason says why a UDP engine dropped a datagram on its own. Refused
// flows' datagrams are not among them: the policy counts those by
// RejectReason.
type DropReason uint8

// Drop reasons, as counted in Stats.Dropped.
const (
	// DropNoBackend: a new flow found no backend that took it.
	DropNoBackend DropReason = iota
	// DropBackendBusy: the flow's socket to its backend could not take the
	// datagram now (its send buffer is full); UDP engines never queue.
	DropBackendBusy
	// DropClientBusy: the service's socket could not take a reply now.
	DropClientBusy
	// DropDraining: a datagram of a new flow arrived while the service
	// drains (existing flows still relay).
	DropDraining
	// DropLocal: bal lacked a descriptor, a local port or memory to open a
	// new flow's socket.
	DropLocal
	// DropSendError: a send failed for another reason (the error is
	// logged at debug level).
	DropSendError

	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropNoBackend:   "no_backend",
	DropBackendBusy: "backend_busy",
	DropClientBusy:  "client_busy",
	DropDraining:    "draining",
	DropLocal:       "local",
	DropSendError:   "send_error",
}

// String returns the reason as counted in status and metrics.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// DropReasons returns every DropReason, in the order status and metrics
// list them.
func DropReasons() []DropReason {
	out := make([]DropReason, numDropReasons)
	for i := range out {
		out[i] = DropReason(i)
	}
	return out
}

// DropCounts are datagrams dropped, indexed by DropReason.
type DropCounts [numDropReasons]uint64

// Add adds o to d.
func (d *DropCounts) Add(o DropCounts) {
	for i := range d {
		d[i] += o[i]
	}
}

// UDPDropNames are the reasons a UDP service's dropped datagrams are
// counted under (status `dropped`, metric bal_udp_dropped_total), in order:
// the refusals that apply to UDP (every RejectReason but
// RejectProxyHeader), then the engine's DropReasons.
func UDPDropNames() []string {
	var out []string
	for _, r := range RejectReasons() {
		if r != RejectProxyHeader {
			out = append(out, string(r))
		}
	}
	for _, r := range DropReasons() {
		out = append(out, r.String())
	}
	return out
}

// UDPDropped merges a UDP service's policy refusals (one per datagram) and
// its engines' drops into counts by UDPDropNames; every name is present.
func UDPDropped(rejected map[RejectReason]uint64, dropped DropCounts) map[string]uint64 {
	out := make(map[string]uint64, len(RejectReasons())+int(numDropReasons))
	for _, r := range RejectReasons() {
		if r != RejectProxyHeader {
			out[string(r)] = rejected[r]
		}
	}
	for _, r := range DropReasons() {
		out[r.String()] = dropped[r]
	}
	return out
}

// FlowObserver is what a policy implements to learn from UDP flows' replies
// (passive health: a backend that answers is alive). UDP engines call
// Replied once per flow, when the first datagram from its backend arrives,
// if their Policy implements it.
type FlowObserver interface {
	Replied(c *ConnInfo)
}

// CheckNewUDP is what every UDP engine's New checks first: CheckNew, and
// tunables a UDP service can have — a positive UDPIdleTimeout, no PROXY
// header either way, no inspection. The error wraps ErrInvalidOptions.
func CheckNewUDP(o Options, p Policy) error {
	if err := CheckNew(o, p); err != nil {
		return err
	}
	t := o.Tunables.Load()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
	}
	switch {
	case t.UDPIdleTimeout <= 0:
		return bad("Tunables.UDPIdleTimeout %v must be positive on UDP", t.UDPIdleTimeout)
	case t.ProxyProtocol != ProxyOff, t.ProxyIn != ProxyInOff:
		return bad("PROXY headers are not available on UDP")
	case t.Inspect:
		return bad("Tunables.Inspect is not available on UDP")
	}
	return nil
}

// ProbeBindUDP checks that the UDP address addr is free by binding it
// without SO_REUSEADDR or SO_REUSEPORT and closing at once, like ProbeBind
// for TCP: a port another socket holds fails with an error wrapping
// ErrAddrInUse. Port 0 always succeeds.
func ProbeBindUDP(addr netip.AddrPort) error {
	if addr.Port() == 0 {
		return nil
	}
	c, err := net.ListenUDP(UDPNetwork(addr), net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return WrapListenError(addr, err)
	}
	return c.Close()
}

// UDPNetwork is the network a UDP engine listens on for addr: "udp4" for an
// IPv4 address (0.0.0.0 takes IPv4 only), "udp" for an IPv6 one (:: takes
// IPv4 too, as IPv4-mapped addresses, like a TCP listener on ::).
func UDPNetwork(addr netip.AddrPort) string {
	if addr.Addr().Is4() {
		return "udp4"
	}
	return "udp"
}
