package pool

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
)

// Counters are the connect failures of one backend by reason.
type Counters struct {
	Timeout, Refused, Other uint64
}

// Backend is the live state of one configured backend. All methods are safe
// for concurrent use and never block.
type Backend struct {
	key  string
	name string
	pool string // name of the pool holding it; "" outside a pool
	host string
	port uint16
	ip   bool // host is an IP literal: resolved once, never by DNS

	weight atomic.Int32
	addrs  atomic.Pointer[[]netip.AddrPort]

	health    atomic.Uint64          // packed Health
	admin     atomic.Uint32          // AdminState
	lastCheck atomic.Int64           // wall-clock UnixNano of the last active check, 0 = never
	checkErr  atomic.Pointer[string] // failure of the last active check; nil after a success

	active atomic.Int64
	total  atomic.Uint64

	failTimeout atomic.Uint64
	failRefused atomic.Uint64
	failOther   atomic.Uint64

	streak        atomic.Uint32 // consecutive failed connects (all addresses failed)
	cooldownUntil atomic.Int64  // monotonic nanoseconds, 0 = none
}

// NewBackend returns the state of a newly configured backend: health unknown,
// counters zero. An IP literal host has its address set here; a hostname
// has none until SetAddrs (the health checker resolves it every interval).
func NewBackend(c config.Backend) *Backend {
	b := &Backend{key: c.Key(), name: c.Address(), host: c.Host, port: uint16(c.Port)}
	b.SetWeight(c.Weight)
	b.health.Store(Unknown.pack())
	if a, err := netip.ParseAddr(c.Host); err == nil {
		b.ip = true
		b.SetAddrs([]netip.AddrPort{netip.AddrPortFrom(a.Unmap(), b.port)})
	}
	return b
}

// Key is the identity across reloads (config.Backend.Key).
func (b *Backend) Key() string { return b.key }

// Name is the backend as configured ("host:port"), the label of logs,
// status and metrics.
func (b *Backend) Name() string { return b.name }

// Pool is the name of the pool the backend belongs to ("" for one made
// with NewBackend alone, such as a probe's).
func (b *Backend) Pool() string { return b.pool }

// Host is the configured host (brackets removed).
func (b *Backend) Host() string { return b.host }

// Port is the configured port.
func (b *Backend) Port() uint16 { return b.port }

// NeedsResolve reports whether the host is a name (resolved by DNS) rather
// than an IP literal.
func (b *Backend) NeedsResolve() bool { return !b.ip }

// Weight is the current weight (≥ 1).
func (b *Backend) Weight() int { return int(b.weight.Load()) }

// SetWeight changes the weight (on reload); values below 1 count as 1.
func (b *Backend) SetWeight(w int) { b.weight.Store(int32(min(max(w, 1), 1<<20))) }

// Addrs returns the resolved addresses in the order to try them; empty while
// a hostname was never resolved. The slice must not be modified.
func (b *Backend) Addrs() []netip.AddrPort {
	if p := b.addrs.Load(); p != nil {
		return *p
	}
	return nil
}

// SetAddrs replaces the resolved addresses. The slice is kept: the caller
// must not modify it afterwards.
func (b *Backend) SetAddrs(a []netip.AddrPort) { b.addrs.Store(&a) }

// Health returns the rise/fall state.
func (b *Backend) Health() Health { return unpack(b.health.Load()) }

// Up reports whether the backend is eligible for phase-1 picks (healthy, or
// not yet checked).
func (b *Backend) Up() bool { return b.health.Load()&bitUp != 0 }

// Observe feeds one health outcome (an active check or a proxy connect) to
// the rise/fall machine with the current thresholds and returns the
// transition. A backend that turns up again has its cooldown and failover
// streak cleared.
func (b *Backend) Observe(ok bool, rise, fall int) Change {
	for {
		old := b.health.Load()
		h, ch := unpack(old).Observe(ok, rise, fall)
		if nv := h.pack(); nv == old || b.health.CompareAndSwap(old, nv) {
			if ch == ChangeUp {
				b.cooldownUntil.Store(0)
				b.streak.Store(0)
			}
			return ch
		}
	}
}

// SetLastCheck records the time of the latest active health check.
func (b *Backend) SetLastCheck(t time.Time) { b.lastCheck.Store(t.UnixNano()) }

// LastCheck is the time of the latest active health check; zero if none.
func (b *Backend) LastCheck() time.Time {
	if n := b.lastCheck.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// InCooldown reports whether the backend is cooling down at monotonic time now.
func (b *Backend) InCooldown(now int64) bool { return now < b.cooldownUntil.Load() }

// CooldownUntil is the monotonic time the cooldown ends; 0 when none was set.
func (b *Backend) CooldownUntil() int64 { return b.cooldownUntil.Load() }

// Streak is the number of consecutive failed connects (failover streak).
func (b *Backend) Streak() uint32 { return b.streak.Load() }

// CountFailure counts one failed connect attempt by reason.
func (b *Backend) CountFailure(r engine.FailReason) {
	switch r {
	case engine.FailTimeout:
		b.failTimeout.Add(1)
	case engine.FailRefused:
		b.failRefused.Add(1)
	default:
		b.failOther.Add(1)
	}
}

// Failed records that a connect to the backend failed (every address
// tried): the streak grows and the backend cools down for k.Duration(streak)
// from monotonic time now. It returns the cooldown length.
func (b *Backend) Failed(now int64, k Backoff) time.Duration {
	s := b.streak.Add(1)
	if s == 0 { // wrapped: stay at the cap
		s = b.streak.Add(^uint32(0))
	}
	d := k.Duration(s)
	until := now + int64(d)
	if until < now {
		until = 1<<63 - 1
	}
	b.cooldownUntil.Store(until)
	return d
}

// Connected records a successful connect: the streak and cooldown reset
// (Succeeded), and the connection counts as active (until Release) and in
// the total (Opened).
func (b *Backend) Connected() {
	b.Succeeded()
	b.Opened()
}

// Opened counts a connection, or a UDP flow, as active (until Release) and
// in the total, without saying anything about the backend's health (a UDP
// flow's socket connects whether or not anything listens).
func (b *Backend) Opened() {
	b.active.Add(1)
	b.total.Add(1)
}

// Succeeded records that the backend answered (a connect, or a UDP flow's
// first reply): the failover streak and the cooldown reset.
func (b *Backend) Succeeded() {
	b.streak.Store(0)
	b.cooldownUntil.Store(0)
}

// Release ends a connection counted by Connected.
func (b *Backend) Release() { b.active.Add(-1) }

// Active is the number of open connections relayed to the backend.
func (b *Backend) Active() int64 { return b.active.Load() }

// Total is the number of connections ever relayed to the backend.
func (b *Backend) Total() uint64 { return b.total.Load() }

// Counters returns the connect failures by reason.
func (b *Backend) Counters() Counters {
	return Counters{Timeout: b.failTimeout.Load(), Refused: b.failRefused.Load(), Other: b.failOther.Load()}
}
