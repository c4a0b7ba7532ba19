package policy

import (
	"log/slog"
	"net/netip"
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
// own (no descriptor headroom; a PROXY header missing, malformed, late or
// from an untrusted peer), counted and logged like Admit's refusals.
func (p *Policy) Refused(c *engine.ConnInfo, r engine.RejectReason) {
	var client netip.AddrPort
	if c != nil {
		client = c.Client
		if !client.IsValid() {
			client = c.Peer
		}
	}
	p.reject(p.st.Load(), r, client)
}

// reject counts one refused connection for r and logs it (rate-limited,
// with client as a sample).
func (p *Policy) reject(st *state, r engine.RejectReason, client netip.AddrPort) {
	i := reasonIndex(r)
	p.rejected[i].Add(1)
	p.rejectLog.note(st.log, i, p.now(), client)
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
// line per name with the count since that name's last line and a sample
// client (the first since that line, best effort), so an overload never
// floods the log.
type rateLog struct {
	msg     string   // the log message
	names   []string // the "reason" of each counter
	pending []atomic.Uint64
	samples []sample

	mu   sync.Mutex
	last time.Time
}

// sample is one client address kept for the next line of a reason. set
// spares the lock to every event but the first of a line.
type sample struct {
	set  atomic.Bool
	mu   sync.Mutex
	addr netip.AddrPort
}

func newRateLog(msg string, names []string) *rateLog {
	return &rateLog{msg: msg, names: names, pending: make([]atomic.Uint64, len(names)), samples: make([]sample, len(names))}
}

// note counts one event of names[i] from client at now and logs the pending
// counts when the last lines are a second old.
func (r *rateLog) note(log *slog.Logger, i int, now time.Time, client netip.AddrPort) {
	r.pending[i].Add(1)
	if s := &r.samples[i]; client.IsValid() && !s.set.Load() && s.mu.TryLock() {
		if !s.set.Load() {
			s.addr = client
			s.set.Store(true)
		}
		s.mu.Unlock()
	}
	if !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < time.Second {
		return
	}
	r.last = now
	for j := range r.pending {
		n := r.pending[j].Swap(0)
		if n == 0 {
			continue
		}
		s := &r.samples[j]
		s.mu.Lock()
		a := s.addr
		s.addr = netip.AddrPort{}
		s.set.Store(false)
		s.mu.Unlock()
		if a.IsValid() {
			log.Warn(r.msg, "reason", r.names[j], "count", n, "sample_client", a.String())
		} else {
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
