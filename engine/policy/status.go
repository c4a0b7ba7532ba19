package policy

import (
	"net/netip"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/access"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/pool"
)

// Status is one service's live state for `bal status`
// (docs/operations.md#bal-status) and metrics (docs/metrics.md).
type Status struct {
	Service  string
	Protocol config.Protocol
	Method   config.Method
	// Pools are the service's pools in config.Service.Pools order: its
	// routes', then the default pool when it has backends.
	Pools []PoolStatus

	Active int64 // admitted connections open now (all engines)
	// Total counts the admitted connections given a pool since start: the
	// refused ones (no_route included) are not in it, nor, for a service
	// that inspects, those that closed during inspection.
	Total    uint64
	Rejected uint64 // connections refused, every reason (Admit's, and the engines' reported with Refused)

	// RejectedBy is Rejected by reason; every engine.RejectReasons entry is
	// present.
	RejectedBy map[engine.RejectReason]uint64

	NoBackend uint64 // admitted connections closed because no backend was left
	BytesIn   uint64 // client→backend bytes of closed connections
	BytesOut  uint64 // backend→client bytes of closed connections

	LastCheck        time.Time // end of the latest health round; zero before the first
	HealthRounds     uint64
	Protection       ProtectionStatus
	AccessLogDropped uint64 // access log lines dropped because the writer was behind
	LocalFailures    uint64 // connects that failed for lack of local descriptors (not counted against backends)
	// ClosedOnDown counts connections reset because a health check took
	// their backend down (on_backend_down: close); ClosedByAdmin those
	// reset when a close-after delay of drain or maint ran out.
	ClosedOnDown, ClosedByAdmin uint64

	// Inspected counts inspection results; every engine.InspectResults
	// entry is present (all 0 for a service that does not inspect).
	Inspected map[engine.InspectResult]uint64

	// Sources describes the per-source table; nil while no config of the
	// service limited sources.
	Sources *access.SourceStats
}

// PoolStatus is one pool's live state.
type PoolStatus struct {
	Name   string // the route's name, or config.DefaultServiceName
	Route  bool   // false for the default pool
	Method config.Method
	Match  config.Match // zero for the default pool
	// Matched counts the connections routed to this pool since start (a
	// route's count carries over reloads that keep the route's name). Every
	// connection in Status.Total is in exactly one pool's count.
	Matched  uint64
	Backends []BackendStatus
}

// Pool returns the pool named name (a route's name, or
// config.DefaultServiceName), nil when there is none.
func (s Status) Pool(name string) *PoolStatus {
	for i := range s.Pools {
		if s.Pools[i].Name == name {
			return &s.Pools[i]
		}
	}
	return nil
}

// DefaultBackends are the backends of the default pool (none when the
// service has only routes): what the top-level backends of `bal status`
// show for the first service.
func (s Status) DefaultBackends() []BackendStatus {
	if p := s.Pool(config.DefaultServiceName); p != nil && !p.Route {
		return p.Backends
	}
	return nil
}

// BackendStatus is one backend's live state.
type BackendStatus struct {
	Pool      string // name of the pool (PoolStatus.Name) it is listed in
	Address   string // as configured ("host:port"), the metrics label
	Key       string // normalised identity
	Reachable bool   // health after thresholds (true until the first observation)
	Checked   bool   // at least one health check or connect outcome was seen
	Weight    int
	Active    int64
	Total     uint64
	LastCheck time.Time // zero before the first active check
	Counters  pool.Counters
	Streak    uint32    // consecutive failed connects
	Cooldown  time.Time // end of the current cooldown; zero when none
	Addrs     []netip.AddrPort
	Admin     pool.AdminState // ready, drain or maint
	// CheckError is the failure of the latest active check ("reason:
	// detail"); "" after a success or before any.
	CheckError string
}

// ProtectionStatus is protection mode's state.
type ProtectionStatus struct {
	Enabled     bool
	Reason      string // "" when off
	Since       time.Time
	Transitions uint64
}

// Status returns the live state. It takes no lock.
func (p *Policy) Status() Status {
	st := p.st.Load()
	now := p.mono(p.now())
	ps := p.prot.State()
	s := Status{
		Service:          st.svc.Name,
		Protocol:         st.svc.Protocol,
		Method:           st.svc.Method,
		Active:           p.active.Load(),
		Total:            p.total.Load(),
		RejectedBy:       p.rejectedBy(),
		NoBackend:        p.noBackend.Load(),
		BytesIn:          p.bytesIn.Load(),
		BytesOut:         p.bytesOut.Load(),
		LastCheck:        p.checker.LastRound(),
		HealthRounds:     p.checker.Rounds(),
		Protection:       ProtectionStatus{Enabled: ps.On, Reason: string(ps.Reason), Since: ps.Since, Transitions: p.prot.Transitions()},
		AccessLogDropped: p.accessDropped.Load(),
		LocalFailures:    p.localFailures.Load(),
		ClosedOnDown:     p.closedOnDown.Load(),
		ClosedByAdmin:    p.closedByAdmin.Load(),
	}
	for _, n := range s.RejectedBy {
		s.Rejected += n
	}
	s.Inspected = make(map[engine.InspectResult]uint64, len(engine.InspectResults()))
	for _, r := range engine.InspectResults() {
		s.Inspected[r] = p.inspected[r].Load()
	}
	defMatched := p.defaultMatched(s.Total)
	s.Pools = make([]PoolStatus, 0, len(st.pools))
	for _, ps := range st.pools {
		pst := PoolStatus{Name: ps.name, Route: ps.route != nil, Method: ps.method, Backends: make([]BackendStatus, 0, ps.pool.Len())}
		if ps.route != nil {
			pst.Match = ps.route.Match
			pst.Matched = ps.matched.Load()
		} else {
			pst.Matched = defMatched
		}
		for _, b := range ps.pool.Backends() {
			pst.Backends = append(pst.Backends, p.backendStatus(b, now))
		}
		s.Pools = append(s.Pools, pst)
	}
	if ss := st.sources; ss != nil {
		t := ss.Stats()
		s.Sources = &t
	}
	return s
}

// defaultMatched is the default pool's match count: every connection in
// total (read before) that no route took. A routed connection counts in
// toRoutes before it counts in total, so toRoutes (read after total) holds
// every routed connection of total, and some more while they are counted:
// the difference is never above the truth. The largest difference seen is
// reported, so the count never goes back either.
func (p *Policy) defaultMatched(total uint64) uint64 {
	routed := p.toRoutes.Load()
	v := total - min(routed, total)
	for {
		seen := p.defaultSeen.Load()
		if v <= seen {
			return seen
		}
		if p.defaultSeen.CompareAndSwap(seen, v) {
			return v
		}
	}
}

func (p *Policy) backendStatus(b *pool.Backend, now int64) BackendStatus {
	h := b.Health()
	bs := BackendStatus{
		Pool:       b.Pool(),
		Address:    b.Name(),
		Key:        b.Key(),
		Reachable:  h.Up,
		Checked:    h.Known,
		Weight:     b.Weight(),
		Active:     b.Active(),
		Total:      b.Total(),
		LastCheck:  b.LastCheck(),
		Counters:   b.Counters(),
		Streak:     b.Streak(),
		Addrs:      b.Addrs(),
		Admin:      b.Admin(),
		CheckError: b.CheckError(),
	}
	if b.InCooldown(now) {
		bs.Cooldown = p.base.Add(time.Duration(b.CooldownUntil()))
	}
	return bs
}
