package policy

import (
	"context"
	"log/slog"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/access"
	"github.com/bal-lb/bal/engine/balance"
	"github.com/bal-lb/bal/engine/health"
	"github.com/bal-lb/bal/engine/pool"
)

// maxTriesProtected is how many backends one connection may try while
// protection mode is on (docs/design.md#protection-mode).
const maxTriesProtected = 2

// connState is one connection's routing and failover bookkeeping, kept in
// ConnInfo.PolicyState from Admit to Closed and recycled afterwards. It is
// also the balance.View of the connection's picks.
type connState struct {
	st     *state     // the config as of Admit
	ps     *poolState // the connection's pool: indexes below refer to ps.pool
	routed bool       // the pool was chosen (ps nil: no route)
	ticket access.Ticket
	hash   uint64 // client hash (source_hash only)

	now   int64 // monotonic time of the pick in progress
	phase uint8 // 1: healthy backends; 2: unhealthy ones, once each

	small [2]uint64 // tried backends (bitset) when the pool has ≤ 128
	big   []uint64  // tried backends for larger pools (kept across reuse)
	tries int       // backends tried

	cur       *pool.Backend // backend of the last Pick
	addr      int           // index of the address of cur being tried
	pending   bool          // cur failed at addr and has more addresses to try
	connected *pool.Backend // backend counted by Connected, released by Closed
	done      bool          // Pick returned false
}

func (cs *connState) reset(st *state) {
	big := cs.big[:0]
	*cs = connState{st: st, big: big}
}

// setPool routes the connection to ps.
func (cs *connState) setPool(ps *poolState, hash uint64) {
	cs.ps, cs.routed, cs.hash = ps, true, hash
	if n := ps.pool.Len(); n > 128 {
		words := (n + 63) / 64
		if cap(cs.big) < words {
			cs.big = make([]uint64, words)
		}
		cs.big = cs.big[:words]
		clear(cs.big)
	} else {
		cs.big = cs.big[:0]
	}
}

func (cs *connState) bits() []uint64 {
	if len(cs.big) > 0 {
		return cs.big
	}
	return cs.small[:]
}

func (cs *connState) tried(i int) bool { return cs.bits()[i>>6]&(1<<(i&63)) != 0 }
func (cs *connState) markTried(i int)  { cs.bits()[i>>6] |= 1 << (i & 63) }

// Eligible implements balance.View: not tried yet by this connection, in
// service (not drained nor in maintenance), not cooling down, with an
// address, and healthy in phase 1 or unhealthy in phase 2 (in a passive
// pool every backend is phase 1: only its cooldown keeps it out).
func (cs *connState) Eligible(i int) bool {
	if cs.tried(i) {
		return false
	}
	b := cs.ps.pool.At(i)
	return (b.Up() || cs.ps.passive) == (cs.phase == 1) && b.InService() && !b.InCooldown(cs.now) && len(b.Addrs()) > 0
}

// Active implements balance.View.
func (cs *connState) Active(i int) int64 { return cs.ps.pool.At(i).Active() }

// connOf returns the connection's state; an engine that skipped Admit gets
// a fresh one (routed at once unless the service inspects, counted nowhere)
// rather than a crash.
func (p *Policy) connOf(c *engine.ConnInfo) *connState {
	if cs, ok := c.PolicyState.(*connState); ok && cs != nil {
		return cs
	}
	cs := new(connState)
	st := p.st.Load()
	cs.reset(st)
	if st.routing != routeInspect {
		if ps := st.match(c); ps != nil {
			cs.setPool(ps, balanceHash(c))
		} else {
			cs.routed = true
		}
	}
	c.PolicyState = cs
	return cs
}

func balanceHash(c *engine.ConnInfo) uint64 { return balance.HashAddr(c.Client.Addr()) }

// Pick returns the next backend address to try (docs/design.md#connect-and-failover): the next
// address of a hostname backend whose previous address failed; else the
// balancer's pick among healthy backends not cooling down and not tried;
// else an unhealthy backend not cooling down and not tried, in config
// order; else false: every backend is unavailable (recorded for protection
// mode; the engine closes the client). While protection mode is on, a
// connection tries at most two backends.
func (p *Policy) Pick(c *engine.ConnInfo, _ int) (engine.Target, bool) {
	cs := p.connOf(c)
	if !cs.routed && !p.Route(c) {
		return engine.Target{}, false
	}
	if cs.done || cs.connected != nil {
		return engine.Target{}, false
	}
	if cs.ps == nil { // a service without any backend
		cs.done = true
		p.noBackend.Add(1)
		return engine.Target{}, false
	}
	t := p.now()
	now := p.mono(t)
	p.prot.Tick(t)
	if cs.pending {
		cs.pending = false
		if a := cs.cur.Addrs(); cs.addr+1 < len(a) {
			cs.addr++
			return engine.Target{Addr: a[cs.addr], Name: cs.cur.Name(), Ref: cs.cur}, true
		}
		// The address list shrank meanwhile: the backend failed as a whole.
		p.backendFailed(cs.cur, now, nil)
	}
	cs.now = now
	if cs.tries >= maxTriesProtected && p.prot.On() {
		if !p.anyLeft(cs) {
			// Every backend really was tried (or is cooling down): that is
			// an exhausted client, whatever the cap says.
			p.prot.Exhausted(t)
			return p.noneLeft(cs, t, "all_backends_unavailable")
		}
		return p.noneLeft(cs, t, "protection_max_tries")
	}
	for {
		i, ok := p.choose(cs)
		if !ok {
			if cs.tries == 0 && !anyInService(cs.ps) {
				// An operator took every backend out: no backend failed,
				// so protection mode is not fed.
				return p.noneLeft(cs, t, "no_backend_in_service")
			}
			p.prot.Exhausted(t)
			return p.noneLeft(cs, t, "all_backends_unavailable")
		}
		cs.markTried(i)
		b := cs.ps.pool.At(i)
		a := b.Addrs()
		if len(a) == 0 {
			continue // its addresses vanished since Eligible looked
		}
		cs.tries++
		cs.cur, cs.addr = b, 0
		return engine.Target{Addr: a[0], Name: b.Name(), Ref: b}, true
	}
}

// anyInService reports whether any backend of ps takes new connections as
// far as its admin state goes.
func anyInService(ps *poolState) bool {
	for _, b := range ps.pool.Backends() {
		if b.InService() {
			return true
		}
	}
	return false
}

// anyLeft reports whether any backend is still eligible for cs in either
// phase, without picking one.
func (p *Policy) anyLeft(cs *connState) bool {
	for _, ph := range [2]uint8{1, 2} {
		cs.phase = ph
		for j := range cs.ps.pool.Len() {
			if cs.Eligible(j) {
				return true
			}
		}
	}
	return false
}

// choose returns the balancer's pick among healthy eligible backends
// (phase 1), else the first unhealthy eligible one in config order (phase 2).
func (p *Policy) choose(cs *connState) (int, bool) {
	cs.phase = 1
	if i, ok := cs.ps.balancer().Pick(cs, cs.hash); ok {
		return i, true
	}
	cs.phase = 2
	for j := range cs.ps.pool.Len() {
		if cs.Eligible(j) {
			return j, true
		}
	}
	return p.lastResort(cs)
}

// lastResort picks, for a connection that has not tried any backend yet,
// the backend whose cooldown ends first (a healthy one if any). Without it a
// client would be refused without a single attempt whenever every backend
// is cooling down — and backends that refuse only some connects (half of
// them, say) keep each other cooling down and would fail most clients. A
// client still never waits on more than this one extra attempt.
func (p *Policy) lastResort(cs *connState) (int, bool) {
	if cs.tries > 0 {
		return 0, false
	}
	best, bestUp, bestUntil := -1, false, int64(0)
	for j := range cs.ps.pool.Len() {
		b := cs.ps.pool.At(j)
		if cs.tried(j) || !b.InService() || len(b.Addrs()) == 0 {
			continue
		}
		up, until := b.Up(), b.CooldownUntil()
		if best < 0 || (up && !bestUp) || (up == bestUp && until < bestUntil) {
			best, bestUp, bestUntil = j, up, until
		}
	}
	return best, best >= 0
}

func (p *Policy) noneLeft(cs *connState, _ time.Time, why string) (engine.Target, bool) {
	cs.done = true
	p.noBackend.Add(1)
	if p.logger().Enabled(context.Background(), slog.LevelDebug) {
		p.logger().LogAttrs(context.Background(), slog.LevelDebug, "no backend left for connection",
			slog.String("pool", cs.ps.name), slog.String("reason", why), slog.Int("tried", cs.tries))
	}
	return engine.Target{}, false
}

// DialResult records the outcome of a connect to t: success counts the
// connection on the backend, resets its streak and cooldown and feeds the
// rise/fall machine and protection mode; failure counts it by reason, feeds
// protection mode and — once every address of the backend failed — puts
// the backend in cooldown max(min(initial·2^(streak−1), max), cooldown)
// (doubled while protection is on) and feeds the rise/fall machine.
//
// On a UDP service a connect says nothing about the backend: success only
// counts the flow on it, and the flow's first reply (Replied) is the
// success. An ICMP port unreachable on an open flow comes as a refused
// failure of its backend.
func (p *Policy) DialResult(c *engine.ConnInfo, t engine.Target, err error, _ time.Duration) {
	b, _ := t.Ref.(*pool.Backend)
	if b == nil {
		return
	}
	cs := p.connOf(c)
	now := p.now()
	if err == nil && cs.st.udp {
		b.Opened()
		cs.connected, cs.pending = b, false
		return
	}
	if err == nil {
		b.Connected()
		cs.connected, cs.pending = b, false
		st := p.st.Load()
		if ch := b.Observe(true, st.rise, st.fall); ch != pool.ChangeNone {
			health.LogChange(st.log, b, ch, "proxy", nil)
		}
		p.prot.Success(now)
		if cs.tries > 1 && p.logger().Enabled(context.Background(), slog.LevelDebug) {
			p.logger().LogAttrs(context.Background(), slog.LevelDebug, "failover succeeded",
				slog.String("backend", b.Name()), slog.String("pool", b.Pool()), slog.Int("tried", cs.tries))
		}
		return
	}
	if cause := engine.LocalCause(err); cause != "" {
		// bal itself is out of descriptors, ports or memory: nothing is
		// known about the backend, so it is neither counted, cooled down
		// nor marked down. The engine resets the client.
		cs.pending = false
		p.localFailures.Add(1)
		p.localLog.note(p.logger(), localIndex(cause), now, c.Client)
		return
	}
	r := engine.Classify(err)
	b.CountFailure(r)
	p.prot.Failure(now, r)
	if p.logger().Enabled(context.Background(), slog.LevelDebug) {
		p.logger().LogAttrs(context.Background(), slog.LevelDebug, "backend connect failed",
			slog.String("backend", b.Name()), slog.String("pool", b.Pool()), slog.String("address", t.Addr.String()),
			slog.String("reason", r.String()), slog.String("error", err.Error()))
	}
	if cs.connected == nil && cs.cur == b && cs.addr+1 < len(b.Addrs()) {
		cs.pending = true // try its next address before giving up on it
		return
	}
	p.backendFailed(b, p.mono(now), err)
}

// Replied implements engine.FlowObserver: a UDP flow's backend answered,
// which is the success its connect could not tell — the streak and
// cooldown reset, the rise/fall machine and protection mode see a success.
func (p *Policy) Replied(c *engine.ConnInfo) {
	cs, _ := c.PolicyState.(*connState)
	if cs == nil || cs.connected == nil {
		return
	}
	b := cs.connected
	b.Succeeded()
	st := p.st.Load()
	if ch := b.Observe(true, st.rise, st.fall); ch != pool.ChangeNone {
		health.LogChange(st.log, b, ch, "flow", nil)
	}
	p.prot.Success(p.now())
}

// backendFailed puts b in cooldown and counts a passive health failure.
func (p *Policy) backendFailed(b *pool.Backend, now int64, err error) {
	st := p.st.Load()
	k := st.backoff
	if p.prot.On() {
		k = k.Doubled()
	}
	b.Failed(now, k)
	if ch := b.Observe(false, st.rise, st.fall); ch != pool.ChangeNone {
		health.LogChange(st.log, b, ch, "proxy", err)
	}
}

// Closed ends the connection: the active counts (the service's, the
// backend's, the source's) go down, bytes are counted, a connection that
// closed during inspection counts as InspectClosed, and with
// runtime.access_log one line is queued for the access log writer (dropped
// and counted if it is behind; Closed never blocks).
func (p *Policy) Closed(c *engine.ConnInfo, s engine.CloseInfo) {
	p.active.Add(-1)
	p.bytesIn.Add(uint64(max(s.BytesIn, 0)))
	p.bytesOut.Add(uint64(max(s.BytesOut, 0)))
	cs, _ := c.PolicyState.(*connState)
	if cs != nil {
		if cs.connected != nil {
			cs.connected.Release()
		}
		if cs.st.sources != nil {
			cs.st.sources.Release(cs.ticket)
		}
		if !cs.routed && c.Hello.Result == engine.InspectClosed {
			p.countInspect(engine.InspectClosed)
		}
	}
	if st := p.st.Load(); st.accessLog {
		e := accessEntry{id: c.ID, client: c.Client, peer: c.Peer, backend: s.Backend.Name, in: s.BytesIn, out: s.BytesOut, d: s.Duration, reason: s.Reason, inspect: c.Hello.Result, sni: c.Hello.SNI}
		if cs != nil && cs.ps != nil {
			e.route = cs.ps.name
		}
		select {
		case p.access <- e:
		default:
			p.accessDropped.Add(1)
		}
	}
	if cs != nil {
		c.PolicyState = nil
		cs.st, cs.ps, cs.cur, cs.connected = nil, nil, nil, nil
		p.conns.Put(cs)
	}
}

// logger is the current config's logger (with the service name).
func (p *Policy) logger() *slog.Logger { return p.st.Load().log }
