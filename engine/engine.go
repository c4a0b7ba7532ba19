package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"
)

// Target is one dialable backend address chosen by a Policy.
//
// Addr is already resolved: engines never do DNS. Name is the backend as
// configured ("host:port"), for logs. Ref is opaque to the engine; the policy
// gets it back in DialResult and Closed (it is typically a pointer to the
// policy's own per-backend state, so boxing it does not allocate).
type Target struct {
	Addr netip.AddrPort
	Name string
	Ref  any
}

// ConnInfo describes one accepted client connection. The engine fills ID,
// Peer, Client, Local and Accepted before calling Admit (Client and Local
// from the PROXY header when the service reads one), Hello before calling
// Route, and Backend once a connect succeeded. PolicyState belongs to the
// Policy from Admit to Closed (failover bookkeeping); the engine never
// reads it.
type ConnInfo struct {
	ID uint64
	// Client is the client's address: the TCP peer, or the source of the
	// PROXY header an upstream balancer sent.
	Client netip.AddrPort
	// Peer is the TCP peer: the client itself, or the upstream balancer
	// when the service reads a PROXY header.
	Peer netip.AddrPort
	// Local is the address the client connected to (the PROXY header's
	// destination when the header carries one).
	Local    netip.AddrPort
	Accepted time.Time
	// Hello is what inspecting the client's first bytes found; zero when
	// the service does not inspect.
	Hello   Hello
	Backend Target

	PolicyState any
}

// CloseReason says why a proxied connection ended.
type CloseReason string

// Close reasons, as they appear in the access log (`reason` key).
const (
	// CloseDone: both directions finished with a FIN (the normal end).
	CloseDone CloseReason = "done"
	// CloseClientReset: the client reset the connection (or a write to it failed).
	CloseClientReset CloseReason = "client_reset"
	// CloseBackendReset: the backend reset the connection (or a write to it failed).
	CloseBackendReset CloseReason = "backend_reset"
	// CloseIdleTimeout: no byte moved in either direction for the idle timeout.
	CloseIdleTimeout CloseReason = "idle_timeout"
	// CloseNoBackend: every backend the policy offered failed to connect.
	CloseNoBackend CloseReason = "all_backends_unavailable"
	// CloseDrained: still open when the drain deadline passed, or force-closed.
	CloseDrained CloseReason = "drain_timeout"
	// CloseError: a local error (e.g. out of file descriptors while connecting).
	CloseError CloseReason = "error"
	// CloseNoRoute: after inspection no route matched and the service has
	// no default pool; the client was reset.
	CloseNoRoute CloseReason = "no_route"
	// CloseClientGone: the client closed or reset its connection before a
	// backend was chosen (during inspection).
	CloseClientGone CloseReason = "client_closed"
)

// CloseInfo is reported once per admitted connection, when it is closed.
type CloseInfo struct {
	// Backend is the connected backend; zero when no connect succeeded.
	Backend Target
	// BytesIn counts client→backend payload bytes (PROXY header excluded),
	// BytesOut backend→client.
	BytesIn, BytesOut int64
	Reason            CloseReason
	Duration          time.Duration
}

// RejectReason says why a client connection was refused (reset at once,
// never relayed). The policy counts every refusal by reason.
type RejectReason string

// Reject reasons, as counted in status and metrics.
const (
	// RejectLimit: no capacity — max_concurrent_connections is reached (the
	// policy's Admit), or the engine has no descriptor headroom left
	// (reported by the engine through Policy.Refused).
	RejectLimit RejectReason = "limit"
	// RejectACL: the client's address is denied, or not allowed (access
	// control).
	RejectACL RejectReason = "acl"
	// RejectSourceLimit: the client's source has too many connections open
	// (access control, per-source connection limit).
	RejectSourceLimit RejectReason = "source_limit"
	// RejectSourceRate: the client's source opens connections too fast
	// (access control, per-source rate).
	RejectSourceRate RejectReason = "source_rate"
	// RejectProxyHeader: the PROXY header expected from an upstream
	// balancer is missing, malformed, late, or comes from an untrusted
	// address (access control, client identity).
	RejectProxyHeader RejectReason = "proxy_header"
	// RejectNoRoute: no route matches the connection and there is no
	// default pool (routing).
	RejectNoRoute RejectReason = "no_route"
)

// RejectReasons returns every RejectReason, in the order status and
// metrics list them.
func RejectReasons() []RejectReason {
	return []RejectReason{RejectLimit, RejectACL, RejectSourceLimit, RejectSourceRate, RejectProxyHeader, RejectNoRoute}
}

// Policy is everything an engine asks the upper layers. Implementations are
// goroutine-safe and never block: engines call them from event loops.
//
// For every connection the engine calls Admit once, when the client's
// address is final (after the PROXY header, when the service reads one). If
// Admit returns false the engine resets the client (SO_LINGER 0) and calls
// nothing else: the policy counted the refusal itself. If it returns true
// and the service inspects (Tunables.Inspect), the engine reads the client's
// first bytes, fills Hello and calls Route once; a false Route means no
// route: the engine resets the client. Then the engine calls Pick (attempt
// 0, 1, ...) and DialResult after each connect until one succeeds or Pick
// returns false. Closed is called exactly once for every admitted
// connection, whatever happened after Admit.
//
// A connection the engine refuses on its own, before Admit (no descriptor
// headroom; a missing, malformed, late or untrusted PROXY header), is
// reported with Refused instead, and nothing else is called for it.
type Policy interface {
	Admit(c *ConnInfo) bool
	// Refused reports a connection the engine reset without calling Admit,
	// for reason r (RejectLimit or RejectProxyHeader). c has Peer, Client,
	// Local and Accepted filled when the engine knows them.
	Refused(c *ConnInfo, r RejectReason)
	// Route chooses the pool of an inspecting service's connection from
	// c.Hello (and c.Client); false means no route matched and there is no
	// default pool (counted as RejectNoRoute by the policy). A service that
	// does not inspect is routed inside Admit.
	Route(c *ConnInfo) bool
	Pick(c *ConnInfo, attempt int) (Target, bool)
	DialResult(c *ConnInfo, t Target, err error, rtt time.Duration)
	Closed(c *ConnInfo, s CloseInfo)
}

// ProxyProtocol selects the PROXY protocol header sent to backends.
type ProxyProtocol uint8

// PROXY protocol versions.
const (
	ProxyOff ProxyProtocol = iota
	ProxyV1
	ProxyV2
)

// Tunables are the engine-owned settings that a reload may change. Engines
// read them once per connection (timeouts are fixed for a connection's life
// from the moment they are read) via Options.Tunables.Load().
type Tunables struct {
	ConnectTimeout time.Duration // per connect attempt
	IdleTimeout    time.Duration // no byte in either direction; 0 = none
	ProxyProtocol  ProxyProtocol // header sent to the backend

	// ProxyIn is the PROXY header the service reads from its peers before
	// anything else; ProxyInOff reads none. Only peers in Trusted may send
	// one (an untrusted peer is refused, RejectProxyHeader), and the whole
	// header must arrive within ProxyHeaderTimeout.
	ProxyIn            ProxyIn
	ProxyHeaderTimeout time.Duration
	Trusted            AddrSet

	// Inspect makes the engine read the client's TLS ClientHello (at most
	// MaxInspect bytes, within InspectTimeout) before Route.
	Inspect        bool
	InspectTimeout time.Duration

	// UDPIdleTimeout ends a UDP flow after that long without a datagram in
	// either direction (UDP engines only).
	UDPIdleTimeout time.Duration
}

// AddrSet is a set of addresses, such as trusted_proxies
// (*access.PrefixSet implements it). Contains is called on the data path:
// it must be goroutine-safe and must not allocate.
type AddrSet interface {
	Contains(a netip.Addr) bool
}

// TunableStore holds the current Tunables; Store is called on reload.
type TunableStore struct{ p atomic.Pointer[Tunables] }

// NewTunableStore returns a store holding t.
func NewTunableStore(t Tunables) *TunableStore {
	s := &TunableStore{}
	s.Store(t)
	return s
}

// Load returns the current tunables. Never nil once stored.
func (s *TunableStore) Load() *Tunables { return s.p.Load() }

// Store replaces the tunables.
func (s *TunableStore) Store(t Tunables) { s.p.Store(&t) }

// Options configure one engine instance: one listening address.
type Options struct {
	// Listen is the address to bind (port 0 picks a free port; see Addr).
	Listen netip.AddrPort
	// Backlog is the listen(2) backlog; 0 means the kernel maximum (somaxconn).
	Backlog int
	// Loops is the number of event loops (gnet engine only); 0 means GOMAXPROCS.
	Loops int
	// Tunables is shared with the runtime; required.
	Tunables *TunableStore
	// Logger receives the engine's own log lines; nil discards them.
	Logger *slog.Logger
}

// Validate reports the first unusable field of o, wrapping
// ErrInvalidOptions: every engine's New calls it, so that engines agree on
// what they accept and none fills in a default of its own.
func (o Options) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
	}
	switch {
	case !o.Listen.IsValid():
		return bad("Listen %v is not an address", o.Listen)
	case o.Backlog < 0:
		return bad("Backlog %d is negative (0 means the kernel maximum)", o.Backlog)
	case o.Loops < 0:
		return bad("Loops %d is negative (0 means GOMAXPROCS)", o.Loops)
	case o.Tunables == nil || o.Tunables.Load() == nil:
		return bad("Tunables is required")
	}
	t := o.Tunables.Load()
	switch {
	case t.ConnectTimeout <= 0:
		return bad("Tunables.ConnectTimeout %v must be positive", t.ConnectTimeout)
	case t.IdleTimeout < 0:
		return bad("Tunables.IdleTimeout %v is negative (0 means none)", t.IdleTimeout)
	case t.ProxyProtocol > ProxyV2:
		return bad("Tunables.ProxyProtocol %d is not off, v1 or v2", t.ProxyProtocol)
	case t.ProxyIn > ProxyInAny:
		return bad("Tunables.ProxyIn %d is not off, v1, v2 or any", t.ProxyIn)
	case t.ProxyIn != ProxyInOff && t.ProxyHeaderTimeout <= 0:
		return bad("Tunables.ProxyHeaderTimeout %v must be positive when ProxyIn is on", t.ProxyHeaderTimeout)
	case t.ProxyIn != ProxyInOff && t.Trusted == nil:
		return bad("Tunables.Trusted is required when ProxyIn is on")
	case t.Inspect && t.InspectTimeout <= 0:
		return bad("Tunables.InspectTimeout %v must be positive when Inspect is on", t.InspectTimeout)
	case t.UDPIdleTimeout < 0:
		return bad("Tunables.UDPIdleTimeout %v is negative", t.UDPIdleTimeout)
	}
	return nil
}

// LoggerFor is the logger an engine named name logs with: Logger (or one
// that discards) with the key engine=name on every line.
func (o Options) LoggerFor(name string) *slog.Logger {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return log.With("engine", name)
}

// CheckNew is what every engine's New checks first: o is valid (Validate)
// and p is not nil. The error wraps ErrInvalidOptions.
func CheckNew(o Options, p Policy) error {
	if p == nil {
		return fmt.Errorf("%w: nil Policy", ErrInvalidOptions)
	}
	return o.Validate()
}

// Stats are lock-free counters of one engine since Start.
type Stats struct {
	Accepted uint64 // connections accepted and admitted (the policy counts refusals)
	Active   uint64 // connections open now (connecting or relaying)
	BytesIn  uint64 // client→backend bytes relayed
	BytesOut uint64 // backend→client bytes relayed

	// UDP engines only (Accepted and Active count flows there):
	// datagrams relayed each way, and the datagrams the engine dropped on
	// its own, by DropReason (the policy counts refused flows' datagrams).
	DatagramsIn, DatagramsOut uint64
	Dropped                   DropCounts
}

// Engine accepts client connections on one address and relays each to a
// backend chosen by the Policy.
type Engine interface {
	// Start binds the listener(s) and starts serving. It returns an error
	// (wrapping ErrAddrInUse when the address is taken) without leaving
	// anything running if any bind fails.
	Start(ctx context.Context) error
	// Addr is the bound address (useful when Options.Listen had port 0).
	Addr() netip.AddrPort
	// Drain stops accepting at once (new connections are refused), lets open
	// connections finish until ctx is done, then closes the rest. It returns
	// when every connection is closed.
	Drain(ctx context.Context) error
	// Close stops accepting and force-closes every connection at once.
	Close() error
	// Stats returns the counters.
	Stats() Stats
	// Done yields one value and is closed if the engine stops serving on its
	// own (a listener died). It never fires after Drain or Close was called.
	Done() <-chan error
}

// Factory builds an engine. Engine packages export one as `New`.
type Factory func(opts Options, p Policy) (Engine, error)
