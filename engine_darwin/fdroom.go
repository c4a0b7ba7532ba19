package stdengine

import (
	"sync"
	"time"
)

// pairCost is the most descriptors one connection can hold on this engine:
// two sockets, plus (Linux splice) one pipe per direction while bytes move.
const pairCost = 6

// fdRoom keeps admission below RLIMIT_NOFILE with a reserve, so that
// accept(2), backend dials, splice pipes and health checks of this process
// do not run into EMFILE: a connection that does not fit is reset at
// accept (reported to the policy as refused, engine.RejectLimit), like the
// gnet engine does.
// The count of open descriptors is read from the kernel at most every
// refreshEvery while far from the limit, and at every admission once the
// room left is small.
type fdRoom struct {
	mu     sync.Mutex
	limit  int64 // RLIMIT_NOFILE (soft); 0 = unknown: always room
	open   int64 // open descriptors at the last read
	since  int64 // admissions since the last read
	readAt time.Time
}

const refreshEvery = 100 * time.Millisecond

// reserveFor is the number of descriptors kept free under limit.
func reserveFor(limit int64) int64 { return 16 + limit/64 }

// admit reports whether one more connection fits.
func (r *fdRoom) admit(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	reserve := reserveFor(r.limit)
	near := r.limit > 0 && r.open+(r.since+1)*pairCost+4*reserve > r.limit
	if near || now.Sub(r.readAt) >= refreshEvery {
		r.limit, r.open = nofileLimit(), openFDs()
		r.since, r.readAt = 0, now
		reserve = reserveFor(r.limit)
	}
	if r.limit <= 0 || r.open < 0 {
		return true
	}
	if r.open+(r.since+1)*pairCost+reserve > r.limit {
		return false
	}
	r.since++
	return true
}
