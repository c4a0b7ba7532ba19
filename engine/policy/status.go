package policy

import (
	"net/netip"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/pool"
)

// Status is the live state for `bal status` (docs/operations.md#bal-status) and metrics (docs/metrics.md).
type Status struct {
	Method   config.Method
	Backends []BackendStatus // config order

	Active   int64  // admitted connections open now (all engines)
	Total    uint64 // admitted connections since start (rejected ones excluded)
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
}

// BackendStatus is one backend's live state.
type BackendStatus struct {
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
		Method:           st.snap.Method,
		Backends:         make([]BackendStatus, 0, st.pool.Len()),
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
	}
	for _, n := range s.RejectedBy {
		s.Rejected += n
	}
	for _, b := range st.pool.Backends() {
		h := b.Health()
		bs := BackendStatus{
			Address:   b.Name(),
			Key:       b.Key(),
			Reachable: h.Up,
			Checked:   h.Known,
			Weight:    b.Weight(),
			Active:    b.Active(),
			Total:     b.Total(),
			LastCheck: b.LastCheck(),
			Counters:  b.Counters(),
			Streak:    b.Streak(),
			Addrs:     b.Addrs(),
		}
		if b.InCooldown(now) {
			bs.Cooldown = p.base.Add(time.Duration(b.CooldownUntil()))
		}
		s.Backends = append(s.Backends, bs)
	}
	return s
}
