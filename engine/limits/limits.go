package limits

import (
	"errors"

	"golang.org/x/sys/unix"
)

// ErrUnsupported: the limit cannot be read on this system.
var ErrUnsupported = errors.New("limit not available on this system")

// NoFile returns RLIMIT_NOFILE of this process. (Go raises the soft limit to
// the hard limit at start-up, so in bal both are normally equal.)
func NoFile() (soft, hard uint64, err error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	return uint64(rl.Cur), uint64(rl.Max), nil
}

// Overhead is what a bal process holds open besides its connections:
// listeners, pollers, the control socket, the log file, health checks and DNS
// lookups in flight. Needed adds it; at admission the engines count what is
// really open instead.
const Overhead = 64

// processReserve is the part of every reserve kept for the rest of the
// process (a health check or a DNS lookup starting, a control request).
const processReserve = 16

// Cost is an engine's use of descriptors, as the engine states it. limits
// turns it into the headroom the engine keeps free at admission (Reserve,
// Room) and the RLIMIT_NOFILE a configuration needs (Needed), so that bal
// doctor recommends what the engines enforce.
type Cost struct {
	// PerConn is the most descriptors one proxied connection holds: its
	// client and backend sockets, plus pipes where the engine keeps them
	// per connection.
	PerConn int
	// Spare is what the engine keeps free for its own transient use on top
	// of the process's share (e.g. in-flight accepts and dups on every event
	// loop).
	Spare int
}

// Reserve is the number of descriptors kept free below limit: a share for
// the rest of the process, the engine's Spare, and 1/64 of the limit, a
// margin that grows with it.
func (c Cost) Reserve(limit int64) int64 {
	return processReserve + int64(max(c.Spare, 0)) + max(limit, 0)/64
}

// Room reports whether need more descriptors fit under limit while open are
// in use, with Reserve(limit) kept free. An unknown limit (≤ 0) always has
// room.
func (c Cost) Room(limit, open, need int64) bool {
	if limit <= 0 {
		return true
	}
	return open+need+c.Reserve(limit) <= limit
}

// Needed is the smallest RLIMIT_NOFILE at which maxConns connections fit
// next to the process's Overhead with Reserve kept free: the limit bal doctor
// recommends for max_concurrent_connections.
func (c Cost) Needed(maxConns int) uint64 {
	used := int64(max(maxConns, 0))*int64(max(c.PerConn, 0)) + Overhead
	// Room(n, used, 0) is used + Reserve(n) ≤ n; n - n/64 never decreases,
	// so start near the answer and step to the smallest n that fits.
	n := used + used/63
	for !c.Room(n, used, 0) {
		n++
	}
	for n > 1 && c.Room(n-1, used, 0) {
		n--
	}
	return uint64(n)
}
