//go:build linux

package gnetengine

import (
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine/limits"
)

// pairFDs is what one admitted connection holds steadily: the client socket
// and the backend socket. Pipes are counted separately as they are created.
const pairFDs = 2

// fdBudget keeps admission below RLIMIT_NOFILE. An accept that fails with
// EMFILE or ENFILE stops a whole gnet engine, so the engine refuses (resets)
// new connections while fewer than a reserve of descriptors are free.
//
// own is exact: every descriptor the data planes of this process hold or
// have reserved (pairFDs per admitted connection, 2 per pipe). other is an
// estimate of every other open descriptor of the process (listeners,
// pollers, the rest of bal), refreshed by the front's ticker from the
// kernel's count of open descriptors.
type fdBudget struct {
	own   atomic.Int64
	other atomic.Int64
	limit atomic.Int64
}

// budget is process-wide: every engine in the process shares the limit.
var budget fdBudget

// room reports whether n more descriptors fit while keeping reserve free.
func (b *fdBudget) room(n, reserve int64) bool {
	limit := b.limit.Load()
	if limit <= 0 {
		return true
	}
	return b.own.Load()+b.other.Load()+reserve+n <= limit
}

// refresh re-reads RLIMIT_NOFILE and the number of open descriptors.
func (b *fdBudget) refresh() {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil {
		lim := rl.Cur
		if lim > 1<<40 {
			lim = 1 << 40
		}
		b.limit.Store(int64(lim))
	}
	open := limits.OpenFDs()
	if open < 0 {
		return
	}
	other := open - b.own.Load()
	if other < 0 {
		other = 0
	}
	b.other.Store(other)
}

// reserveFor is the number of descriptors kept free: enough for gnet's
// in-flight accepts and dups on every loop, a backend socket and a pipe per
// loop, and the rest of the process (health checks, control socket, logs).
func reserveFor(limit int64, loops int) int64 {
	return 16 + 4*int64(loops) + limit/64
}
