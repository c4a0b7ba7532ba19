//go:build linux

package gnetengine

import (
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine/limits"
)

// pairFDs is what one admitted connection holds steadily: the client socket
// and the backend socket. Pipes are counted separately as they are created
// (a loop keeps a few empty ones; a direction holds one only while bytes are
// in flight).
const pairFDs = 2

// admitFDs is what admission asks room for: the connection's two sockets and
// gnet's duplicate of the client socket while it is handed to a data loop.
const admitFDs = 3

// spareFDsPerLoop is kept free on every loop besides the process's reserve:
// gnet's in-flight accepts and dups, a backend socket and a pipe.
const spareFDsPerLoop = 4

// Cost is this engine's use of descriptors with the default number of loops
// (GOMAXPROCS): pairFDs per connection and a spare per loop. Admission keeps
// its limits.Cost.Reserve free; bal doctor reads it for Needed and status
// reports PerConn.
func Cost() limits.Cost { return costFor(runtime.GOMAXPROCS(0)) }

func costFor(loops int) limits.Cost {
	return limits.Cost{PerConn: pairFDs, Spare: spareFDsPerLoop * loops}
}

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

// room reports whether n more descriptors fit while the reserve of c is
// kept free.
func (b *fdBudget) room(n int64, c limits.Cost) bool {
	return c.Room(b.limit.Load(), b.own.Load()+b.other.Load(), n)
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
