package policy

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bal-lb/bal/engine"
)

// rejectReasons are the reasons counted, in status order; reasonIndex maps a
// reason to its counter.
var rejectReasons = engine.RejectReasons()

func reasonIndex(r engine.RejectReason) int {
	for i, x := range rejectReasons {
		if x == r {
			return i
		}
	}
	return 0 // an unknown reason counts as the first, RejectLimit
}

// localResources are the local connect failures logged, in a fixed order.
var localResources = []engine.LocalResource{engine.LocalFDs, engine.LocalPorts, engine.LocalMemory}

func localIndex(r engine.LocalResource) int {
	for i, x := range localResources {
		if x == r {
			return i
		}
	}
	return len(localResources) - 1
}

// Refused implements engine.Policy: a connection the engine reset on its
// own (no descriptor headroom), counted and logged like Admit's refusals.
func (p *Policy) Refused(_ *engine.ConnInfo, r engine.RejectReason) { p.reject(r) }

// reject counts one refused connection for r and logs it (rate-limited).
func (p *Policy) reject(r engine.RejectReason) {
	i := reasonIndex(r)
	p.rejected[i].Add(1)
	p.rejectLog.note(p.log, i, p.now())
}

// rejectedBy is the number of refused connections by reason, every reason
// present.
func (p *Policy) rejectedBy() map[engine.RejectReason]uint64 {
	m := make(map[engine.RejectReason]uint64, len(rejectReasons))
	for i, r := range rejectReasons {
		m[r] = p.rejected[i].Load()
	}
	return m
}

// rateLog counts events by name and logs at most one burst a second: one
// line per name with the count since that name's last line, so an overload
// never floods the log.
type rateLog struct {
	msg     string   // the log message
	names   []string // the "reason" of each counter
	pending []atomic.Uint64

	mu   sync.Mutex
	last time.Time
}

func newRateLog(msg string, names []string) *rateLog {
	return &rateLog{msg: msg, names: names, pending: make([]atomic.Uint64, len(names))}
}

// note counts one event of names[i] at now and logs the pending counts when
// the last lines are a second old.
func (r *rateLog) note(log *slog.Logger, i int, now time.Time) {
	r.pending[i].Add(1)
	if !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < time.Second {
		return
	}
	r.last = now
	for j := range r.pending {
		if n := r.pending[j].Swap(0); n > 0 {
			log.Warn(r.msg, "reason", r.names[j], "count", n)
		}
	}
}

func rejectLogNames() []string {
	names := make([]string, len(rejectReasons))
	for i, r := range rejectReasons {
		names[i] = string(r)
	}
	return names
}

func localLogNames() []string {
	names := make([]string, len(localResources))
	for i, r := range localResources {
		names[i] = "local_" + string(r)
	}
	return names
}

// Route implements engine.Policy. A service without routes sends every
// connection to its one pool, so there is nothing to choose.
func (p *Policy) Route(*engine.ConnInfo) bool { return true }
