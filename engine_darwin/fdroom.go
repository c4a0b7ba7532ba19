package stdengine

import (
	"sync"
	"time"

	"github.com/bal-lb/bal/engine/limits"
)

// Cost is this engine's use of descriptors: pairFDs per connection (see
// fdroom_linux.go and fdroom_other.go), no spare of its own. Admission keeps
// its limits.Cost.Reserve free; bal doctor reads it for Needed and status
// reports PerConn.
func Cost() limits.Cost { return limits.Cost{PerConn: pairFDs} }

// fdRoom keeps admission below RLIMIT_NOFILE with a reserve, so that
// accept(2), backend dials, splice pipes and health checks of this process
// do not run into EMFILE: a connection that does not fit is reset at
// accept (reported to the policy as refused, engine.RejectLimit), like the
// gnet engine does.
// The count of open descriptors is read from the kernel at most every
// refreshEvery while far from the limit, and at every admission once the
// room left is small.
type fdRoom struct {
	// cost is what one admission holds; zero means Cost() (a TCP pair).
	cost   limits.Cost
	mu     sync.Mutex
	limit  int64 // RLIMIT_NOFILE (soft); 0 = unknown: always room
	open   int64 // open descriptors at the last read
	since  int64 // admissions since the last read
	readAt time.Time
}

const refreshEvery = 100 * time.Millisecond

// admit reports whether one more connection fits.
func (r *fdRoom) admit(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cost
	if c.PerConn == 0 {
		c = Cost()
	}
	per := int64(c.PerConn)
	// Within four reserves of the limit, the count is re-read every time.
	near := !c.Room(r.limit, r.open+3*c.Reserve(r.limit), (r.since+1)*per)
	if near || now.Sub(r.readAt) >= refreshEvery {
		r.limit, r.open = nofileLimit(), openFDs()
		r.since, r.readAt = 0, now
	}
	if r.open < 0 {
		return true
	}
	if !c.Room(r.limit, r.open, (r.since+1)*per) {
		return false
	}
	r.since++
	return true
}
